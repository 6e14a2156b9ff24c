"""AdminNetworkPolicy and BaselineAdminNetworkPolicy as OVN ACLs: a pure compiler.

The cluster administrator's policies (``policy.networking.k8s.io/v1alpha1``) wrap the
namespaces' NetworkPolicies: AdminNetworkPolicies (ANPs) are judged first, in the order
of their ``priority`` (lower number first), each one's rules in order, first match wins;
an ``Allow`` or ``Deny`` there is final, a ``Pass`` hands the connection on to
NetworkPolicy. Where no NetworkPolicy decides (the pod is not isolated), the single
BaselineAdminNetworkPolicy (BANP) ``default`` gets its turn, with the same first-match
order; what nothing decides is allowed.

OVN 23.03 has neither ACL tiers nor a ``pass`` verdict, so the layers are priority bands
(the NetworkPolicy compiler, ``podnet_sync.netpol``, documents the whole layout):

- ANPs take 20000-29999, above every NetworkPolicy row. The top one, 29999, allows
  IPv6 neighbour discovery on every group with a Deny (a policy about IP peers must
  not cut the link layer under a pod). Rules' priorities are handed out downwards from
  29998 in evaluation order: ANPs by (``priority``, name), every ANP a
  block as long as its longer rule list, a rule ``i`` of it at block top minus ``i``
  in both directions. The blocks are dense, so any ``priority`` from 0 to 1000 fits as
  long as all ANPs together have at most 9999 rules a direction; an ANP that would
  not fit is skipped whole (never in part), and reported.
- ``Pass`` has no ACL of its own: every rule judged after it (the rest of its ANP and
  every lower ANP, and nothing else) gets "and not this Pass" ANDed to its match, so the
  passed traffic matches no ANP row and falls through to NetworkPolicy's band. OVN
  refuses a ``!`` over a port name, a protocol or a family, so "not this Pass" is
  written positively, branch by family and protocol, negating only addresses and port
  numbers (``AdminCompiler.pass_exclusion``).
- The BANP takes 1000-1999 (1999 for neighbour discovery), below NetworkPolicy's
  isolation drop: a pod a NetworkPolicy isolates is decided there, and only the
  others reach the baseline.

``Allow`` is ``allow-related`` (replies pass, as for NetworkPolicy). ``Deny`` is a
``drop`` of new connections only (``!ct.est``), for the reason ``netpol.ISOLATED``
gives: a drop that an established load-balanced connection starts to match makes OVN
commit it as blocked, which stops Open vSwitch 3.1.0's ovs-vswitchd; connections made
before a Deny therefore run on, new ones are dropped.

Every rule compiles to one ACL: ``<subject> && <peers> && <ports>``. Subjects are a
port group per policy, peers an address set per rule and family (pods' and nodes'
addresses) plus ``networks`` CIDRs, ports numbers and ranges plus named ports, which
resolve per destination pod to (protocol, number) and match as "destination in the
pods with that number, on that number". Names reaching a match are ``safe_name``s, so
no user string enters one; CIDRs enter as ``ipaddress`` prints them.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ipam.addresses import IPAddress
from podnet_sync.cluster import PodView
from podnet_sync.nb_model import AddressSet, DesiredState, GroupAcl, PortGroup, owned
from podnet_sync.netpol import (
    ANP_PRIORITIES,
    BANP_PRIORITIES,
    EGRESS_SIDE,
    INGRESS_SIDE,
    PROTOCOLS,
    Compiler,
    IPNetwork,
    NamespaceView,
    PolicyError,
    PolicyPort,
    PolicyView,
    Selector,
    Side,
    _and,
    _list,
    _mapping,
    _port_clause,
    _port_number,
    _unique,
    parse_selector,
    safe_name,
)

ALLOW, DENY, PASS = "Allow", "Deny", "Pass"
ANP_KIND = "AdminNetworkPolicy"
BANP_KIND = "BaselineAdminNetworkPolicy"
BANP_NAME = "default"
"""The only BaselineAdminNetworkPolicy the API admits."""
PRIORITY_MAX = 1000
RULES_MAX = 100
DENIED = "!ct.est"
"""What a Deny adds to its rule's match: new connections only (see the module's
docstring)."""
ND = "nd || nd_rs || nd_ra"
"""IPv6 neighbour discovery, allowed at the top of a band on every group with a Deny.
It cannot be a ``!(nd ...)`` in the drop itself: OVN keeps a negated field's
prerequisites (``icmp6``) outside the negation, so the drop would match ICMPv6 only."""


# ------------------------------------------------------------------ the policies


@dataclass(frozen=True)
class PodSet:
    """Pods by namespace labels and pod labels (``pods`` ``None``: every pod)."""

    namespaces: Selector
    pods: Selector | None = None


@dataclass(frozen=True)
class AdminPeer:
    """One ``from``/``to`` entry: pods, nodes (egress) or networks (egress)."""

    pods: PodSet | None = None
    nodes: Selector | None = None
    networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class AdminRule:
    name: str
    action: str
    peers: tuple[AdminPeer, ...]
    ports: tuple[PolicyPort, ...] = ()
    """Empty: every port. A named port has ``port`` a name and ``protocol`` empty (the
    name says the protocol on each destination pod)."""


@dataclass(frozen=True)
class AdminPolicy:
    """An ANP, or the BANP (``priority`` ``None``)."""

    name: str
    uid: str
    priority: int | None
    subject: PodSet
    ingress: tuple[AdminRule, ...] = ()
    egress: tuple[AdminRule, ...] = ()

    @property
    def kind(self) -> str:
        return BANP_KIND if self.priority is None else ANP_KIND

    @property
    def tag(self) -> str:
        """A part of row names no namespace can be (namespaces are lower case)."""
        return "BANP" if self.priority is None else "ANP"


@dataclass(frozen=True)
class AdminNode:
    """A node as an egress ``nodes`` peer: its labels and the addresses pods see it by
    (its InternalIPs and its join addresses)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True)
