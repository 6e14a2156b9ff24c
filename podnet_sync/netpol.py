"""Kubernetes NetworkPolicy as OVN port groups, address sets and ACLs: a pure compiler.

A NetworkPolicy is a set of allows on top of an implied default deny, and OVN's ACLs are
a priority-ordered first match, so the compiler splits every policy into two kinds of
rows:

- **isolation**, per namespace and direction: a port group of the pods that some policy
  selects for that direction, with a ``drop`` of all IP traffic (ARP is never IP, and
  IPv6 neighbour discovery is allowed explicitly), and for ingress an allow from the
  nodes' join addresses, the source of kubelet's health checks;
- **allows**, per policy: a port group of the pods it selects and one ``allow-related``
  ACL per rule (or per resolved named port), whose peers are address sets of the pods
  its selectors match, with ``ipBlock`` CIDRs written into the match.

A peers' address set is named after what it selects (the namespaces and the pod
selector), not after the policy: policies that admit the same peers (every namespace's
"allow the monitoring scrapers") share one set, so NB holds each content once, and a pod
that joins those peers changes one set, not one per policy.

Allows of every policy share one priority, so policies add up (a union, as the API says),
and that priority sits above the isolation drop. ``allow-related`` makes each allowed
connection stateful: replies pass without a rule of their own.

Egress ACLs are ``from-lport`` with ``options:apply-after-lb=true``: a client connects to
a Service's ClusterIP, and only after the load balancer has chosen a backend does the
destination say which pod is reached. Ingress ACLs are ``to-lport``, which OVN always
applies after the load balancer. OVN keeps the priorities of its three ACL stages
(``from-lport``, ``from-lport`` after the load balancer, ``to-lport``) apart, so the
bands below hold within each stage.

**Priority bands.** OVN 23.03 has no ACL tiers and no ``pass`` action, so the three
layers of Kubernetes network policy are bands of priorities, highest first:

=============================  ===============  ==========================================
layer                          priorities       rows
=============================  ===============  ==========================================
AdminNetworkPolicy             20000-29999      ANP rules by priority, above everything
NetworkPolicy allow            10001            every policy's allows; ND; node health
NetworkPolicy logged drop      10000            drop of a logging policy's pods, named
NetworkPolicy isolation        9999             drop for pods a policy isolates
private subnets (topology)     2900-3000        the switch ACLs of ``private: true`` subnets
BaselineAdminNetworkPolicy     1000-1999        below isolation: applies to unselected pods
=============================  ===============  ==========================================

Every name that reaches a match (port groups, address sets) is derived from the policy's
namespace and name through a hash, with a readable part of letters, digits and ``_``
only: those are user strings and never enter a match as they are. ``ipBlock`` CIDRs do
enter it, but only as re-printed by ``ipaddress``.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ipam import annotations as keys
from ipam.addresses import IPAddress
from podnet_sync.cluster import PodView
from podnet_sync.nb_model import AddressSet, DesiredState, GroupAcl, Meter, PortGroup, owned

ANP_PRIORITIES = range(20000, 30000)
"""Reserved for AdminNetworkPolicy: above every NetworkPolicy row."""
NP_ALLOW = 10001
NP_POLICY_DENY = 10000
"""A logged drop of the pods one policy isolates (Kube-OVN's logging annotations): its
log line names that policy. Above the namespace's drop, which it shadows for them."""
NP_DENY = 9999
"""The namespace's isolation drop, for every pod some policy isolates."""
BANP_PRIORITIES = range(1000, 2000)
"""Reserved for BaselineAdminNetworkPolicy: below NetworkPolicy isolation, so it decides
only for pods no NetworkPolicy selects."""

INGRESS = "Ingress"
EGRESS = "Egress"
PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""The label kube-apiserver puts on every namespace (assumed when a store lacks it)."""
SEVERITIES = frozenset({"alert", "warning", "notice", "info", "debug"})
ACL_NAME_MAX = 63
DEFAULT_LOG_RATE = 20
"""Logged packets a second per meter when a policy does not say."""
NODES_SET = "podnet_np_nodes_ip{family}"
ISOLATED = "ip && !ct.est"
"""What an isolation drop matches: IP (ARP stays) of new connections only. OVN would
otherwise mark an established connection that starts to match a drop as blocked, with a
conntrack commit; on a load-balanced connection that commit trips an assertion of
Open vSwitch 3.1.0's userspace conntrack (fixed in 3.1.3) and stops ovs-vswitchd. The
API leaves open whether a new policy cuts connections already made; these run on."""

_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", re.ASCII)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Labels = Mapping[str, str]
NamedPort = tuple[str, str, int]
"""A container port's name and protocol, and the number it resolves to."""
ALL_NAMESPACES = "*"
"""In an origin: every namespace (no namespace is named so)."""


class PolicyError(ValueError):
    """A NetworkPolicy podnet cannot compile; the message names the field."""


# ------------------------------------------------------------------ the policies


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def holds(self, labels: Labels) -> bool:
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        inside = present and labels[self.key] in self.values
        return inside if self.operator == "In" else not inside


@dataclass(frozen=True)
class Selector:
    """A label selector; the empty one matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Labels) -> bool:
        return (all(labels.get(key) == value for key, value in self.match_labels)
                and all(requirement.holds(labels) for requirement in self.expressions))


@dataclass(frozen=True)
class IPBlock:
    network: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    def covers(self, ip: IPAddress) -> bool:
        return ip in self.network and not any(ip in hole for hole in self.excepts)


Choice = tuple[str, Selector] | IPBlock
"""How pods were chosen: by namespace and pod selector, or by an ipBlock."""
Origin = tuple[Choice, ...]
"""What a list of pods is the union of."""


@dataclass(frozen=True)
class Peer:
    """A ``from``/``to`` entry: selectors (``None`` = not given) or an ipBlock."""

    pods: Selector | None = None
    namespaces: Selector | None = None
    block: IPBlock | None = None


@dataclass(frozen=True)
class PolicyPort:
    protocol: str = "TCP"
    port: int | str | None = None
    """A number, a container port's name, or ``None`` for every port."""
    end_port: int | None = None


@dataclass(frozen=True)
class Rule:
    peers: tuple[Peer, ...] = ()
    """Empty: every source (ingress) or destination (egress)."""
    ports: tuple[PolicyPort, ...] = ()
    """Empty: every port and protocol."""


@dataclass(frozen=True)
class LogRequest:
    """What a policy's own (Kube-OVN) annotations ask to be logged."""

    allow: bool = False
    drop: bool = False
    rate: int = 0
    """Packets a second; 0 for the default."""


@dataclass(frozen=True)
class NetworkPolicy:
    namespace: str
    name: str
    uid: str
    selector: Selector
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    types: frozenset[str] = frozenset({INGRESS})
    logging: LogRequest = LogRequest()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NamespaceView:
    name: str
    labels: tuple[tuple[str, str], ...] = ()
    allow_severity: str = ""
    """From ``k8s.ovn.org/acl-logging``: log allowed packets at this severity."""
    deny_severity: str = ""


# ------------------------------------------------------------------ parsing


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where} must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PolicyError(f"{where} must be a list")
    return value


