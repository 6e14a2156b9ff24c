"""The annotation keys of podnet's user contract, in one place.

Users write the ``ovn.kubernetes.io/*`` keys (Kube-OVN's API, unchanged); the webhook
writes the allocation back under the same keys plus ``podnet.io/reservation``; the sync
worker adds ``ovn.kubernetes.io/routed`` once the pod's OVN port exists.
"""

from __future__ import annotations

IP_ADDRESS = "ovn.kubernetes.io/ip_address"
MAC_ADDRESS = "ovn.kubernetes.io/mac_address"
IP_POOL = "ovn.kubernetes.io/ip_pool"
LOGICAL_SWITCH = "ovn.kubernetes.io/logical_switch"
INGRESS_RATE = "ovn.kubernetes.io/ingress_rate"
EGRESS_RATE = "ovn.kubernetes.io/egress_rate"

ALLOCATED = "ovn.kubernetes.io/allocated"
CIDR = "ovn.kubernetes.io/cidr"
GATEWAY = "ovn.kubernetes.io/gateway"
ROUTED = "ovn.kubernetes.io/routed"
RESERVATION = "podnet.io/reservation"

AGENT_READY_LABEL = "podnet.io/agent-ready"
"""Node label the node agent sets to ``true`` once it serves CNI on that node."""

IC_GATEWAY_LABEL = "ovn.kubernetes.io/ic-gw"
"""Node label the IC controller (``podnet ic``) sets to ``true`` on the ``gw-nodes`` of
``ovn-ic-config``; the node agent then sets ``ovn-is-interconn=true`` on its Open vSwitch."""
INTERCONN_KEY = "ovn-is-interconn"
"""``Open_vSwitch:external_ids`` key that makes ovn-controller's chassis an OVN-IC gateway."""

WRITTEN = (ALLOCATED, IP_ADDRESS, MAC_ADDRESS, CIDR, GATEWAY, LOGICAL_SWITCH, RESERVATION)
"""The keys the webhook writes at admission: podnet's, not the pod owner's, from then on."""

ENABLE_LOG = "ovn.kubernetes.io/enable_log"
"""On a NetworkPolicy, ``"true"``: log the packets its ACLs act on (Kube-OVN)."""
LOG_ACL_ACTIONS = "ovn.kubernetes.io/log_acl_actions"
"""On a NetworkPolicy: which verdicts to log, ``allow``, ``drop`` or ``allow,drop``
(default ``drop``) (Kube-OVN)."""
ACL_LOG_METER_RATE = "ovn.kubernetes.io/acl_log_meter_rate"
"""On a NetworkPolicy: at most this many logged packets a second (Kube-OVN)."""
ACL_LOGGING = "k8s.ovn.org/acl-logging"
"""On a namespace: ``{"deny": "<severity>", "allow": "<severity>"}`` logs its policies'
verdicts at those syslog severities (OVN-Kubernetes)."""
