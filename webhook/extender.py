"""The Kubernetes scheduler extender: skip nodes where a pod's network cannot work.

Admission already puts a subnet's ``nodeSelector`` into the pod's required node
affinity, so the scheduler never places a pod where its subnet does not exist. Two
things affinity cannot say are checked here, at ``filter`` time: whether podnet's node
agent is ready on the node, and the subnet requirement again for pods admitted before
their subnet gained a selector.

**Agent readiness contract.** The node agent labels its node
``podnet.io/agent-ready=true`` once it can attach pods, and removes the label (or sets
it to anything else) when it cannot. A node condition of type ``PodnetAgentReady``,
when the node has one, takes precedence over the label: status ``True`` is ready,
anything else is not. A node with neither is not ready.

**Filter.** A node fails when the agent is not ready on it, or when its labels do not
match the pod's subnet (and IPPool) ``nodeSelector``. Failures go into both
``FailedNodes`` and ``FailedAndUnresolvableNodes``: evicting pods cannot fix either,
so the scheduler should not try preemption there. Pods on the host network need
nothing from podnet and pass everywhere. A pod whose subnet cannot be decided (an
unknown ``logical_switch``, say) fails on every node with the reason.

**Node names only.** A scheduler configured with ``nodeCacheCapable: true`` sends node
names without labels. Nodes the caller knows nothing about (``known`` is empty unless
the server has node information) pass through unfiltered: the pod's node affinity
still guards its subnet, and readiness is left to the kubelet.

**Prioritize.** Scores are 0 to 10: 10 for a gateway node of the pod's centralized
subnet (its egress traffic leaves from there, with no tunnel hop), 5 for any other
node, 0 for a node whose agent is not ready.

Pure: mappings in, wire-format mappings out; ``MalformedArgs`` for a body that is not
ExtenderArgs, which the HTTP adapter answers with a 400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import orjson

from ipam import annotations as keys
from ipam.pool import IPPoolSpec, looks_like_pool_name
from ipam.subnet import SubnetSpec
from webhook.decide import (
    Catalog,
    NamespaceInfo,
    annotations_of,
    choose_subnet,
    node_selector_for,
    skip_reason,
)
from webhook.errors import Denial, MalformedArgs
from webhook.settings import WebhookSettings

AGENT_READY_CONDITION = "PodnetAgentReady"
GATEWAY_SCORE = 10
DEFAULT_SCORE = 5
NOT_READY_SCORE = 0


@dataclass(frozen=True)
class Node:
    """What the extender knows of one candidate node."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    conditions: Mapping[str, str] = field(default_factory=dict)
    """Condition type to status (``True``, ``False``, ``Unknown``)."""
    known: bool = True
    """False when only the name is known (a ``NodeNames`` request)."""
    addresses: tuple[str, ...] = ()
    """The node's InternalIP and ExternalIP addresses."""


@dataclass(frozen=True)
class ExtenderArgs:
    """A scheduler's question: may ``pod`` go to these nodes?"""

    pod: Mapping[str, Any]
    nodes: tuple[Node, ...]
    node_objects: tuple[Mapping[str, Any], ...] | None = None
    """The full Node objects when the scheduler sent them (``Nodes``), else None."""

    @property
    def namespace(self) -> str:
        metadata = self.pod.get("metadata")
        return str(metadata.get("namespace") or "") if isinstance(metadata, Mapping) else ""


@dataclass(frozen=True)
class Placement:
    """What the pod needs from a node."""

    needs_agent: bool = True
    subnet: str = ""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    gateway_nodes: frozenset[str] = frozenset()
    problem: str = ""
    """A reason every node fails (the pod's subnet cannot be decided)."""


class NodeList(TypedDict):
    items: list[Mapping[str, Any]]


class FilterResult(TypedDict):
    Nodes: NodeList | None
    NodeNames: list[str]
    FailedNodes: dict[str, str]
    FailedAndUnresolvableNodes: dict[str, str]
    Error: str


class HostPriority(TypedDict):
    Host: str
    Score: int


ANYWHERE = Placement(needs_agent=False)


# ----------------------------------------------------------------- parsing


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def node_from_object(obj: Mapping[str, Any]) -> Node:
    """A ``v1.Node`` object as the extender sees it; raises ``MalformedArgs`` without a name."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedArgs("Nodes.items[]: a node has no metadata.name")
    status = obj.get("status")
    raw = status.get("conditions") if isinstance(status, Mapping) else None
    conditions = {
        str(c["type"]): str(c.get("status", ""))
        for c in (raw if isinstance(raw, list) else [])
        if isinstance(c, Mapping) and c.get("type")
    }
    listed = status.get("addresses") if isinstance(status, Mapping) else None
    addresses = tuple(
        str(a["address"]) for a in (listed if isinstance(listed, list) else [])
        if isinstance(a, Mapping) and a.get("type") in ("InternalIP", "ExternalIP")
        and isinstance(a.get("address"), str))
    return Node(name, _strings(metadata.get("labels")), conditions, addresses=addresses)


def _field(document: Mapping[str, Any], name: str) -> Any:
    """A member by name, case-insensitively, as Go's encoding/json decodes it."""
    if name in document:
        return document[name]
    lowered = name.lower()
    return next((v for k, v in document.items() if str(k).lower() == lowered), None)