def parse_selector(value: Any, where: str) -> Selector:
    """A label selector as the API defines it (an invalid one raises ``PolicyError``)."""
    body = _mapping(value, where)
    labels = _mapping(body.get("matchLabels"), f"{where}.matchLabels")
    for key, label in labels.items():
        if not isinstance(label, str):
            raise PolicyError(f"{where}.matchLabels.{key} must be a string")
    requirements = []
    for index, entry in enumerate(_list(body.get("matchExpressions"),
                                        f"{where}.matchExpressions")):
        requirements.append(_requirement(_mapping(entry, f"{where}.matchExpressions[{index}]"),
                                         f"{where}.matchExpressions[{index}]"))
    return Selector(tuple(sorted((str(k), v) for k, v in labels.items())), tuple(requirements))


def _requirement(entry: Mapping[str, Any], where: str) -> Requirement:
    key, operator = entry.get("key"), entry.get("operator")
    values = _list(entry.get("values"), f"{where}.values")
    if not isinstance(key, str) or not key:
        raise PolicyError(f"{where}.key is required")
    if operator not in OPERATORS:
        raise PolicyError(f"{where}.operator {operator!r} is not one of "
                          "In, NotIn, Exists, DoesNotExist")
    if operator in ("In", "NotIn") and not values:
        raise PolicyError(f"{where}.values must not be empty for operator {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise PolicyError(f"{where}.values must be empty for operator {operator}")
    if not all(isinstance(value, str) for value in values):
        raise PolicyError(f"{where}.values must be strings")
    return Requirement(key, str(operator), frozenset(values))


def _ip_block(value: Any, where: str) -> IPBlock:
    body = _mapping(value, where)
    try:
        network = ipaddress.ip_network(str(body.get("cidr", "")), strict=False)
    except ValueError as exc:
        raise PolicyError(f"{where}.cidr {body.get('cidr')!r} is not a CIDR") from exc
    holes = []
    for index, text in enumerate(_list(body.get("except"), f"{where}.except")):
        try:
            hole = ipaddress.ip_network(str(text), strict=False)
        except ValueError as exc:
            raise PolicyError(f"{where}.except[{index}] {text!r} is not a CIDR") from exc
        if hole.version != network.version or not hole.subnet_of(network):  # type: ignore[arg-type]
            raise PolicyError(f"{where}.except[{index}] {text} is not inside cidr {network}")
        holes.append(hole)
    return IPBlock(network, tuple(holes))


def _peer(value: Any, where: str) -> Peer:
    body = _mapping(value, where)
    given = {name for name in ("podSelector", "namespaceSelector", "ipBlock") if name in body
             and body[name] is not None}
    if not given:
        raise PolicyError(f"{where} needs podSelector, namespaceSelector or ipBlock")
    if "ipBlock" in given and len(given) > 1:
        raise PolicyError(f"{where}: ipBlock cannot be combined with a selector")
    if "ipBlock" in given:
        return Peer(block=_ip_block(body["ipBlock"], f"{where}.ipBlock"))
    return Peer(
        pods=parse_selector(body["podSelector"], f"{where}.podSelector")
        if "podSelector" in given else None,
        namespaces=parse_selector(body["namespaceSelector"], f"{where}.namespaceSelector")
        if "namespaceSelector" in given else None,
    )


def _port_number(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise PolicyError(f"{where} {value!r} is not a port number (1-65535)")
    return value


def _policy_port(value: Any, where: str) -> PolicyPort:
    body = _mapping(value, where)
    protocol = str(body.get("protocol") or "TCP")
    if protocol not in PROTOCOLS:
        raise PolicyError(f"{where}.protocol {protocol!r} is not TCP, UDP or SCTP")
    port = body.get("port")
    end = body.get("endPort")
    if isinstance(port, str):
        if len(port) > 15 or not _PORT_NAME.fullmatch(port) or port.isdigit():
            raise PolicyError(f"{where}.port {port!r} is neither a number nor a port name")
        if end is not None:
            raise PolicyError(f"{where}.endPort needs a numeric port")
        return PolicyPort(protocol, port)
    number = None if port is None else _port_number(port, f"{where}.port")
    if end is not None:
        if number is None:
            raise PolicyError(f"{where}.endPort needs a numeric port")
        end = _port_number(end, f"{where}.endPort")
        if end < number:
            raise PolicyError(f"{where}.endPort {end} is below port {number}")
    return PolicyPort(protocol, number, end)


def _rules(value: Any, where: str, peers_field: str) -> tuple[Rule, ...]:
    rules = []
    for index, entry in enumerate(_list(value, where)):
        body = _mapping(entry, f"{where}[{index}]")
        rules.append(Rule(
            tuple(_peer(peer, f"{where}[{index}].{peers_field}[{n}]")
                  for n, peer in enumerate(_list(body.get(peers_field),
                                                 f"{where}[{index}].{peers_field}"))),
            tuple(_policy_port(port, f"{where}[{index}].ports[{n}]")
                  for n, port in enumerate(_list(body.get("ports"),
                                                 f"{where}[{index}].ports"))),
        ))
    return tuple(rules)


def parse_network_policy(obj: Mapping[str, Any]) -> NetworkPolicy:
    """A ``networking.k8s.io/v1`` NetworkPolicy; ``PolicyError`` names what is wrong."""
    metadata = _mapping(obj.get("metadata"), "metadata")
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    if not namespace or not name:
        raise PolicyError("metadata.namespace and metadata.name are required")
    spec = _mapping(obj.get("spec"), "spec")
    ingress = _rules(spec.get("ingress"), "spec.ingress", "from")
    egress = _rules(spec.get("egress"), "spec.egress", "to")
    types = _list(spec.get("policyTypes"), "spec.policyTypes")
    for kind in types:
        if kind not in (INGRESS, EGRESS):
            raise PolicyError(f"spec.policyTypes {kind!r} is not Ingress or Egress")
    if not types:  # the API's default: Ingress, and Egress when there are egress rules
        types = [INGRESS, *([EGRESS] if egress else [])]
    return NetworkPolicy(
        namespace, name, str(metadata.get("uid") or ""),
        parse_selector(spec.get("podSelector"), "spec.podSelector"),
        ingress, egress, frozenset(types), _log_request(metadata.get("annotations")),
    )


def _log_request(annotations: Any) -> LogRequest:
    """Kube-OVN's logging annotations; malformed values log nothing extra, never fail."""
    if not isinstance(annotations, Mapping) or annotations.get(keys.ENABLE_LOG) != "true":
        return LogRequest()
    actions = {part.strip() for part in
               str(annotations.get(keys.LOG_ACL_ACTIONS) or "drop").split(",")}
    rate_text = str(annotations.get(keys.ACL_LOG_METER_RATE) or "")
    rate = int(rate_text) if rate_text.isdigit() and int(rate_text) > 0 else 0
    return LogRequest(allow="allow" in actions, drop="drop" in actions, rate=rate)


def parse_namespace(obj: Mapping[str, Any]) -> NamespaceView:
    """A namespace's labels (with ``kubernetes.io/metadata.name``) and its OVN-Kubernetes
    ``acl-logging`` severities (an unreadable annotation asks for no logging)."""
    metadata = _mapping(obj.get("metadata"), "metadata")
    name = str(metadata.get("name") or "")
    labels = {str(k): str(v) for k, v in _mapping(metadata.get("labels"), "labels").items()}
    labels.setdefault(NAMESPACE_NAME_LABEL, name)
    annotations = metadata.get("annotations")
    text = annotations.get(keys.ACL_LOGGING) if isinstance(annotations, Mapping) else None
    try:
        wanted = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        wanted = {}
    wanted = wanted if isinstance(wanted, dict) else {}

    def severity(verdict: str) -> str:
        value = wanted.get(verdict)
        return value if isinstance(value, str) and value in SEVERITIES else ""

    return NamespaceView(name, tuple(sorted(labels.items())), severity("allow"),
                         severity("deny"))


# ------------------------------------------------------------------ names


def safe_name(kind: str, *parts: str) -> str:
    """A port group or address set name for a match: ``np<kind>_`` + a readable part of
    letters, digits and ``_`` + a hash of the exact parts (unique, never injectable)."""
    readable = re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts))[:40]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    return f"np{kind}_{readable}_{digest}"


