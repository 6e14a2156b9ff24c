"""podnet's OVN interconnection (OVN-IC) controller: ``podnet ic``.

It joins this cluster's OVN (an availability zone) to others through the IC databases,
configured by Kube-OVN's ``kube-system/ovn-ic-config`` ConfigMap. See
docs/interconnection.md.
"""
