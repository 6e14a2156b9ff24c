"""``podnet trace NAMESPACE/POD DESTINATION[:PORT]``: why a pod's packet goes where it
goes, in OVN's own words, shortened to what a user asks about.

``ovn-trace`` replays a packet through the logical flows ovn-northd compiled from what the
sync worker wrote: it is the authority on what OVN will do, but its detailed output runs
to a hundred lines of tables and registers. This module builds the packet the pod would
send (its port as ``inport``, its MAC and IP as sources; to its gateway's MAC unless the
destination is a pod of its own subnet; a TCP SYN to PORT, or an ICMP echo without one),
runs ``ovn-trace`` against the lab's southbound database with every connection-tracking
step seen as a new connection, and summarises the output:

- the **path**: the logical switches and routers crossed, in order;
- the **load balancer** (a Service VIP), its backends, which one was chosen and whether
  ClientIP affinity applies;
- the **router policy** that decided the next hop (east-west allow, or a reroute to a
  node's join address: the gateway);
- the **ACL verdict** (a private subnet's ACLs), with the ACL that decided;
- the **outcome**: delivered to a port, dropped (where, and why), or where the trace
  stopped. A packet for another cluster (``up --clusters``) ends in this AZ at the
  transit switch ``ts``, delivered to the other AZ's remote port ``ts-<az>``: the rest of
  its way is traced in that AZ (``--cluster``).

OVN 23.03's ``ovn-trace`` does not simulate ``commit_lb_aff`` (the affinity learn action)
and stops there; the trace is then continued with the packet as the load balancer
rewrote it, and the two are read as one.

``summarise`` and ``combine`` are pure and tested on captured ``ovn-trace`` output.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ipam import annotations as keys
from ipam import names
from podnet.daemons import BackgroundProcess
from podnet.lab.objects import key_of, metadata
from podnet.lab.rest import Rest
from podnet.lab.settings import LabSettings
from podnet.ovn import Central, OvnError, run
from podnet_plumbing import kube

ACL_TABLE = re.compile(r"^ls_(in|out)_acl(_after_lb|_eval|_action)?$")
ACL_KEY = "podnet.io/key"
"""Where podnet writes an ACL's identity (the sync worker's ``KEY``)."""
ACL_PRIORITY_OFFSET = 1000
"""ovn-northd adds this to an ACL's priority in its logical flow."""
HEADER = re.compile(r'^(ingress|egress)\(dp="([^"]+)"(?:, inport="([^"]*)")?'
                    r'(?:, outport="([^"]*)")?\)')
FLOW = re.compile(r"^\s*(\d+)\. (\w+) \([^)]*\): (.*), priority (\d+), uuid [0-9a-f]+$")
OUTPUT = re.compile(r'/\* output to "([^"]+)", type "([^"]*)" \*/')
BACKENDS = re.compile(r"ct_lb(?:_mark)?\(backends=([^;)]*)")
AFFINITY_BACKEND = re.compile(r'commit_lb_aff\(.*backend = "([^"]+)"')
VIP = re.compile(r"ip[46]\.dst == (\S+) && (?:tcp|udp|sctp)\.dst == (\d+)")
USER_MATCH = re.compile(r"^(?:reg\d+\[\d+\] == \d+ && )+\((.*)\)$")
REROUTE = re.compile(r"^(?:xx)?reg0 = (\S+);$")
CT_NEW = ["--ct=new"] * 8
"""One per connection-tracking step a packet may meet (pod, router, destination)."""


# ------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Flow:
    """One logical flow the packet matched, and the actions it ran."""

    pipeline: str
    datapath: str
    stage: int
    table: str
    match: str
    priority: int
    actions: tuple[str, ...] = ()