@functools.lru_cache(maxsize=4096)
def selector_text(selector: Selector) -> str:
    """A selector spelled canonically (labels are kept sorted, values sorted here)."""
    labels = ",".join(f"{key}={value}" for key, value in selector.match_labels)
    expressions = ";".join(
        f"{each.key} {each.operator} {','.join(sorted(each.values))}"
        for each in selector.expressions)
    return f"{labels}|{expressions}"


def choice_text(choice: Choice) -> str:
    if isinstance(choice, IPBlock):
        holes = ",".join(str(hole) for hole in choice.excepts)
        return f"ipblock:{choice.network}!{holes}"
    namespace, selector = choice
    return f"{namespace}:{selector_text(selector)}"


def canonical_origin(origin: Origin) -> Origin:
    """The choices of a union, each once, in one order: equal unions, equal origins."""
    return tuple(sorted(set(origin), key=choice_text))


def watched_namespaces(origin: Origin) -> set[str]:
    """The namespaces whose pods may change what ``origin`` chooses (an ipBlock may
    cover a pod of any)."""
    return {ALL_NAMESPACES if isinstance(choice, IPBlock) else choice[0] for choice in origin}


def selection_set(origin: Origin, family: int, port: NamedPort | None = None) -> str:
    """The name of the shared address set of the pods ``origin`` chooses (those whose
    port of that name and protocol has that number, with ``port``)."""
    parts = [choice_text(choice) for choice in origin]
    if port is not None:
        parts.append("{}/{}/{}".format(*port))
    return safe_name("sel", *parts, f"ip{family}")


