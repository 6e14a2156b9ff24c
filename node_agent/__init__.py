"""podnet's node agent and the ``podnet-cni`` shim that kubelet executes."""