@dataclass
class _Reader:
    flows: list[Flow] = field(default_factory=list)
    datapaths: list[str] = field(default_factory=list)
    pipeline: str = ""
    datapath: str = ""
    notes: list[str] = field(default_factory=list)

    def header(self, found: re.Match[str]) -> None:
        self.pipeline, self.datapath = found.group(1), found.group(2)
        if not self.datapaths or self.datapaths[-1] != self.datapath:
            self.datapaths.append(self.datapath)

    def flow(self, found: re.Match[str]) -> None:
        self.flows.append(Flow(self.pipeline, self.datapath, int(found.group(1)),
                               found.group(2), found.group(3), int(found.group(4))))

    def action(self, line: str) -> None:
        if self.flows:
            last = self.flows[-1]
            self.flows[-1] = replace(last, actions=(*last.actions, line))


def parse(text: str) -> tuple[list[Flow], list[str], list[str]]:
    """The flows of a detailed ``ovn-trace`` output, the datapaths in the order crossed,
    and ovn-trace's own remarks (``*** ...`` lines)."""
    reader = _Reader()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or set(line) == {"-"}:
            continue
        if header := HEADER.match(line):
            reader.header(header)
        elif flow := FLOW.match(raw):
            reader.flow(flow)
        elif line.startswith("***"):
            reader.notes.append(line.strip("* "))
        elif raw.startswith(" "):
            reader.action(line)
    return reader.flows, reader.datapaths, reader.notes


# ------------------------------------------------------------------ summary


@dataclass(frozen=True)
class LoadBalancing:
    vip: str
    backends: tuple[str, ...]
    chosen: str = ""
    affinity: bool = False

    def describe(self) -> str:
        text = f"{self.vip} -> {', '.join(self.backends)}"
        if self.chosen:
            text += f"; chose {self.chosen}"
        return text + (" (ClientIP affinity)" if self.affinity else "")


@dataclass(frozen=True)
class TraceSummary:
    path: tuple[str, ...]
    """``switch <name>`` and ``router <name>``, in the order crossed."""
    load_balancer: LoadBalancing | None
    policy: str
    """The router policy that decided the next hop ("" when no router was crossed)."""
    acl: str
    allowed_by_acl: bool
    outcome: str
    delivered_to: str = ""
    dropped_at: str = ""
    notes: tuple[str, ...] = ()
    acl_flow: tuple[int, str] | None = None
    """The deciding ACL as its logical flow shows it: (the ACL's priority, its match)."""
    acl_owner: str = ""
    """The policy and rule that ACL was compiled from (``owner_of``), when known."""

    @property
    def complete(self) -> bool:
        return bool(self.delivered_to or self.dropped_at)

    def render(self) -> str:
        rows = [("path", " -> ".join(self.path) or "-")]
        if self.load_balancer is not None:
            rows.append(("load balancer", self.load_balancer.describe()))
        if self.policy:
            rows.append(("router policy", self.policy))
        rows.append(("ACL", self.acl))
        if self.acl_owner:
            rows.append(("policy", self.acl_owner))
        rows.append(("outcome", self.outcome))
        rows += [("note", note) for note in self.notes]
        return "\n".join(f"  {name + ':':<15} {value}" for name, value in rows)


def summarise(text: str) -> TraceSummary:
    """What a detailed ``ovn-trace`` output says, in the terms of the module docstring."""
    flows, datapaths, notes = parse(text)
    if not flows:
        message = text.strip().splitlines()[-1] if text.strip() else "no output"
        return TraceSummary((), None, "", "-", True, f"ovn-trace: {message}",
                            notes=tuple(notes))
    kinds = {f.datapath: "router" if f.table.startswith("lr_") else "switch" for f in flows}
    path = tuple(f"{kinds.get(name, 'switch')} {name}" for name in datapaths)
    acl, allowed = acl_verdict(flows)
    outcome, delivered, dropped = _outcome(flows)
    return TraceSummary(path, load_balancing(flows), router_policy(flows), acl, allowed,
                        outcome, delivered, dropped, tuple(notes), deciding_acl(flows))


