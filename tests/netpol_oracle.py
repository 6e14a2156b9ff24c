"""What Kubernetes NetworkPolicy allows, decided from the API's own definitions alone.

The truth-table suite compares the traffic the datapath lets through with what the
NetworkPolicy API says must get through. That comparison is only worth something if
the expected side shares nothing with the implementation under test: this module is
written from the ``networking.k8s.io/v1`` field documentation, it is pure (values in,
a verdict out), and it imports nothing of podnet.

The rules it encodes:

- A policy selects the pods of its own namespace that match ``spec.podSelector`` (an
  empty selector selects all of them). ``policyTypes``, when absent, is ``Ingress``
  plus ``Egress`` when the policy has egress rules.
- A pod is isolated for ingress (egress) when at least one policy selecting it has
  that type; a pod no such policy selects is not isolated in that direction and
  allows everything.
- An isolated pod allows what the union of the rules of the policies selecting it
  allows; a connection needs both the source's egress and the destination's ingress
  to allow it (an address outside the cluster has no ingress side).
- A rule with no (or an empty) ``ports`` list matches every port; with no (or an
  empty) ``from``/``to`` list it matches every peer.
- A port's protocol defaults to TCP; a port without ``port`` matches every port of
  its protocol; a named port is looked up among the destination pod's container
  ports (name and protocol); ``endPort`` makes a numeric port an inclusive range.
- A peer is an ``ipBlock`` (``cidr`` minus every ``except``), or a ``podSelector``
  and/or ``namespaceSelector``: the pod selector alone picks pods of the policy's
  namespace, the namespace selector alone all pods of matching namespaces, both
  together the matching pods in matching namespaces.
- A label selector is the AND of its ``matchLabels`` and ``matchExpressions``
  (``In``, ``NotIn``, ``Exists``, ``DoesNotExist``); an empty selector matches
  everything, an absent one is "not given".

Around NetworkPolicy, the cluster administrator's policies (``policy.networking.k8s.io``
``v1alpha1``, from that API's field documentation) judge each side of a connection in
three layers:

- AdminNetworkPolicies first, lowest ``priority`` number first (equal priorities are
  undefined and never tested). An ANP applies to the pods of its ``subject``
  (``namespaces``: every pod of the matching namespaces; ``pods``: the pods matching
  ``podSelector`` in namespaces matching ``namespaceSelector``). Its ingress (egress)
  rules are tried in order and the first whose peers and ports match decides: ``Allow``
  and ``Deny`` are final, ``Pass`` skips every remaining ANP and goes to NetworkPolicy.
  A rule that does not match, or an ANP whose rules all miss, leaves the decision to
  the next ANP.
- Then NetworkPolicy, as above, but only when it isolates the pod in that direction.
- Then the BaselineAdminNetworkPolicy, with the same first-match rules (``Allow`` and
  ``Deny`` only); what none of the three decides is allowed.

ANP and BANP peers are ``namespaces`` (all pods of matching namespaces), ``pods``
(``namespaceSelector`` and ``podSelector``), and for egress ``nodes`` (not probed here)
and ``networks``, CIDRs that match any address, pods' included. Ports are
``portNumber`` (protocol and port), ``portRange`` (protocol, inclusive start to end)
and ``namedPort``, a name looked up among the destination pod's container ports
whatever their protocol; no ``ports`` means every port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TCP, UDP, SCTP = "TCP", "UDP", "SCTP"
INGRESS, EGRESS = "Ingress", "Egress"
Policy = Mapping[str, Any]


class InvalidPolicy(ValueError):
    """The policy is one the API server would refuse; no verdict is defined for it."""


@dataclass(frozen=True)
class ContainerPort:
    port: int
    protocol: str = TCP
    name: str = ""


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    ip: str
    ports: tuple[ContainerPort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Cluster:
    """Namespaces (name to labels), pods and policies: everything a verdict depends on."""

    namespaces: Mapping[str, Mapping[str, str]]
    pods: tuple[Pod, ...]
    policies: tuple[Policy, ...] = field(default=())
    admin: tuple[Policy, ...] = field(default=())
    """AdminNetworkPolicies."""
    baseline: Policy | None = None
    """The BaselineAdminNetworkPolicy."""


@dataclass(frozen=True)
class Connection:
    """A connection ``source`` opens to ``destination`` (a pod, or an address outside
    every pod) on ``port``/``protocol``."""

    source: Pod
    destination: Pod | str
    port: int
    protocol: str = TCP

    @property
    def destination_ip(self) -> str:
        return self.destination.ip if isinstance(self.destination, Pod) else self.destination


# ------------------------------------------------------------------- selectors


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a (present) label selector matches ``labels``; ``{}`` matches all."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_expression_matches(e, labels) for e in selector.get("matchExpressions") or [])


def _expression_matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression.get("key"), expression.get("operator")
    values = list(expression.get("values") or [])
    if not isinstance(key, str) or not key:
        raise InvalidPolicy(f"a selector expression needs a key: {expression!r}")
    if operator in ("In", "NotIn") and not values:
        raise InvalidPolicy(f"operator {operator} needs values: {expression!r}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise InvalidPolicy(f"operator {operator} takes no values: {expression!r}")
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise InvalidPolicy(f"unknown selector operator {operator!r}")


# -------------------------------------------------------------------- policies


def policy_types(policy: Policy) -> frozenset[str]:
    """The policy's types, defaulted as the API server defaults them."""
    spec = policy.get("spec") or {}
    given = spec.get("policyTypes")
    if given:
        unknown = set(given) - {INGRESS, EGRESS}
        if unknown:
            raise InvalidPolicy(f"unknown policyTypes {sorted(unknown)}")
        return frozenset(given)
    return frozenset({INGRESS, EGRESS} if spec.get("egress") else {INGRESS})


