"""The JSONPatch the webhook returns: the pod's addresses and, if needed, node affinity.

Two rules shape it. The patch must apply to the object *as the apiserver holds it now*
(annotations may be absent, keys contain ``/``), and it must be idempotent, because the
webhook may be invoked again on its own output: an annotation already at the right
value produces no operation, and a node requirement already present is not added twice.

Scheduler awareness: a subnet or pool with a ``nodeSelector`` exists only on some
nodes. Required node affinity terms are ORed, so each requirement is added to *every*
term (a DaemonSet pod's ``matchFields`` term included) and none of the user's terms is
dropped; a pod with no term gets one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from webhook.review import PatchOp

_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def escape(segment: str) -> str:
    """A JSON Pointer segment (RFC 6901): ``~`` becomes ``~0``, ``/`` becomes ``~1``."""
    return segment.replace("~", "~0").replace("/", "~1")


def annotation_ops(obj: Mapping[str, Any], annotations: Mapping[str, str]) -> list[PatchOp]:
    """Operations setting ``annotations``; none for a key already at its value."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return [{"op": "add", "path": "/metadata", "value": {"annotations": dict(annotations)}}]
    current = metadata.get("annotations")
    if not isinstance(current, Mapping):
        return [{"op": "add", "path": "/metadata/annotations", "value": dict(annotations)}]
    return [
        {"op": "add", "path": f"/metadata/annotations/{escape(key)}", "value": value}
        for key, value in annotations.items()
        if current.get(key) != value
    ]


def requirement(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": [value]}


def affinity_problem(spec: object) -> str | None:
    """What is wrong with the shape of ``spec.affinity`` where podnet merges into it, in
    the API server's words (it would refuse the pod after admission), or None.

    Only the path podnet writes is checked: the types the merge relies on, so that a
    malformed affinity is denied before anything is reserved instead of failing after.
    """
    if not isinstance(spec, Mapping):
        return None
    path, node = "spec", spec
    for key in ("affinity", "nodeAffinity", _REQUIRED):
        path, value = f"{path}.{key}", node.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            return f"{path}: must be an object, not {_json_type(value)}"
        node = value
    terms = node.get("nodeSelectorTerms")
    path = f"{path}.nodeSelectorTerms"
    if terms is None:
        return None
    if not isinstance(terms, list):
        return f"{path}: must be a list, not {_json_type(terms)}"
    for index, term in enumerate(terms):
        if not isinstance(term, Mapping):
            return f"{path}[{index}]: must be an object, not {_json_type(term)}"
        for field in ("matchExpressions", "matchFields"):
            value = term.get(field)
            if value is not None and not isinstance(value, list):
                return f"{path}[{index}].{field}: must be a list, not {_json_type(value)}"
    return None


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def merge_node_affinity(
    affinity: Mapping[str, Any] | None, selector: Mapping[str, str]
) -> dict[str, Any] | None:
    """``affinity`` with ``selector`` required in every term; None if nothing changes.

    Only the path written to is copied (the rest is shared, never deep-copied: a pod's
    affinity may nest as deep as the API server's JSON limit)."""
    if not selector:
        return None
    merged: dict[str, Any] = dict(affinity or {})
    node = merged["nodeAffinity"] = dict(merged.get("nodeAffinity") or {})
    required = node[_REQUIRED] = dict(node.get(_REQUIRED) or {})
    terms = required["nodeSelectorTerms"] = [
        dict(term) for term in required.get("nodeSelectorTerms") or []]
    wanted = [requirement(key, value) for key, value in sorted(selector.items())]
    changed = False
    if not terms:
        terms.append({"matchExpressions": wanted})
        changed = True
    for term in terms:
        if not term.get("matchExpressions") and not term.get("matchFields"):
            continue  # an empty term matches no node; requirements would widen it
        expressions = term["matchExpressions"] = list(term.get("matchExpressions") or [])
        for expression in wanted:
            if expression not in expressions:
                expressions.append(expression)
                changed = True
    return merged if changed else None


def affinity_ops(obj: Mapping[str, Any], selector: Mapping[str, str]) -> list[PatchOp]:
    """One operation replacing ``spec.affinity`` with the merged one, if it changes."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return []
    current = spec.get("affinity")
    merged = merge_node_affinity(current if isinstance(current, Mapping) else None, selector)
    if merged is None:
        return []
    if not isinstance(current, Mapping):
        return [{"op": "add", "path": "/spec/affinity", "value": merged}]
    # Only the node affinity: the pod's other affinities are not sent back.
    return [{"op": "add", "path": "/spec/affinity/nodeAffinity", "value": merged["nodeAffinity"]}]


def build_patch(
    obj: Mapping[str, Any], annotations: Mapping[str, str], node_selector: Mapping[str, str]
) -> list[PatchOp]:
    return annotation_ops(obj, annotations) + affinity_ops(obj, node_selector)


def unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def apply_patch(obj: Mapping[str, Any], ops: list[PatchOp]) -> dict[str, Any]:
    """``obj`` with ``ops`` applied, as the apiserver would (add, replace, remove).

    For places that must apply a webhook answer without an apiserver; raises
    ``ValueError`` on a path that does not exist, as RFC 6902 requires.
    """
    result: dict[str, Any] = copy.deepcopy(dict(obj))
    for op in ops:
        *parents, last = [unescape(s) for s in op["path"].split("/")[1:]]
        target: Any = result
        for segment in parents:
            target = target[int(segment)] if isinstance(target, list) else target[segment]
        if isinstance(target, list):
            index = len(target) if last == "-" else int(last)
            if op["op"] == "add":
                target.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "replace":
                target[index] = copy.deepcopy(op["value"])
            else:
                del target[index]
        elif isinstance(target, dict):
            if op["op"] != "add" and last not in target:
                raise ValueError(f"{op['op']} {op['path']}: no such member")
            if op["op"] == "remove":
                del target[last]
            else:
                target[last] = copy.deepcopy(op["value"])
        else:
            raise ValueError(f"{op['op']} {op['path']}: parent is not a container")
    return result