def load_balancing(flows: Sequence[Flow]) -> LoadBalancing | None:
    for index, flow in enumerate(flows):
        for action in flow.actions:
            if found := BACKENDS.search(action):
                backends = tuple(b for b in found.group(1).split(",") if b)
                vip = VIP.search(flow.match)
                where = f"{vip.group(1)}:{vip.group(2)}" if vip else "VIP"
                later = flows[index + 1:]
                return LoadBalancing(where, backends, _chosen(backends, later),
                                     any("lb_aff" in f.table for f in flows))
    return None


def _chosen(backends: Sequence[str], later: Sequence[Flow]) -> str:
    """The backend the rest of the trace went to: the one affinity recorded, else the
    first whose address a later flow matched on."""
    for flow in later:
        for action in flow.actions:
            if found := AFFINITY_BACKEND.search(action):
                return found.group(1)
    for flow in later:
        for backend in backends:
            address = backend.rsplit(":", 1)[0].strip("[]")
            if re.search(rf"(?<![\w.:]){re.escape(address)}(?![\w.])", flow.match):
                return backend
    return ""


def router_policy(flows: Iterable[Flow]) -> str:
    chosen = [f for f in flows if f.table == "lr_in_policy"]
    if not chosen:
        return ""
    flow = chosen[-1]
    reroute = next((m.group(1) for a in flow.actions if (m := REROUTE.match(a))), None)
    if reroute is not None:
        return f"priority {flow.priority}: reroute to {reroute} (a node's join address)"
    if any(action.startswith(("drop", "reject")) for action in flow.actions):
        return f"priority {flow.priority}: drop"
    if flow.priority == 0:
        return "none matched: routed by destination"
    return f"priority {flow.priority}: allow, routed by destination"


def _deciding(flows: Iterable[Flow]) -> tuple[Flow | None, bool]:
    """The ACL flow that decided (the first that drops, else the last that allowed),
    and whether it was a drop."""
    decided = [f for f in flows if ACL_TABLE.match(f.table)
               and f.priority >= ACL_PRIORITY_OFFSET]
    denied = next((f for f in decided if _drops(f)), None)
    return denied or (decided[-1] if decided else None), denied is not None


def deciding_acl(flows: Iterable[Flow]) -> tuple[int, str] | None:
    """(priority, match) of the ACL that decided, as written in the NB."""
    flow, _ = _deciding(flows)
    if flow is None:
        return None
    match = USER_MATCH.match(flow.match)
    return flow.priority - ACL_PRIORITY_OFFSET, match.group(1) if match else flow.match


def owner_of(key: str) -> str:
    """Who a podnet ACL speaks for, from its ``podnet.io/key``: the policy and the rule
    (``np/<namespace>/<name>/<in|eg>/<rule>``, ``np-isolation/<namespace>/<in|eg>/...``,
    ``ANP/<name>/<in|eg>/<rule>``, ``BANP/...``); '' for any other."""
    parts = key.split("/")
    sides = {"in": "ingress", "eg": "egress"}
    if parts[0] == "np" and len(parts) >= 5:
        side = sides.get(parts[3], parts[3])
        return f"NetworkPolicy {parts[1]}/{parts[2]}, {side} rule {parts[4]}"
    if parts[0] == "np-isolation" and len(parts) >= 3:
        side = sides.get(parts[2], parts[2])
        if parts[-1] == "drop":
            return (f"namespace {parts[1]}'s {side} isolation: a NetworkPolicy selects the "
                    "pod and none of its rules allows this")
        return f"namespace {parts[1]}'s {side} isolation ({parts[-1]} allowed)"
    kinds = {"ANP": "AdminNetworkPolicy", "BANP": "BaselineAdminNetworkPolicy"}
    if parts[0] in kinds and len(parts) >= 4:
        rule = f"rule {parts[3]}" if parts[3].isdigit() else parts[3]
        return f"{kinds[parts[0]]} {parts[1]}, {sides.get(parts[2], parts[2])} {rule}"
    return ""