def _namespace(policy: Policy) -> str:
    return str((policy.get("metadata") or {}).get("namespace") or "default")


def selects(policy: Policy, pod: Pod) -> bool:
    """Whether the policy applies to ``pod`` (same namespace, its podSelector matches)."""
    spec = policy.get("spec") or {}
    return _namespace(policy) == pod.namespace and \
        selector_matches(spec.get("podSelector") or {}, pod.labels)


def _governing(cluster: Cluster, pod: Pod, direction: str) -> list[Policy]:
    return [p for p in cluster.policies if selects(p, pod) and direction in policy_types(p)]


def _rules(policy: Policy, direction: str) -> list[Mapping[str, Any]]:
    key = "ingress" if direction == INGRESS else "egress"
    return list((policy.get("spec") or {}).get(key) or [])


# ----------------------------------------------------------------------- peers


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, cluster: Cluster,
                  other: Pod | str) -> bool:
    """Whether ``other`` (the far end: a pod, or a bare address) is this peer."""
    pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")
    block = peer.get("ipBlock")
    if block is not None:
        if pods is not None or namespaces is not None:
            raise InvalidPolicy("an ipBlock peer may not have selectors too")
        return _in_block(block, other.ip if isinstance(other, Pod) else other)
    if pods is None and namespaces is None:
        raise InvalidPolicy("a peer needs podSelector, namespaceSelector or ipBlock")
    if not isinstance(other, Pod):
        return False
    if namespaces is None:
        in_namespace = other.namespace == policy_namespace
    else:
        labels = cluster.namespaces.get(other.namespace)
        in_namespace = labels is not None and selector_matches(namespaces, labels)
    return in_namespace and (pods is None or selector_matches(pods, other.labels))