def origin_chooses(origin: Origin, pod: PodView, labels: Labels) -> bool:
    """Whether the pod (with these labels) is among what ``origin`` chooses."""
    for choice in origin:
        if isinstance(choice, IPBlock):
            if any(choice.covers(ip) for ip in pod.ips):
                return True
        elif choice[0] in (pod.namespace, ALL_NAMESPACES) and choice[1].matches(labels):
            return True
    return False


def policy_group(policy: NetworkPolicy) -> str:
    return safe_name("", policy.namespace, policy.name)


def isolation_group(namespace: str, direction: str) -> str:
    return safe_name("deny", namespace, direction)


def acl_name(text: str) -> str:
    """An ACL ``name`` (shown in OVN's log lines), cut to OVN's 63 characters."""
    if len(text) <= ACL_NAME_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[:ACL_NAME_MAX - 9]}~{digest}"


def meter_name(rate: int) -> str:
    return f"podnet-acl-log-{rate}"


# ------------------------------------------------------------------ compiling


@dataclass(frozen=True)
class Side:
    """How one direction of a policy is spelled in OVN."""

    kind: str
    short: str
    acl_direction: str
    port_field: str
    peer_field: str
    options: tuple[tuple[str, str], ...]


INGRESS_SIDE = Side(INGRESS, "in", "to-lport", "outport", "src", ())
EGRESS_SIDE = Side(EGRESS, "eg", "from-lport", "inport", "dst", (("apply-after-lb", "true"),))


@dataclass(frozen=True)
class PolicyView:
    """Everything the policy rows depend on."""

    policies: Sequence[NetworkPolicy]
    pods: Sequence[PodView]
    """The pods that have a switch port (host-network pods are never selected)."""
    namespaces: Mapping[str, NamespaceView] = field(default_factory=dict)
    node_ips: Sequence[IPAddress] = ()
    """The nodes' join addresses: where kubelet's health checks come from."""


@dataclass
class Logging:
    """The log columns an ACL gets."""

    severity: str = ""
    meter: str = ""

    def columns(self, name: str) -> dict[str, Any]:
        if not self.severity:
            return {}
        return {"log": True, "severity": self.severity, "name": acl_name(name),
                "meter": self.meter}


class PodIndex:
    """The pods policies choose from (those with addresses and a switch port), grouped
    by namespace, with their labels as mappings and their addresses as text.

    Selecting is matching labels pod by pod, and a thousand policies over ten thousand
    pods would rebuild those mappings millions of times; the index builds them once per
    pod version, and an event step updates it pod by pod instead of re-reading all."""

    def __init__(self, pods: Iterable[PodView] = ()) -> None:
        self.by_namespace: dict[str, list[PodView]] = defaultdict(list)
        self.labels: dict[str, Labels] = {}
        self.texts: dict[str, tuple[tuple[int, str], ...]] = {}
        self.owners: dict[str, set[str]] = defaultdict(set)
        """An address -> the ports holding it (one, unless records disagree)."""
        self.memo: dict[tuple[Any, ...], Any] = {}
        """What compilations worked out from every pod (named ports' numbers, shared
        sets' rows), kept until any pod changes: a burst of policy events reuses it."""
        self._members: dict[str, dict[str, PodView]] = defaultdict(dict)
        self._ports: dict[str, PodView] = {}
        self._all: list[PodView] | None = None
        self._choices: dict[str, dict[Selector, tuple[list[PodView], dict[int, list[str]]]]]
        self._choices = {}
        self._inside: dict[IPBlock, dict[str, PodView]] = {}
        for pod in pods:
            self.put(pod.port_name, pod)

    def get(self, port: str) -> PodView | None:
        return self._ports.get(port)

    def put(self, port: str, pod: PodView | None) -> None:
        """``port``'s pod is now ``pod`` (``None``: gone or without an address)."""
        self.memo.clear()
        old = self._ports.get(port)
        if old is not None and (pod is None or old.namespace != pod.namespace):
            self._drop(port, old.namespace)
        if pod is None or not pod.ips or pod.host_network:
            if old is not None:
                self._drop(port, old.namespace)
            return
        self._members[pod.namespace][port] = pod
        self._ports[port] = pod
        for block, inside in self._inside.items():
            if any(block.covers(ip) for ip in pod.ips):
                inside[port] = pod
            else:
                inside.pop(port, None)
        self.labels[port] = dict(pod.labels)
        self._own(port, tuple((ip.version, str(ip)) for ip in pod.ips))
        self.by_namespace[pod.namespace] = list(self._members[pod.namespace].values())
        self._choices.pop(pod.namespace, None)
        self._all = None

    def _drop(self, port: str, namespace: str) -> None:
        members = self._members.get(namespace, {})
        if members.pop(port, None) is None:
            return
        self._ports.pop(port, None)
        self._choices.pop(namespace, None)
        for inside in self._inside.values():
            inside.pop(port, None)
        self.labels.pop(port, None)
        self._own(port, ())
        if members:
            self.by_namespace[namespace] = list(members.values())
        else:
            self.by_namespace.pop(namespace, None)
            self._members.pop(namespace, None)
        self._all = None

    def _own(self, port: str, texts: tuple[tuple[int, str], ...]) -> None:
        for _, text in self.texts.pop(port, ()):
            holders = self.owners.get(text)
            if holders is not None:
                holders.discard(port)
                if not holders:
                    del self.owners[text]
        if texts:
            self.texts[port] = texts
            for _, text in texts:
                self.owners[text].add(port)

    def choose(self, namespace: str, selector: Selector) -> list[PodView]:
        """The pods of ``namespace`` that ``selector`` matches, kept until a pod of the
        namespace changes: most policies an event recompiles ask what they asked before."""
        per = self._choices.setdefault(namespace, {})
        found = per.get(selector)
        if found is None:
            labels = self.labels
            found = ([pod for pod in self.by_namespace.get(namespace, [])
                      if selector.matches(labels[pod.port_name])], {})
            per[selector] = found
        return found[0]

    def inside(self, block: IPBlock) -> list[PodView]:
        """The pods with an address in ``block``, kept up to date pod by pod."""
        members = self._inside.get(block)
        if members is None:
            members = {pod.port_name: pod for pod in self.pods
                       if any(block.covers(ip) for ip in pod.ips)}
            self._inside[block] = members
        return list(members.values())

    def addresses(self, namespace: str, selector: Selector, family: int) -> list[str]:
        """The addresses of ``family`` of ``choose(namespace, selector)``, kept alike."""
        pods = self.choose(namespace, selector)
        texts = self._choices[namespace][selector][1]
        found = texts.get(family)
        if found is None:
            found = [text for pod in pods for version, text in self.texts[pod.port_name]
                     if version == family]
            texts[family] = found
        return found

    def union(self, origin: Origin, family: int,
              port: NamedPort | None = None) -> tuple[str, ...]:
        """The addresses of ``family`` of every pod these choices pick (whose named port
        has that number, with ``port``), sorted."""
        simple = [choice for choice in origin
                  if not isinstance(choice, IPBlock) and choice[0] != ALL_NAMESPACES]
        if port is None and len(simple) == len(origin):
            if len(simple) == 1:
                namespace, selector = simple[0]
                return tuple(sorted(self.addresses(namespace, selector, family)))
            return tuple(sorted({text for namespace, selector in simple
                                 for text in self.addresses(namespace, selector, family)}))
        pods = self.chosen(origin)
        if port is not None:
            name, protocol, number = port
            pods = [pod for pod in pods if resolve_port(pod, name, protocol) == number]
        return tuple(sorted({text for pod in pods for version, text in self.texts[pod.port_name]
                             if version == family}))

    def chosen(self, origin: Origin) -> list[PodView]:
        """Every pod these choices pick, each once."""
        found: dict[str, PodView] = {}
        for choice in origin:
            if isinstance(choice, IPBlock):
                found.update((pod.port_name, pod) for pod in self.inside(choice))
                continue
            namespace, selector = choice
            if namespace == ALL_NAMESPACES:
                found.update((pod.port_name, pod) for pod in self.pods
                             if selector.matches(self.labels[pod.port_name]))
            else:
                found.update((pod.port_name, pod) for pod in self.choose(namespace, selector))
        return list(found.values())

    @property
    def pods(self) -> list[PodView]:
        if self._all is None:
            self._all = [pod for members in self._members.values()
                         for pod in members.values()]
        return self._all