def acl_verdict(flows: Iterable[Flow]) -> tuple[str, bool]:
    """The verdict of the ACLs on the path, and whether it lets the packet through."""
    flow, denied = _deciding(flows)
    if flow is None:
        return "no ACL on the path: allowed", True
    direction = "from-lport" if flow.table.startswith("ls_in") else "to-lport"
    match = USER_MATCH.match(flow.match)
    what = match.group(1) if match else flow.match
    verdict = "denied" if denied else "allowed"
    return (f"{verdict} by ACL {direction} priority {flow.priority - ACL_PRIORITY_OFFSET} "
            f"on {flow.datapath}: {what}"), not denied


def _drops(flow: Flow) -> bool:
    return any(action.startswith(("drop;", "reject")) for action in flow.actions)


def _outcome(flows: Sequence[Flow]) -> tuple[str, str, str]:
    """(what happened, the port it was delivered to, the table it was dropped in)."""
    for flow in reversed(flows):
        for action in flow.actions:
            found = OUTPUT.search(action)
            if found and found.group(2) != "patch":
                port = found.group(1)
                note = _remote_note(port) if found.group(2) == "remote" else _port_note(port)
                return f"delivered to {port}{note}", port, ""
        if _drops(flow):
            return f"dropped in {flow.table} on {flow.datapath}{_drop_note(flow)}", "", \
                flow.table
    last = flows[-1]
    action = last.actions[-1] if last.actions else ""
    return (f"the trace stops in {last.table} on {last.datapath} at {action or 'no action'}",
            "", "")


def _port_note(port: str) -> str:
    if port.startswith("node-"):
        return f" (node {port.removeprefix('node-')}'s ovn0: its gateway out of the cluster)"
    return ""


def _remote_note(port: str) -> str:
    """A port of another availability zone on an OVN-IC transit switch (``ts-<az>``)."""
    zone = port.removeprefix("ts-") if port.startswith("ts-") else "another AZ"
    return (f" (the transit switch's port of AZ {zone}: tunnelled from this AZ's gateway "
            f"chassis to {zone}'s, whose router delivers it)")


def _drop_note(flow: Flow) -> str:
    if ACL_TABLE.match(flow.table):
        return " (by an ACL)"
    if "port_sec" in flow.table:
        return " (port security: the source MAC or IP is not the port's)"
    return ""


def combine(first: TraceSummary, rest: TraceSummary) -> TraceSummary:
    """A trace that stopped at the load balancer, and its continuation from there."""
    tail = rest.path[1:] if rest.path[:1] == first.path[-1:] else rest.path
    decider = first if not first.allowed_by_acl else rest
    return TraceSummary(
        (*first.path, *tail), first.load_balancer or rest.load_balancer,
        rest.policy or first.policy, decider.acl, decider.allowed_by_acl, rest.outcome,
        rest.delivered_to, rest.dropped_at,
        (*first.notes, *rest.notes, "ovn-trace stops at commit_lb_aff; the rest was traced "
         "with the packet as the load balancer rewrote it"),
        decider.acl_flow or first.acl_flow,
    )


# ------------------------------------------------------------- the packet


@dataclass(frozen=True)
class Packet:
    """The first packet of a pod's connection, as ``ovn-trace`` is told it."""

    inport: str
    eth_src: str
    eth_dst: str
    source: str
    destination: str
    port: int | None = None
    """TCP destination port; None for an ICMP echo request."""

    def microflow(self) -> str:
        v6 = ipaddress.ip_address(self.destination).version == 6
        family = "ip6" if v6 else "ip4"
        parts = [f'inport == "{self.inport}"', f"eth.src == {self.eth_src}",
                 f"eth.dst == {self.eth_dst}", f"{family}.src == {self.source}",
                 f"{family}.dst == {self.destination}", "ip.ttl == 64"]
        if self.port is not None:
            parts += [f"tcp.dst == {self.port}", "tcp.src == 40000", "tcp.flags == 0x002"]
        else:
            parts.append("icmp6.type == 128" if v6 else "icmp4.type == 8")
        return " && ".join(parts)

    def towards(self, backend: str) -> Packet:
        """The packet as a load balancer rewrote it for ``backend`` (``ip:port``)."""
        address, _, port = backend.rpartition(":")
        return replace(self, destination=address.strip("[]"),
                       port=int(port) if port.isdigit() else self.port)