class AdminProblem:
    """A policy the worker reports with a Warning Event; ``skipped`` when it enforces
    nothing."""

    kind: str
    name: str
    uid: str
    reason: str
    message: str
    skipped: bool = False


@dataclass(frozen=True)
class AdminView:
    """Everything the admin policy rows depend on."""

    policies: Sequence[AdminPolicy]
    """The ANPs."""
    baseline: AdminPolicy | None
    pods: Sequence[PodView]
    namespaces: Mapping[str, NamespaceView] = field(default_factory=dict)
    nodes: Sequence[AdminNode] = ()


# ------------------------------------------------------------------ parsing


def parse_admin_network_policy(obj: Mapping[str, Any]) -> AdminPolicy:
    """An AdminNetworkPolicy; ``PolicyError`` names the field that is wrong."""
    name, uid, spec = _head(obj)
    priority = spec.get("priority")
    if isinstance(priority, bool) or not isinstance(priority, int) or \
            not 0 <= priority <= PRIORITY_MAX:
        raise PolicyError(f"spec.priority {priority!r} is not a number from 0 to "
                          f"{PRIORITY_MAX}")
    return _policy(name, uid, priority, spec, (ALLOW, DENY, PASS))


def parse_baseline_admin_network_policy(obj: Mapping[str, Any]) -> AdminPolicy:
    """The BaselineAdminNetworkPolicy ``default``; ``PolicyError`` names what is wrong."""
    name, uid, spec = _head(obj)
    if name != BANP_NAME:
        raise PolicyError(f"metadata.name {name!r}: the only baseline policy is "
                          f"{BANP_NAME!r}")
    return _policy(name, uid, None, spec, (ALLOW, DENY))


def _head(obj: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]]:
    metadata = _mapping(obj.get("metadata"), "metadata")
    name = str(metadata.get("name") or "")
    if not name:
        raise PolicyError("metadata.name is required")
    return name, str(metadata.get("uid") or ""), _mapping(obj.get("spec"), "spec")


def _policy(name: str, uid: str, priority: int | None, spec: Mapping[str, Any],
            actions: tuple[str, ...]) -> AdminPolicy:
    return AdminPolicy(
        name, uid, priority, _subject(spec.get("subject"), "spec.subject"),
        _rules(spec.get("ingress"), "spec.ingress", "from", actions, egress=False),
        _rules(spec.get("egress"), "spec.egress", "to", actions, egress=True))