def parse_extender_args(
    body: bytes, known: Mapping[str, Node] | None = None
) -> ExtenderArgs:
    """Parse ExtenderArgs (``Pod`` plus ``Nodes`` or ``NodeNames``), or raise ``MalformedArgs``.

    With ``NodeNames``, each name is looked up in ``known``; an unknown one is a ``Node``
    with ``known=False``.
    """
    try:
        document = orjson.loads(body)  # nesting deeper than 1024 is a JSONDecodeError
    except orjson.JSONDecodeError as exc:
        raise MalformedArgs(f"body is not JSON: {exc}") from exc
    if not isinstance(document, Mapping):
        raise MalformedArgs("body is not a JSON object")
    pod = _field(document, "Pod")
    if not isinstance(pod, Mapping):
        raise MalformedArgs("Pod is missing")
    node_list = _field(document, "Nodes")
    if node_list is not None:
        items = _field(node_list, "items") if isinstance(node_list, Mapping) else None
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise MalformedArgs("Nodes.items is not a list of Node objects")
        return ExtenderArgs(pod, tuple(node_from_object(i) for i in items), tuple(items))
    names = _field(document, "NodeNames")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise MalformedArgs("neither Nodes.items nor NodeNames (a list of node names) is given")
    table = known or {}
    return ExtenderArgs(pod, tuple(table.get(n) or Node(n, known=False) for n in names))


# ------------------------------------------------------------------ placement


def gateway_nodes(subnet: SubnetSpec) -> frozenset[str]:
    """A centralized subnet's gateway nodes (Kube-OVN's ``node1,node2`` or ``node:ip``)."""
    if subnet.gateway_type != "centralized":
        return frozenset()
    items = (item.strip().split(":", 1)[0].strip() for item in subnet.gateway_node.split(","))
    return frozenset(item for item in items if item)


def _pool_named(annotations: Mapping[str, str], catalog: Catalog) -> IPPoolSpec | None:
    value = annotations.get(keys.IP_POOL, "").strip()
    return catalog.pool(value) if value and looks_like_pool_name(value) else None


def placement_of(
    pod: Mapping[str, Any], namespace: NamespaceInfo, catalog: Catalog, settings: WebhookSettings
) -> Placement:
    """What ``pod`` needs from a node, decided as at admission."""
    spec = pod.get("spec")
    if isinstance(spec, Mapping) and spec.get("hostNetwork") is True:
        return ANYWHERE
    if skip_reason(pod, namespace.name, settings) is not None:
        return Placement()
    annotations = annotations_of(pod)
    try:
        pool = _pool_named(annotations, catalog)
        subnet = choose_subnet(annotations, pool, namespace, catalog)
        selector = node_selector_for(subnet, pool)
    except Denial as denial:
        return Placement(problem=denial.message)
    return Placement(
        subnet=subnet.name, node_selector=selector, gateway_nodes=gateway_nodes(subnet)
    )


# ------------------------------------------------------------------ verdicts


def agent_problem(node: Node) -> str | None:
    """Why podnet's node agent is not ready on ``node`` (None when it is)."""
    condition = node.conditions.get(AGENT_READY_CONDITION)
    if condition is not None:
        if condition == "True":
            return None
        return f"podnet node agent is not ready (condition {AGENT_READY_CONDITION} is {condition})"
    label = node.labels.get(keys.AGENT_READY_LABEL)
    if label == "true":
        return None
    shown = "missing" if label is None else f"{label!r}"
    return f"podnet node agent is not ready (label {keys.AGENT_READY_LABEL} is {shown})"


def node_problem(node: Node, placement: Placement) -> str | None:
    """Why the pod cannot go to ``node`` (None when it can, or when nothing is known)."""
    if placement.problem:
        return placement.problem
    if not node.known:
        return None
    if placement.needs_agent:
        problem = agent_problem(node)
        if problem is not None:
            return problem
    missing = sorted(
        f"{key}={value}" for key, value in placement.node_selector.items()
        if node.labels.get(key) != value
    )
    if missing:
        return (f"subnet {placement.subnet} is not available on this node "
                f"(nodeSelector {', '.join(missing)})")
    return None


def filter_nodes(args: ExtenderArgs, placement: Placement) -> FilterResult:
    """The ExtenderFilterResult for ``args``."""
    failed: dict[str, str] = {}
    kept: list[str] = []
    for node in args.nodes:
        problem = node_problem(node, placement)
        if problem is None:
            kept.append(node.name)
        else:
            failed[node.name] = problem
    nodes: NodeList | None = None
    if args.node_objects is not None:
        passing = set(kept)
        nodes = {"items": [
            obj for node, obj in zip(args.nodes, args.node_objects, strict=True)
            if node.name in passing
        ]}
    return {
        "Nodes": nodes, "NodeNames": kept, "FailedNodes": failed,
        "FailedAndUnresolvableNodes": dict(failed), "Error": "",
    }


def filter_error(message: str) -> FilterResult:
    """A result that tells the scheduler the filter itself failed (it retries later)."""
    return {"Nodes": None, "NodeNames": [], "FailedNodes": {},
            "FailedAndUnresolvableNodes": {}, "Error": message}


def score(node: Node, placement: Placement) -> int:
    if placement.problem:
        return NOT_READY_SCORE
    if node.known and placement.needs_agent and agent_problem(node) is not None:
        return NOT_READY_SCORE
    if node.name in placement.gateway_nodes:
        return GATEWAY_SCORE
    return DEFAULT_SCORE


def prioritize(nodes: Sequence[Node], placement: Placement) -> list[HostPriority]:
    """The HostPriorityList for ``nodes``, in their order."""
    return [{"Host": node.name, "Score": score(node, placement)} for node in nodes]
