"""podnet: pod networking for Kubernetes on OVN, with addresses decided at admission."""

__version__ = "0.1.0"