def _one_of(body: Mapping[str, Any], names: tuple[str, ...], where: str) -> str:
    given = [name for name in names if body.get(name) is not None]
    if len(given) != 1:
        raise PolicyError(f"{where} needs exactly one of {', '.join(names)}")
    return given[0]


def _subject(value: Any, where: str) -> PodSet:
    body = _mapping(value, where)
    if _one_of(body, ("namespaces", "pods"), where) == "namespaces":
        return PodSet(parse_selector(body["namespaces"], f"{where}.namespaces"))
    return _pod_set(body["pods"], f"{where}.pods")


def _pod_set(value: Any, where: str) -> PodSet:
    body = _mapping(value, where)
    for required in ("namespaceSelector", "podSelector"):
        if body.get(required) is None:
            raise PolicyError(f"{where}.{required} is required")
    return PodSet(parse_selector(body["namespaceSelector"], f"{where}.namespaceSelector"),
                  parse_selector(body["podSelector"], f"{where}.podSelector"))


def _rules(value: Any, where: str, peers_field: str, actions: tuple[str, ...],
           egress: bool) -> tuple[AdminRule, ...]:
    entries = _list(value, where)
    if len(entries) > RULES_MAX:
        raise PolicyError(f"{where} has {len(entries)} rules, at most {RULES_MAX}")
    rules = []
    for index, entry in enumerate(entries):
        at = f"{where}[{index}]"
        body = _mapping(entry, at)
        action = body.get("action")
        if action not in actions:
            raise PolicyError(f"{at}.action {action!r} is not one of {', '.join(actions)}")
        peers = _list(body.get(peers_field), f"{at}.{peers_field}")
        if not peers:
            raise PolicyError(f"{at}.{peers_field} needs at least one peer")
        rules.append(AdminRule(
            str(body.get("name") or ""), str(action),
            tuple(_peer(peer, f"{at}.{peers_field}[{n}]", egress)
                  for n, peer in enumerate(peers)),
            tuple(_port(port, f"{at}.ports[{n}]")
                  for n, port in enumerate(_list(body.get("ports"), f"{at}.ports")))))
    return tuple(rules)


def _peer(value: Any, where: str, egress: bool) -> AdminPeer:
    body = _mapping(value, where)
    kinds = ("namespaces", "pods", "nodes", "networks") if egress else ("namespaces", "pods")
    kind = _one_of(body, kinds, where)
    if kind == "namespaces":
        return AdminPeer(pods=PodSet(parse_selector(body[kind], f"{where}.namespaces")))
    if kind == "pods":
        return AdminPeer(pods=_pod_set(body[kind], f"{where}.pods"))
    if kind == "nodes":
        return AdminPeer(nodes=parse_selector(body[kind], f"{where}.nodes"))
    return AdminPeer(networks=tuple(_network(text, f"{where}.networks[{n}]")
                                    for n, text in enumerate(_list(body[kind],
                                                                   f"{where}.networks"))))