def parse_destination(text: str) -> tuple[str, int | None]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT``, ``NAMESPACE/POD`` or ``NAMESPACE/POD:PORT``."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.removeprefix(":")) if rest.startswith(":") else None
    if text.count(":") > 1:  # a bare IPv6 address
        return text, None
    host, colon, port = text.partition(":")
    if colon and not port.isdigit():
        raise ValueError(f"{text}: the port must be a number")
    return host, int(port) if colon else None


def trace_command(sb_remote: str, datapath: str, packet: Packet) -> list[str]:
    return ["ovn-trace", f"--db={sb_remote}", *CT_NEW, datapath, packet.microflow()]


def run_trace(sb_remote: str, datapath: str, packet: Packet) -> str:
    try:
        return run(trace_command(sb_remote, datapath, packet), timeout_s=30)
    except OvnError as exc:
        return str(exc)


def trace_packet(sb_remote: str, datapath: str, packet: Packet) -> tuple[TraceSummary, str]:
    """Trace and summarise, continuing past a load balancer ovn-trace stops at; also
    the raw output."""
    text = run_trace(sb_remote, datapath, packet)
    summary = summarise(text)
    balancer = summary.load_balancer
    if summary.complete or balancer is None or not balancer.chosen:
        return summary, text
    more = run_trace(sb_remote, datapath, packet.towards(balancer.chosen))
    return combine(summary, summarise(more)), f"{text}\n{more}"


def address_of(annotations: Mapping[str, str], family: int) -> str:
    """The pod's address of one IP family, from the webhook's annotations."""
    for ip in str(annotations.get(keys.IP_ADDRESS) or "").split(","):
        if ip and ipaddress.ip_address(ip).version == family:
            return ip
    return ""


# ---------------------------------------------------------------- the lab


class TraceError(RuntimeError):
    """The trace cannot be made; the message says why (no such pod, no address...)."""


def explain(settings: LabSettings, pod_key: str, destination: str,
            raw: bool = False) -> str:
    """``podnet trace``: the summary (and with ``raw`` the output) of tracing a packet
    from ``pod_key`` (``NAMESPACE/POD``) to ``destination``."""
    if BackgroundProcess("apiserver", settings.state_dir).pid() is None:
        raise TraceError(f"no lab runs with state in {settings.state_dir}: run podnet up first")
    rest = Rest(kube.kube_client(settings.kubeconfig("admin")))
    pods = rest.list("Pod")
    source = _find_pod(pods, pod_key)
    host, port = parse_destination(destination)
    if "/" in host:
        host = _pod_address(_find_pod([*pods, *_peer_pods(settings)], host),
                            _family_of(source))
    central = settings.central()
    packet, switch = _packet(central, source, host, port, pods)
    summary, text = trace_packet(central.sb_remote, switch, packet)
    if summary.acl_flow is not None:
        summary = replace(summary, acl_owner=_acl_owner(central, *summary.acl_flow))
    what = f":{port} (TCP SYN)" if port is not None else " (ICMP echo request)"
    lines = [f"trace {pod_key} ({packet.source}, logical port {packet.inport}) -> "
             f"{packet.destination}{what}", summary.render()]
    return "\n".join([*lines, "", text] if raw else lines)