class Compiler:
    """One compilation; the rows accumulate in the ``DesiredState`` given.

    Policies share selectors (``app: web`` in many namespaces' rules), so what a
    selector picks is worked out once per compilation. ``direct``, ``numbers``,
    ``shared`` and ``everywhere`` say, for the policy compiled last, what its rows depend
    on (the policy cache follows pod events by them)."""

    def __init__(self, view: PolicyView, state: DesiredState,
                 index: PodIndex | None = None) -> None:
        self.view = view
        self.state = state
        self.index = index if index is not None else PodIndex(view.pods)
        self.pods = self.index.pods
        self.by_namespace = self.index.by_namespace
        self.isolated: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.everywhere = False
        """The policy compiled last has rows only a full look at every pod can check."""
        self.direct: set[tuple[str, Selector]] = set()
        """The choices of the pods the policy compiled last selects."""
        self.numbers: dict[tuple[Origin, str, str], frozenset[int]] = {}
        """The named ports the policy compiled last resolved: (origin, name, protocol)
        -> the numbers found (one ACL each)."""
        self.shared: dict[str, tuple[int, Origin, NamedPort | None]] = {}
        """The shared sets the policy compiled last uses: name -> (family, origin,
        named port)."""
        self._origins: dict[int, Origin] = {}
        """A kept list -> the (namespace, selector) choices it is the union of."""
        self._namespaces: dict[Selector, list[str]] = {}
        self._blocks: dict[IPBlock, list[PodView]] = {}
        self._addresses: dict[tuple[int, tuple[int, ...]], list[str]] = {}
        self._kept: dict[int, list[PodView]] = {}
        self._unions: dict[tuple[str, tuple[Peer, ...]], list[PodView]] = {}
        self._numbers: dict[tuple[int, str, str], list[tuple[int, list[PodView]]]] = {}
        self._selections: dict[str, AddressSet] = {}

    def keep(self, pods: list[PodView]) -> list[PodView]:
        """Remember a list of pods this compilation made: its rows are worked out once."""
        self._kept[id(pods)] = pods
        return pods

    def peers_of(self, policy: NetworkPolicy, peers: tuple[Peer, ...]) -> list[PodView]:
        """Every pod of these peers, each once (remembered, with what it is the union
        of)."""
        key = (policy.namespace, peers)
        found = self._unions.get(key)
        if found is None:
            lists = [self.peer_pods(policy, peer) for peer in peers]
            found = lists[0] if len(lists) == 1 else self.keep(_unique(
                pod for each in lists for pod in each))
            origins = [self._origins.get(id(each)) for each in lists]
            if len(lists) > 1 and all(origin is not None for origin in origins):
                self._origins[id(found)] = tuple(part for origin in origins
                                                 for part in origin or ())
            self._unions[key] = found
        return found

    def by_number(self, destinations: list[PodView], name: str,
                  protocol: str) -> list[tuple[int, list[PodView]]]:
        """The destinations grouped by the number their port ``name`` has (remembered)."""
        self.keep(destinations)
        key = (id(destinations), name, protocol)
        origin = self._origins.get(id(destinations))
        found = self._numbers.get(key)
        if found is None:
            lasting = None if origin is None else (
                "numbers", canonical_origin(origin), name, protocol)
            found = self.index.memo.get(lasting) if lasting is not None else None
            if found is None:
                found = _group_by_number(destinations, name, protocol)
                if lasting is not None:
                    self.index.memo[lasting] = found
            for _, pods in found:
                self.keep(pods)
            self._numbers[key] = found
        if origin is None:
            self.everywhere = True  # a union this compilation cannot name: any pod
        else:
            self.numbers[(canonical_origin(origin), name, protocol)] = frozenset(
                number for number, _ in found)
        return found

    def every_pod(self) -> list[PodView]:
        """Every pod, as a choice of every namespace (egress to any pod)."""
        pods = self.keep(self.pods)
        self._origins[id(pods)] = ((ALL_NAMESPACES, Selector()),)
        return pods

    def choose(self, namespace: str, selector: Selector) -> list[PodView]:
        """The pods of ``namespace`` that ``selector`` matches (remembered)."""
        found = self.keep(self.index.choose(namespace, selector))
        self._origins[id(found)] = ((namespace, selector),)
        return found

    def chosen_namespaces(self, selector: Selector) -> list[str]:
        found = self._namespaces.get(selector)
        if found is None:
            found = sorted(ns for ns in self.namespace_names()
                           if selector.matches(self.namespace_labels(ns)))
            self._namespaces[selector] = found
        return found

    # -------------------------------------------------------------- selection

    def namespace_labels(self, namespace: str) -> Labels:
        known = self.view.namespaces.get(namespace)
        return dict(known.labels) if known else {NAMESPACE_NAME_LABEL: namespace}

    def namespace_names(self) -> set[str]:
        return set(self.view.namespaces) | set(self.by_namespace)

    def selected(self, policy: NetworkPolicy) -> list[PodView]:
        self.direct.add((policy.namespace, policy.selector))
        return self.choose(policy.namespace, policy.selector)

    def peer_pods(self, policy: NetworkPolicy, peer: Peer) -> list[PodView]:
        """The pods a peer stands for (for an ipBlock: the pods inside it)."""
        if peer.block is not None:
            return self._inside(peer.block)
        if peer.namespaces is None:
            namespaces = [policy.namespace]
        else:
            namespaces = self.chosen_namespaces(peer.namespaces)
        chosen = peer.pods if peer.pods is not None else Selector()
        if len(namespaces) == 1:
            return self.choose(namespaces[0], chosen)
        pods = self.keep([pod for ns in namespaces for pod in self.choose(ns, chosen)])
        self._origins[id(pods)] = tuple((ns, chosen) for ns in namespaces)
        return pods

    def _inside(self, block: IPBlock) -> list[PodView]:
        found = self._blocks.get(block)
        if found is None:
            found = self.keep(self.index.inside(block))
            self._blocks[block] = found
            self._origins[id(found)] = (block,)
        return found

    # ---------------------------------------------------------------- rows

    def address_set(self, pods: Iterable[PodView], family: int, *parts: str) -> str:
        """A set of its own of the pods' addresses of ``family``."""
        chosen = pods if isinstance(pods, list) and self._kept.get(id(pods)) is pods \
            else tuple(pods)
        origin = self._origins.get(id(chosen)) if isinstance(chosen, list) else None
        name = safe_name("as", *parts, f"ip{family}")
        # a list this compilation made and keeps stands for itself; other pods by their
        # identities (they live in the index meanwhile)
        key = (family, (id(chosen),) if isinstance(chosen, list) else tuple(map(id, chosen)))
        addresses = self._addresses.get(key)
        if addresses is None and origin is not None:
            addresses = list(self.index.union(origin, family))
            self._addresses[key] = addresses
        if addresses is None:
            texts = self.index.texts
            addresses = sorted({text for pod in chosen
                                for version, text in texts[pod.port_name]
                                if version == family})
            self._addresses[key] = addresses
        self.state.policy_address_sets[name] = AddressSet(
            name, tuple(addresses), owned("netpol", **{"podnet.io/set": "/".join(parts)}))
        return name

    def selection_clause(self, origin: Origin, direction: str,
                         port: NamedPort | None = None) -> str:
        """``ip4.<direction> == {$a, $b} || ip6.<direction> == {...}`` over one shared
        set per choice of ``origin`` (with ``port``: of the chosen pods whose named port
        has that number). Choices recur across policies far more than their unions do,
        so each content is kept once and a pod is in as few sets as it can be."""
        choices: list[Origin] = [(choice,) for choice in canonical_origin(origin)] or [()]
        clauses = []
        for family in (4, 6):
            names = [self._selection_set(each, family, port) for each in choices]
            ref = f"${names[0]}" if len(names) == 1 else \
                "{" + ", ".join(f"${name}" for name in names) + "}"
            clauses.append(f"ip{family}.{direction} == {ref}")
        return " || ".join(clauses)

    def _selection_set(self, origin: Origin, family: int, port: NamedPort | None) -> str:
        """The shared set of one choice (or of none), worked out once per compilation
        and kept by the index until a pod changes."""
        name = selection_set(origin, family, port)
        self.shared[name] = (family, origin, port)
        row = self._selections.get(name) or self.index.memo.get(("row", name))
        if row is None:
            row = selection_row(name, origin, self.index.union(origin, family, port), port)
            self.index.memo[("row", name)] = row
        self._selections[name] = row
        self.state.policy_address_sets[name] = row
        return name

    def addresses_clause(self, pods: Sequence[PodView], direction: str, *parts: str) -> str:
        """``ip4.<direction> == $set4 || ip6.<direction> == $set6`` over the pods' IPs."""
        return " || ".join(
            f"ip{family}.{direction} == ${self.address_set(pods, family, *parts)}"
            for family in (4, 6))

    def meter(self, rate: int) -> str:
        name = meter_name(rate or DEFAULT_LOG_RATE)
        self.state.meters[name] = Meter(name, rate or DEFAULT_LOG_RATE, owned("meter"))
        return name

    def allow_logging(self, policy: NetworkPolicy) -> Logging:
        namespace = self.view.namespaces.get(policy.namespace)
        severity = namespace.allow_severity if namespace else ""
        if not severity and policy.logging.allow:
            severity = "info"
        return Logging(severity, self.meter(policy.logging.rate) if severity else "")

    # ---------------------------------------------------------------- policies

    def compile(self) -> None:
        if not self.view.policies:
            return
        for policy in sorted(self.view.policies, key=lambda p: p.key):
            self.compile_policy(policy)
        self.compile_isolation()

    def compile_policy(self, policy: NetworkPolicy) -> None:
        selected = self.selected(policy)
        group = policy_group(policy)
        acls: list[GroupAcl] = []
        for side, rules in ((INGRESS_SIDE, policy.ingress), (EGRESS_SIDE, policy.egress)):
            if side.kind not in policy.types:
                continue
            for pod in selected:
                self.isolated[(policy.namespace, side.kind)].add(pod.port_name)
            if policy.logging.drop:
                acls.append(self.logged_drop(policy, group, side))
            for index, rule in enumerate(rules):
                acls.extend(self.rule_acls(policy, group, side, index, rule, selected))
        self.state.port_groups[group] = PortGroup(
            group, tuple(sorted(pod.port_name for pod in selected)),
            owned("netpol", **{"podnet.io/policy": policy.key}),
            tuple(sorted(acls, key=lambda acl: acl.key)))

    def rule_acls(self, policy: NetworkPolicy, group: str, side: Side, index: int,
                  rule: Rule, selected: Sequence[PodView]) -> list[GroupAcl]:
        parts = (policy.namespace, policy.name, side.short, str(index))
        logging = self.allow_logging(policy)
        label = f"np:{policy.key}:{side.short}{index}"
        base = f"{side.port_field} == @{group}"
        numbered = [port for port in rule.ports if not isinstance(port.port, str)]
        needs_peers = bool(numbered or not rule.ports or side is INGRESS_SIDE)
        peers = self.peers_clause(policy, side, rule, *parts) if needs_peers else ""
        acls = []
        if numbered or not rule.ports:
            ports = " || ".join(_port_clause(port) for port in numbered)
            acls.append(self.allow(f"np/{'/'.join(parts)}", side, logging, label,
                                   base, peers if peers or ports else "ip", ports))
        for number, port in enumerate(rule.ports):
            if isinstance(port.port, str):
                acls.extend(self.named_port_acls(policy, side, rule, port, number, selected,
                                                 base, peers, logging, label, parts))
        return acls

    def logged_drop(self, policy: NetworkPolicy, group: str, side: Side) -> GroupAcl:
        """The namespace's drop, again on the policy's own pods and logged under the
        policy's name (Kube-OVN names a policy's drop after the policy). It sits above
        the namespace's drop, so the line names a policy that isolates the pod; when
        several logging policies isolate it, one of them. The severity is the
        namespace's ``acl-logging`` deny severity when it has one, else ``warning``."""
        namespace = self.view.namespaces.get(policy.namespace)
        severity = namespace.deny_severity if namespace and namespace.deny_severity \
            else "warning"
        logging = Logging(severity, self.meter(policy.logging.rate))
        return GroupAcl(
            f"np-isolation/{policy.namespace}/{side.short}/{policy.name}/drop",
            NP_POLICY_DENY, side.acl_direction,
            _and(f"{side.port_field} == @{group}", ISOLATED), "drop", side.options,
            **logging.columns(f"np:{policy.key}:deny-{side.short}"))

    def peers_clause(self, policy: NetworkPolicy, side: Side, rule: Rule,
                     *parts: str) -> str:
        """The rule's peers as one clause ('' for every address)."""
        if not rule.peers:
            return ""
        clauses = []
        selectors = tuple(peer for peer in rule.peers if peer.block is None)
        if selectors:
            pods = self.peers_of(policy, selectors)
            origin = self._origins.get(id(pods))
            clauses.append(
                self.addresses_clause(pods, side.peer_field, *parts, "peers")
                if origin is None else self.selection_clause(origin, side.peer_field))
        for peer in rule.peers:
            if peer.block is not None:
                clauses.append(_block_clause(peer.block, side.peer_field))
        return " || ".join(clauses)

    def named_port_acls(
        self, policy: NetworkPolicy, side: Side, rule: Rule, port: PolicyPort, number: int,
        selected: Sequence[PodView], base: str, peers: str, logging: Logging, label: str,
        parts: tuple[str, ...],
    ) -> list[GroupAcl]:
        """A named port means a number per destination pod: the pods are grouped by the
        number their container port of that name and protocol has, and each group gets
        an ACL matching its pods' addresses and that number. For ingress the
        destinations are the selected pods; for egress the peers' pods (every pod when
        the rule has no peers)."""
        if side is INGRESS_SIDE:
            destinations = selected if isinstance(selected, list) else list(selected)
        elif rule.peers:
            destinations = self.peers_of(policy, rule.peers)
            peers = ""  # the destination addresses below are the peers' own
        else:
            destinations = self.every_pod()
        origin = self._origins.get(id(destinations))
        acls = []
        for resolved, pods in self.by_number(destinations, str(port.port), port.protocol):
            named = (*parts, f"port{number}", str(resolved))
            if origin is None:
                where = self.addresses_clause(pods, "dst", *named)
            else:  # shared by every rule reaching the same pods on the same port
                where = self.selection_clause(
                    origin, "dst", (str(port.port), port.protocol, resolved))
            acls.append(self.allow(f"np/{'/'.join(named)}", side, logging, label, base,
                                   peers, where, f"{port.protocol.lower()}.dst == {resolved}"))
        return acls

    def allow(self, key: str, side: Side, logging: Logging, label: str,
              *clauses: str) -> GroupAcl:
        return GroupAcl(key, NP_ALLOW, side.acl_direction, _and(*clauses), "allow-related",
                        side.options, **logging.columns(label))

    # ---------------------------------------------------------------- isolation

    def compile_isolation(self) -> None:
        """A port group per namespace and direction of the pods a policy isolates,
        with its drop, the ND allow, and (ingress) the nodes' health checks."""
        nodes = " || ".join(
            f"ip{family}.src == ${self.node_set(family)}" for family in (4, 6))
        for namespace in sorted({ns for ns, _ in self.isolated}):
            for side in (INGRESS_SIDE, EGRESS_SIDE):
                members = self.isolated.get((namespace, side.kind), set())
                if members:
                    self.isolation_rows(namespace, side, members, nodes)

    def node_set(self, family: int) -> str:
        name = NODES_SET.format(family=family)
        addresses = sorted(str(ip) for ip in self.view.node_ips if ip.version == family)
        self.state.policy_address_sets[name] = AddressSet(name, tuple(addresses),
                                                          owned("netpol"))
        return name

    def isolation_rows(self, namespace: str, side: Side, members: set[str],
                       nodes: str) -> None:
        group = isolation_group(namespace, side.kind)
        base = f"{side.port_field} == @{group}"
        key = f"np-isolation/{namespace}/{side.short}"
        logging = self.deny_log(namespace)
        acls = [
            GroupAcl(f"{key}/drop", NP_DENY, side.acl_direction, _and(base, ISOLATED), "drop",
                     side.options, **logging.columns(f"np:{namespace}:deny-{side.short}")),
            GroupAcl(f"{key}/nd", NP_ALLOW, side.acl_direction,
                     _and(base, "nd || nd_rs || nd_ra"), "allow", side.options),
        ]
        if side is INGRESS_SIDE:
            acls.append(GroupAcl(f"{key}/nodes", NP_ALLOW, side.acl_direction,
                                 _and(base, nodes), "allow-related", side.options))
        self.state.port_groups[group] = PortGroup(
            group, tuple(sorted(members)),
            owned("netpol", **{"podnet.io/namespace": namespace,
                               "podnet.io/direction": side.kind}),
            tuple(sorted(acls, key=lambda acl: acl.key)))

    def deny_log(self, namespace: str) -> Logging:
        """The namespace's drop is logged when the namespace asks (OVN-Kubernetes'
        ``acl-logging``); a policy's own annotations log its pods' drops on its own
        group (``logged_drop``)."""
        known = self.view.namespaces.get(namespace)
        severity = known.deny_severity if known else ""
        return Logging(severity, self.meter(0) if severity else "")


