"""Pod updates may not rewrite what podnet decided at admission.

The addresses, MAC, subnet and reservation token that the webhook writes into a pod are a
projection of the IPAM's record, and Kubernetes lets a pod's owner edit annotations at any
time. An edit would not move the pod (the sync worker builds its OVN port from the IPAM
record bound to the pod's UID), but it would make the pod say something untrue, so a pod
UPDATE that changes one of those keys is refused, naming the key, as is a change of the
requests (``ip_pool``, ``ip_address``) of a pod that already has its address. podnet's
own service accounts are exempt. Pure: the old and new pod in, a reason or None out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ipam import annotations as keys

REQUESTS = (keys.IP_POOL, keys.IP_ADDRESS)
"""Annotations that only ask for an address: meaningless to change once it is given."""

_ABSENT = "(absent)"


def _annotations(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    metadata = (pod or {}).get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return annotations if isinstance(annotations, Mapping) else {}


def owned_annotation_edit(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> str | None:
    """Why this pod update must be refused, or None when it leaves podnet's keys alone."""
    before, after = _annotations(old), _annotations(new)
    allocated = before.get(keys.ALLOCATED) == "true"
    guarded = [*keys.WRITTEN, *(key for key in REQUESTS if allocated and key not in keys.WRITTEN)]
    for key in guarded:
        if before.get(key) != after.get(key):
            was, now = before.get(key, _ABSENT), after.get(key, _ABSENT)
            return (f"annotation {key} is podnet's, written at admission, and cannot be "
                    f"changed ({was!s:.64} -> {now!s:.64}); delete and re-create the pod "
                    "for another address")
    return None