def _peer_pods(settings: LabSettings) -> list[dict[str, Any]]:
    """The pods of the other clusters of ``up --clusters`` (a NAMESPACE/POD destination
    not found in this one is looked for there)."""
    if settings.clusters < 2:
        return []
    first = settings if settings.cluster == 1 else LabSettings.recorded(
        settings.state_dir.parent)
    found = []
    for other in first.all_clusters() if first is not None else []:
        if other.cluster == settings.cluster:
            continue
        with contextlib.suppress(kube.KubeError, OSError):
            found += Rest(kube.kube_client(other.kubeconfig("admin"))).list("Pod")
    return found


def _acl_owner(central: Central, priority: int, match: str) -> str:
    """The policy and rule of the NB ACL with this priority and match ('' if unknown)."""
    found = json.loads(central.nbctl("--format=json", "--columns=match,external_ids",
                                     "find", "ACL", f"priority={priority}"))
    for row_match, ids in found.get("data", []):
        if row_match == match:
            key = dict(ids[1]).get(ACL_KEY, "") if isinstance(ids, list) else ""
            return owner_of(str(key))
    return ""


def _find_pod(pods: Sequence[Mapping[str, Any]], key: str) -> Mapping[str, Any]:
    namespace, _, name = key.partition("/")
    for pod in pods:
        if key_of(pod) == (namespace, name):
            return pod
    raise TraceError(f"no pod {key} (NAMESPACE/POD)")


def _family_of(pod: Mapping[str, Any]) -> int:
    return 4 if address_of(_annotations(pod), 4) else 6


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return metadata(pod).get("annotations") or {}


def _pod_address(pod: Mapping[str, Any], family: int) -> str:
    address = address_of(_annotations(pod), family)
    if not address:
        raise TraceError(f"pod {'/'.join(key_of(pod))} has no IPv{family} address")
    return address


def _packet(central: Central, pod: Mapping[str, Any], destination: str, port: int | None,
            pods: Sequence[Mapping[str, Any]]) -> tuple[Packet, str]:
    """The packet ``pod`` sends to ``destination``, and the switch it enters."""
    try:
        family = ipaddress.ip_address(destination).version
    except ValueError as exc:
        raise TraceError(f"{destination} is not an IP address or NAMESPACE/POD") from exc
    annotations = _annotations(pod)
    subnet = str(annotations.get(keys.LOGICAL_SWITCH) or "")
    mac = str(annotations.get(keys.MAC_ADDRESS) or "")
    if not subnet or not mac:
        raise TraceError(f"pod {'/'.join(key_of(pod))} has no address from podnet yet")
    source = _pod_address(pod, family)
    eth_dst = _neighbour_mac(annotations, destination, pods) or _gateway_mac(central, subnet)
    namespace, name = key_of(pod)
    return Packet(names.pod_port(name, namespace), mac, eth_dst, source, destination, port), subnet


def _neighbour_mac(annotations: Mapping[str, str], destination: str,
                   pods: Sequence[Mapping[str, Any]]) -> str:
    """The MAC of the pod holding ``destination`` when it is on the source's own subnet
    (the source then sends to it directly), else ""."""
    address = ipaddress.ip_address(destination)
    cidrs = str(annotations.get(keys.CIDR) or "").split(",")
    if not any(c and address in ipaddress.ip_network(c, strict=False) for c in cidrs):
        return ""
    for pod in pods:
        theirs = _annotations(pod)
        if destination in str(theirs.get(keys.IP_ADDRESS) or "").split(","):
            return str(theirs.get(keys.MAC_ADDRESS) or "")
    return ""


def _gateway_mac(central: Central, subnet: str) -> str:
    try:
        return central.nbctl("get", "Logical_Router_Port", f"ovn-cluster-{subnet}",
                             "mac").strip().strip('"')
    except OvnError as exc:
        raise TraceError(f"subnet {subnet} has no router port in OVN yet: {exc}") from exc