def _in_block(block: Mapping[str, Any], ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    network = ipaddress.ip_network(str(block.get("cidr") or ""), strict=False)
    excepted = [ipaddress.ip_network(str(e), strict=False) for e in block.get("except") or []]
    for each in excepted:
        if each.version != network.version or not each.subnet_of(network):  # type: ignore[arg-type]
            raise InvalidPolicy(f"except {each} is not inside cidr {network}")
    return address in network and not any(address in each for each in excepted)


def _peers_match(peers: Sequence[Mapping[str, Any]], policy_namespace: str, cluster: Cluster,
                 other: Pod | str) -> bool:
    return not peers or any(_peer_matches(p, policy_namespace, cluster, other) for p in peers)


# ----------------------------------------------------------------------- ports


def _port_matches(rule_port: Mapping[str, Any], connection: Connection) -> bool:
    protocol = str(rule_port.get("protocol") or TCP)
    port, end = rule_port.get("port"), rule_port.get("endPort")
    if end is not None and not isinstance(port, int):
        raise InvalidPolicy("endPort needs a numeric port")
    if protocol != connection.protocol:
        return False
    if port is None:
        return True
    if isinstance(port, str) and not port.isdigit():
        return connection.port in _named(connection.destination, port, protocol)
    first = int(port)
    last = first if end is None else int(end)
    if last < first:
        raise InvalidPolicy(f"endPort {last} is below port {first}")
    return first <= connection.port <= last


def _named(destination: Pod | str, name: str, protocol: str) -> set[int]:
    """The numbers ``name`` stands for on the destination (none outside every pod)."""
    if not isinstance(destination, Pod):
        return set()
    return {p.port for p in destination.ports if p.name == name and p.protocol == protocol}


def _ports_match(ports: Sequence[Mapping[str, Any]], connection: Connection) -> bool:
    return not ports or any(_port_matches(p, connection) for p in ports)


# --------------------------------------------------------------------- verdict


def _side_allows(cluster: Cluster, pod: Pod, direction: str, connection: Connection) -> bool:
    """The three layers on one side: ANPs, NetworkPolicy, the BANP."""
    decided = _admin_decision(cluster, pod, direction, connection)
    if decided in ("Allow", "Deny"):
        return decided == "Allow"
    governing = _governing(cluster, pod, direction)
    if governing:
        return _network_policies_allow(cluster, governing, direction, connection)
    if cluster.baseline is not None:
        baseline = _first_match(cluster, cluster.baseline, pod, direction, connection)
        if baseline is not None:
            return baseline == "Allow"
    return True


def _network_policies_allow(cluster: Cluster, governing: Sequence[Policy], direction: str,
                            connection: Connection) -> bool:
    other: Pod | str = connection.source if direction == INGRESS else connection.destination
    peers_key = "from" if direction == INGRESS else "to"
    for policy in governing:
        for rule in _rules(policy, direction):
            if _ports_match(rule.get("ports") or [], connection) and _peers_match(
                    rule.get(peers_key) or [], _namespace(policy), cluster, other):
                return True
    return False


def egress_allowed(cluster: Cluster, connection: Connection) -> bool:
    return _side_allows(cluster, connection.source, EGRESS, connection)


def ingress_allowed(cluster: Cluster, connection: Connection) -> bool:
    """The destination's side; an address outside every pod has none and allows."""
    destination = connection.destination
    if not isinstance(destination, Pod):
        return True
    return _side_allows(cluster, destination, INGRESS, connection)


def allowed(cluster: Cluster, connection: Connection) -> bool:
    """Whether the connection may be opened: the source's egress and the destination's
    ingress both allow it."""
    return egress_allowed(cluster, connection) and ingress_allowed(cluster, connection)


def isolated(cluster: Cluster, pod: Pod) -> frozenset[str]:
    """The directions in which ``pod`` is isolated."""
    return frozenset(d for d in (INGRESS, EGRESS) if _governing(cluster, pod, d))



# ------------------------------------------------------------ admin policies


def _in_pod_set(cluster: Cluster, chosen: Mapping[str, Any], pod: Pod) -> bool:
    """``chosen`` is ``{"namespaces": selector}`` or ``{"pods": {namespaceSelector,
    podSelector}}``."""
    namespace_labels = cluster.namespaces.get(pod.namespace)
    if namespace_labels is None:
        return False
    if chosen.get("namespaces") is not None:
        return selector_matches(chosen["namespaces"], namespace_labels)
    pods = chosen.get("pods")
    if pods is None:
        raise InvalidPolicy(f"a subject or peer needs namespaces or pods: {chosen!r}")
    return selector_matches(pods.get("namespaceSelector") or {}, namespace_labels) and \
        selector_matches(pods.get("podSelector") or {}, pod.labels)


def _admin_peer_matches(cluster: Cluster, peer: Mapping[str, Any], other: Pod | str) -> bool:
    networks = peer.get("networks")
    if networks is not None:
        address = ipaddress.ip_address(other.ip if isinstance(other, Pod) else other)
        return any(address in ipaddress.ip_network(str(n), strict=False) for n in networks)
    if peer.get("nodes") is not None:
        return False  # no probe goes to or comes from a node
    return isinstance(other, Pod) and _in_pod_set(cluster, peer, other)


def _admin_port_matches(port: Mapping[str, Any], connection: Connection) -> bool:
    if port.get("namedPort") is not None:
        destination = connection.destination
        return isinstance(destination, Pod) and any(
            p.name == port["namedPort"] and p.port == connection.port and
            p.protocol == connection.protocol for p in destination.ports)
    number, span = port.get("portNumber"), port.get("portRange")
    if number is not None:
        return str(number.get("protocol") or TCP) == connection.protocol and \
            int(number["port"]) == connection.port
    if span is None:
        raise InvalidPolicy(f"a port needs portNumber, namedPort or portRange: {port!r}")
    return str(span.get("protocol") or TCP) == connection.protocol and \
        int(span["start"]) <= connection.port <= int(span["end"])


def _first_match(cluster: Cluster, policy: Policy, pod: Pod, direction: str,
                 connection: Connection) -> str | None:
    """The action of the policy's first rule matching the connection on ``pod``'s side
    (``None`` when the policy does not apply to the pod, or no rule matches)."""
    spec = policy.get("spec") or {}
    if not _in_pod_set(cluster, spec.get("subject") or {}, pod):
        return None
    other: Pod | str = connection.source if direction == INGRESS else connection.destination
    peers_key = "from" if direction == INGRESS else "to"
    for rule in spec.get("ingress" if direction == INGRESS else "egress") or []:
        ports = rule.get("ports")
        if (not ports or any(_admin_port_matches(p, connection) for p in ports)) and any(
                _admin_peer_matches(cluster, peer, other) for peer in rule[peers_key]):
            return str(rule["action"])
    return None


def _admin_decision(cluster: Cluster, pod: Pod, direction: str,
                    connection: Connection) -> str | None:
    """What the ANPs say on one side: Allow, Deny, Pass, or ``None`` (no rule matched)."""
    ordered = sorted(cluster.admin, key=lambda p: int((p.get("spec") or {})["priority"]))
    for policy in ordered:
        action = _first_match(cluster, policy, pod, direction, connection)
        if action is not None:
            return action
    return None