def _network(text: Any, where: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError as exc:
        raise PolicyError(f"{where} {text!r} is not a CIDR") from exc


def _port(value: Any, where: str) -> PolicyPort:
    body = _mapping(value, where)
    kind = _one_of(body, ("portNumber", "namedPort", "portRange"), where)
    if kind == "namedPort":
        name = body[kind]
        if not isinstance(name, str) or not name:
            raise PolicyError(f"{where}.namedPort must be a port name")
        return PolicyPort("", name)
    at = f"{where}.{kind}"
    inner = _mapping(body[kind], at)
    protocol = str(inner.get("protocol") or "TCP")
    if protocol not in PROTOCOLS:
        raise PolicyError(f"{at}.protocol {protocol!r} is not TCP, UDP or SCTP")
    if kind == "portNumber":
        return PolicyPort(protocol, _port_number(inner.get("port"), f"{at}.port"))
    start = _port_number(inner.get("start"), f"{at}.start")
    end = _port_number(inner.get("end"), f"{at}.end")
    if end < start:
        raise PolicyError(f"{at}.end {end} is below start {start}")
    return PolicyPort(protocol, start, end)


# ------------------------------------------------------------------ names


def subject_group(policy: AdminPolicy) -> str:
    return safe_name(policy.tag.lower(), policy.name)


# ------------------------------------------------------------------ compiling


@dataclass
class Band:
    """Where the next rule's ACL goes, and the passes it must stay clear of."""

    top: int
    bottom: int
    nd: int
    """The band's top priority: neighbour discovery's allow."""
    passes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Per direction: the matches of the Pass rules judged so far."""


class AdminCompiler:
    """One compilation; rows accumulate in the ``DesiredState`` given, problems in
    ``problems``."""

    def __init__(self, view: AdminView, state: DesiredState) -> None:
        self.view = view
        self.state = state
        # NetworkPolicy's compiler, without policies: its pod and namespace indexes
        self.index = Compiler(PolicyView((), view.pods, view.namespaces), state)
        self.problems: list[AdminProblem] = []

    def compile(self) -> None:
        ordered = sorted(self.view.policies, key=lambda p: (p.priority or 0, p.name))
        self.report_shared_priorities(ordered)
        top = ANP_PRIORITIES.stop - 1
        band = Band(top - 1, ANP_PRIORITIES.start, top)
        for policy in ordered:
            self.place(policy, band)
        if self.view.baseline is not None:
            top = BANP_PRIORITIES.stop - 1
            self.place(self.view.baseline, Band(top - 1, BANP_PRIORITIES.start, top))

    def report_shared_priorities(self, ordered: Sequence[AdminPolicy]) -> None:
        by_priority: dict[int, list[AdminPolicy]] = defaultdict(list)
        for policy in ordered:
            by_priority[policy.priority or 0].append(policy)
        for priority, sharing in sorted(by_priority.items()):
            if len(sharing) < 2:
                continue
            names = ", ".join(p.name for p in sharing)
            for policy in sharing:
                self.problems.append(AdminProblem(
                    policy.kind, policy.name, policy.uid, "SamePriority",
                    f"AdminNetworkPolicies {names} share priority {priority}, which the "
                    "API leaves undefined; podnet judges them in the order of their names"))

    def place(self, policy: AdminPolicy, band: Band) -> None:
        size = max(len(policy.ingress), len(policy.egress))
        if band.top - size + 1 < band.bottom:
            self.problems.append(AdminProblem(
                policy.kind, policy.name, policy.uid, "PolicySkipped",
                f"{policy.kind} skipped, it enforces nothing: the policies judged before "
                f"it use every OVN priority from {band.bottom} to {ANP_PRIORITIES.stop - 2}",
                skipped=True))
            return
        group = subject_group(policy)
        subjects = self.pods_of(policy.subject)
        acls: list[GroupAcl] = []
        for side, rules in ((INGRESS_SIDE, policy.ingress), (EGRESS_SIDE, policy.egress)):
            for index, rule in enumerate(rules):
                acl = self.rule_acl(policy, group, side, index, rule, subjects,
                                    band.top - index, band.passes[side.kind])
                if acl is not None:
                    acls.append(acl)
            if any(rule.action == DENY for rule in rules):
                acls.append(GroupAcl(f"{policy.tag}/{policy.name}/{side.short}/nd",
                                     band.nd, side.acl_direction,
                                     f"{side.port_field} == @{group} && ({ND})", "allow",
                                     side.options))
        band.top -= size
        self.state.port_groups[group] = PortGroup(
            group, tuple(sorted(pod.port_name for pod in subjects)),
            owned("netpol", **{"podnet.io/admin-policy": f"{policy.kind}/{policy.name}"}),
            tuple(sorted(acls, key=lambda acl: acl.key)))

    # -------------------------------------------------------------- selection

    def pods_of(self, chosen: PodSet) -> list[PodView]:
        namespaces = sorted(ns for ns in self.index.namespace_names()
                            if chosen.namespaces.matches(self.index.namespace_labels(ns)))
        pods = [pod for ns in namespaces for pod in self.index.by_namespace.get(ns, [])]
        if chosen.pods is None:
            return pods
        selector = chosen.pods
        return [pod for pod in pods if selector.matches(dict(pod.labels))]

    def node_addresses(self, selector: Selector) -> list[IPAddress]:
        return [ip for node in self.view.nodes if selector.matches(dict(node.labels))
                for ip in node.addresses]

    # -------------------------------------------------------------- rules

    def rule_acl(self, policy: AdminPolicy, group: str, side: Side, index: int,
                 rule: AdminRule, subjects: Sequence[PodView], priority: int,
                 passes: list[str]) -> GroupAcl | None:
        """The rule's one ACL (``None`` for a Pass, or a rule that matches nothing);
        a Pass's exclusion joins ``passes`` for every rule after it."""
        parts = (policy.tag, policy.name, side.short, str(index))
        peer_pods = _unique(pod for peer in rule.peers if peer.pods is not None
                            for pod in self.pods_of(peer.pods))
        ports = self.ports_clause(rule, side, subjects, peer_pods, parts)
        if ports is None:
            return None
        peers = self.peers_clause(rule, side, peer_pods, parts)
        match = _and(f"{side.port_field} == @{group}", peers, ports)
        if rule.action == PASS:
            passes.append(self.pass_exclusion(rule, side, subjects, peer_pods, parts))
            return None
        # every clause is a conjunction, an atom or parenthesised: they join as they are
        clauses = [match, *passes]
        if rule.action == DENY:
            clauses.append(DENIED)
        return GroupAcl("/".join(parts), priority, side.acl_direction, " && ".join(clauses),
                        "allow-related" if rule.action == ALLOW else "drop", side.options)

    def pass_exclusion(self, rule: AdminRule, side: Side, subjects: Sequence[PodView],
                       peer_pods: Sequence[PodView], parts: tuple[str, ...]) -> str:
        """What a later rule ANDs to its match to leave a Pass's traffic alone: "not this
        Pass", written without negating what OVN refuses to negate.

        OVN takes no ``!`` over a port name (``outport``), a protocol (``tcp``,
        ``ip.proto``) or a family (``ip4``): ovn-controller drops the whole ACL. So the
        traffic is split positively by family and protocol, and only addresses and port
        numbers are negated inside each branch, where their prerequisites hold. The
        subject is its pods' addresses. A branch the Pass cannot match (another family,
        another protocol, ICMP when the Pass names ports) is left whole. Other IP
        protocols than TCP, UDP, SCTP and ICMP after a Pass that names ports match no
        later rule (they have no positive spelling here) and go on to NetworkPolicy."""
        field = "dst" if side is INGRESS_SIDE else "src"
        subject_ips = [ip for pod in subjects for ip in pod.ips]
        ports = self.ports_by_family(rule, side, subjects, peer_pods, parts)
        branches = []
        for family in (4, 6):
            peers = self.family_peers(rule, side, peer_pods, family, parts)
            if peers is None:
                branches.append(f"ip{family}")
                continue
            name = self.address_set(subject_ips, family, *parts, "subject")
            passed = _and(f"ip{family}.{field} == ${name}", peers)
            if ports is None:
                branches.append(f"(ip{family} && !({passed}))")
                continue
            for protocol in ("tcp", "udp", "sctp"):
                clauses = ports.get((family, protocol), [])
                guard = f"ip{family} && {protocol}"
                if not clauses:
                    branches.append(f"({guard})")
                elif "" in clauses:
                    branches.append(f"({guard} && !({passed}))")
                else:
                    branches.append(f"({guard} && !({_and(passed, ' || '.join(clauses))}))")
            branches.append(f"(ip{family} && icmp{family})")
        return f"({' || '.join(branches)})"

    def family_peers(self, rule: AdminRule, side: Side, peer_pods: Sequence[PodView],
                     family: int, parts: tuple[str, ...]) -> str | None:
        """The rule's peers of one family (None: it has none there); the same address
        set as the rule's own match."""
        clauses = []
        if any(peer.pods is not None or peer.nodes is not None for peer in rule.peers):
            addresses = [ip for pod in peer_pods for ip in pod.ips]
            addresses += [ip for peer in rule.peers if peer.nodes is not None
                          for ip in self.node_addresses(peer.nodes)]
            name = self.address_set(addresses, family, *parts, "peers")
            clauses.append(f"ip{family}.{side.peer_field} == ${name}")
        clauses += [f"ip{family}.{side.peer_field} == {network}" for peer in rule.peers
                    for network in peer.networks if network.version == family]
        return " || ".join(clauses) if clauses else None

    def ports_by_family(self, rule: AdminRule, side: Side, subjects: Sequence[PodView],
                        peer_pods: Sequence[PodView], parts: tuple[str, ...]
                        ) -> dict[tuple[int, str], list[str]] | None:
        """The rule's ports as (family, protocol) → clauses ('' for every port of that
        protocol); None when it names none (every port of every protocol)."""
        if not rule.ports:
            return None
        found: dict[tuple[int, str], list[str]] = defaultdict(list)
        destinations = subjects if side is INGRESS_SIDE else peer_pods
        for number, port in enumerate(rule.ports):
            protocol = port.protocol.lower()
            if isinstance(port.port, str):
                for (named, value), addresses in self.named_targets(
                        port.port, destinations).items():
                    for family in (4, 6):
                        name = self.address_set(addresses, family, *parts, f"port{number}",
                                                named, str(value))
                        found[(family, named.lower())].append(
                            f"(ip{family}.dst == ${name} && {named.lower()}.dst == {value})")
                continue
            clause = "" if port.port is None else _port_clause(port)
            for family in (4, 6):
                found[(family, protocol)].append(clause)
        return found

    def peers_clause(self, rule: AdminRule, side: Side, peer_pods: Sequence[PodView],
                     parts: tuple[str, ...]) -> str:
        """Pods' and nodes' addresses in one set per family; networks as CIDRs."""
        addresses = [ip for pod in peer_pods for ip in pod.ips]
        addresses += [ip for peer in rule.peers if peer.nodes is not None
                      for ip in self.node_addresses(peer.nodes)]
        clauses = []
        if any(peer.pods is not None or peer.nodes is not None for peer in rule.peers):
            clauses += [f"ip{family}.{side.peer_field} == "
                        f"${self.address_set(addresses, family, *parts, 'peers')}"
                        for family in (4, 6)]
        clauses += [f"ip{network.version}.{side.peer_field} == {network}"
                    for peer in rule.peers for network in peer.networks]
        return " || ".join(clauses)

    def ports_clause(self, rule: AdminRule, side: Side, subjects: Sequence[PodView],
                     peer_pods: Sequence[PodView], parts: tuple[str, ...]) -> str | None:
        """'' for every port; ``None`` when no port can match (named ports only, and no
        destination has them)."""
        if not rule.ports:
            return ""
        clauses = [_port_clause(port) for port in rule.ports
                   if not isinstance(port.port, str)]
        destinations = subjects if side is INGRESS_SIDE else peer_pods
        for number, port in enumerate(rule.ports):
            if isinstance(port.port, str):
                clauses += self.named_port(port.port, destinations, (*parts, f"port{number}"))
        return " || ".join(clauses) if clauses else None

    def named_targets(self, name: str, destinations: Sequence[PodView]
                      ) -> dict[tuple[str, int], list[IPAddress]]:
        """A name means a (protocol, number) per destination pod: the addresses of the
        pods with each pair."""
        by_port: dict[tuple[str, int], list[IPAddress]] = defaultdict(list)
        for pod in destinations:
            for port in pod.container_ports:
                if port.name == name:
                    by_port[(port.protocol, port.number)].extend(pod.ips)
        return dict(sorted(by_port.items()))

    def named_port(self, name: str, destinations: Sequence[PodView],
                   parts: tuple[str, ...]) -> list[str]:
        """One clause per (protocol, number) pair the name resolves to: "the
        destination is one of the pods with that pair, on that port"."""
        clauses = []
        for (protocol, number), addresses in self.named_targets(name, destinations).items():
            where = " || ".join(
                f"ip{family}.dst == "
                f"${self.address_set(addresses, family, *parts, protocol, str(number))}"
                for family in (4, 6))
            clauses.append(f"({_and(where, f'{protocol.lower()}.dst == {number}')})")
        return clauses

    def address_set(self, addresses: Iterable[IPAddress], family: int, *parts: str) -> str:
        name = safe_name("as", *parts, f"ip{family}")
        chosen = sorted({str(ip) for ip in addresses if ip.version == family})
        self.state.policy_address_sets[name] = AddressSet(
            name, tuple(chosen), owned("netpol", **{"podnet.io/set": "/".join(parts)}))
        return name


def add_admin_network_policies(state: DesiredState, view: AdminView) -> list[AdminProblem]:
    """Add the rows of ``view``'s ANPs and BANP; returns what to report about them."""
    compiler = AdminCompiler(view, state)
    compiler.compile()
    return compiler.problems
