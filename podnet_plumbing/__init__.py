"""The ground floor every podnet component stands on, and which knows none of them.

Kubernetes watches (``kube``), OVSDB connections (``ovsdb``), manifest reading
(``manifests``), asyncio and heap helpers (``tasks``, ``heap``). Nothing here imports
``ipam``, ``webhook``, ``podnet_sync``, ``node_agent`` or ``podnet``: the layering
contract in pyproject.toml enforces it.
"""
