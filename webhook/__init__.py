"""podnet's admission webhook: a pod's address is decided before the pod is stored."""
