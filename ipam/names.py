"""The names podnet derives from Kubernetes objects, each worked out here and nowhere else.

Other components, tools and tests rely on these spellings (docs/architecture.md,
"Naming contracts"): the OVN port of a pod or node, the load balancer of a Service,
the key under which a StatefulSet ordinal's (or a node's) address is kept, and the
ordinal of a StatefulSet pod. A second spelling of any of them, somewhere else, is how
two components come to disagree about which port is whose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ORDINAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)
"""A StatefulSet ordinal as the controller writes it: decimal digits, no leading zero."""

NODE_KEY_PREFIX = "node/"

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                        re.ASCII)
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,199}", re.ASCII)


def object_name_problem(name: str) -> str | None:
    """Why kube-apiserver would refuse ``name`` as a pod's (or namespace's) name: a
    DNS-1123 subdomain of at most 253 characters. None when it is fine."""
    if len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
        return ("must be a lowercase RFC 1123 subdomain: lower case letters, digits, '-' "
                "and '.', starting and ending with a letter or digit, at most 253 long")
    return None


def generate_name_problem(prefix: str) -> str | None:
    """Why a ``generateName`` prefix cannot make a valid name (kube appends 5 characters)."""
    return object_name_problem(prefix + "x" * 5)


def token_problem(token: str) -> str | None:
    """Why ``token`` is not a reservation token podnet writes (letters, digits and
    ``:._-``, at most 200). None when it is one."""
    if not _TOKEN.fullmatch(token):
        return "is not a podnet reservation token (letters, digits and :._- only)"
    return None


def pod_port(name: str, namespace: str) -> str:
    """The OVN logical switch port (and OVS ``iface-id``) of a pod: ``<pod>.<namespace>``."""
    return f"{name}.{namespace}"


def node_port(node: str) -> str:
    """The join switch port of a node: ``node-<nodename>``."""
    return f"node-{node}"


def load_balancer(namespace: str, service: str, protocol: str) -> str:
    """The ``Load_Balancer`` row of a Service for one protocol."""
    return f"podnet/svc/{namespace}/{service}/{protocol.lower()}"


def statefulset_ordinal(pod_name: str, statefulset: str) -> int | None:
    """The ordinal of pod ``pod_name`` of StatefulSet ``statefulset``: ``<sts>-<N>``."""
    prefix = f"{statefulset}-"
    if not statefulset or not pod_name.startswith(prefix):
        return None
    suffix = pod_name[len(prefix):]
    return int(suffix) if _ORDINAL.fullmatch(suffix) else None


def split_ordinal(pod_name: str) -> tuple[str, int] | None:
    """``(statefulset, ordinal)`` read from a name alone, for pods no longer at hand."""
    base, dash, suffix = pod_name.rpartition("-")
    if not dash or not base or not _ORDINAL.fullmatch(suffix):
        return None
    return base, int(suffix)


@dataclass(frozen=True)
class OrdinalKey:
    """What a StatefulSet ordinal's kept address belongs to."""

    namespace: str
    statefulset: str
    ordinal: int


@dataclass(frozen=True)
class NodeKey:
    """What a node's kept join address belongs to."""

    node: str


def sticky_key(namespace: str, statefulset: str, ordinal: int) -> str:
    """The key a StatefulSet ordinal's address is kept under across pod re-creation."""
    return f"{namespace}/{statefulset}/{ordinal}"


def node_sticky_key(node: str) -> str:
    """The key a node's join address is kept under."""
    return f"{NODE_KEY_PREFIX}{node}"


def parse_sticky_key(key: str) -> OrdinalKey | NodeKey | None:
    """The owner a kept address is for, or None for a key podnet did not write."""
    if key.startswith(NODE_KEY_PREFIX):
        node = key[len(NODE_KEY_PREFIX):]
        return NodeKey(node) if node else None
    parts = key.split("/")
    if len(parts) != 3 or not all(parts) or not _ORDINAL.fullmatch(parts[2]):
        return None
    return OrdinalKey(parts[0], parts[1], int(parts[2]))