def selection_row(name: str, origin: Origin, addresses: tuple[str, ...],
                  port: NamedPort | None = None) -> AddressSet:
    """A shared set: its external_ids say what it selects, in short."""
    if not origin:
        described = "no namespace"
    else:
        described = choice_text(origin[0])[:120]
        if len(origin) > 1:
            described += f" and {len(origin) - 1} more"
    if port is not None:
        described += " port {}/{} = {}".format(*port)
    return AddressSet(name, addresses, owned("netpol", **{"podnet.io/selects": described}))


def _group_by_number(pods: Iterable[PodView], name: str,
                     protocol: str) -> list[tuple[int, list[PodView]]]:
    """The pods grouped by the number their port of that name and protocol has."""
    groups: dict[int, list[PodView]] = defaultdict(list)
    for pod in pods:
        resolved = resolve_port(pod, name, protocol)
        if resolved is not None:
            groups[resolved].append(pod)
    return sorted(groups.items())


def _unique(pods: Iterable[PodView]) -> list[PodView]:
    return list({pod.port_name: pod for pod in pods}.values())


def resolve_port(pod: PodView, name: str, protocol: str) -> int | None:
    """The number of the pod's container port of that name and protocol, if any."""
    return next((port.number for port in pod.container_ports
                 if port.name == name and port.protocol == protocol), None)


def _port_clause(port: PolicyPort) -> str:
    protocol = port.protocol.lower()
    if port.port is None:
        return protocol
    if port.end_port is not None and port.end_port != port.port:
        return f"({protocol}.dst >= {port.port} && {protocol}.dst <= {port.end_port})"
    return f"{protocol}.dst == {port.port}"


def _block_clause(block: IPBlock, direction: str) -> str:
    family = f"ip{block.network.version}.{direction}"
    clause = f"{family} == {block.network}"
    if block.excepts:
        holes = ", ".join(str(hole) for hole in block.excepts)
        clause += f" && {family} != {{{holes}}}"
    return f"({clause})"


def _and(*clauses: str) -> str:
    """The clauses ANDed, each parenthesised when it is an OR ('' ones left out)."""
    parts = [f"({clause})" if "||" in clause else clause for clause in clauses if clause]
    return " && ".join(parts)


def add_network_policies(state: DesiredState, view: PolicyView) -> None:
    """Add the port groups, address sets, ACLs and meters of ``view``'s policies."""
    Compiler(view, state).compile()
