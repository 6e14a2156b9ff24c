"""The local NB state an availability zone needs for OVN-IC, as a pure function.

Inputs are typed values: the parsed ``ovn-ic-config``, the cluster's subnets, node
addresses, and what the adapters observed in the databases (the transit switch's
subnet, the remote ports ``ovn-ic`` made, the routes on ``ovn-cluster``, the remote
AZs' advertised routes, the chassis of the gateway nodes). The output is every row
podnet-ic wants, each tagged ``podnet.io/owner=podnet-ic``, and the reports to make.

Names (the contract of docs/interconnection.md): transit switch ``ts``; router port
``<az>-ts`` on ``ovn-cluster`` with gateway chassis on the gw-nodes (priorities
descending in gw-nodes order); switch port ``ts-<az>`` (type router) on ``ts``;
router policies ``allow`` for each prefix routed through ``ts``, at
:data:`PRIORITY_IC_ROUTE`, above the gateway reroutes (29000) and below the
cluster-internal allow (31000).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ipam.interconnect import IcConfig

OWNER_KEY = "podnet.io/owner"
OWNER = "podnet-ic"
"""Not the sync worker's ``podnet``: each never removes the other's rows."""
KIND_KEY = "podnet.io/kind"
KEY = "podnet.io/key"
AZ_KEY = "podnet.io/ic-az"
"""On NB_Global's external_ids: the AZ name podnet-ic set (cleared on teardown)."""
IC_NB_KEY = "podnet.io/ic-nb"
IC_SB_KEY = "podnet.io/ic-sb"
"""On NB_Global's external_ids: the IC databases the AZ joined, so a restarted
controller can leave them cleanly after the ConfigMap was deleted."""
LEARNED_KEY = "ic-learned-route"
"""What ``ovn-ic`` puts in a learned route's external_ids."""

TRANSIT_SWITCH = "ts"
DEFAULT_TS_SUBNET = "169.254.100.0/24"
CLUSTER_ROUTER = "ovn-cluster"
PRIORITY_IC_ROUTE = 30000
"""Above ``podnet_sync.topology.PRIORITY_GATEWAY`` (29000): traffic to another AZ is not
rerouted to a node gateway; below the cluster-internal allow (31000)."""
ROUTE_OPTIONS = ("ic-route-adv", "ic-route-learn", "ic-route-blacklist", "ic-route-denylist")
"""NB_Global options podnet-ic owns. OVN 24.03 renamed the blacklist; both are set."""


def router_port(az: str) -> str:
    return f"{az}-ts"


def switch_port(az: str) -> str:
    return f"{TRANSIT_SWITCH}-{az}"


def owned(kind: str, **extra: str) -> dict[str, str]:
    return {OWNER_KEY: OWNER, KIND_KEY: kind, **extra}


def derived_mac(az: str) -> str:
    """A stable locally administered unicast MAC for the AZ's transit router port."""
    digest = hashlib.sha256(f"podnet-ic/{az}".encode()).digest()
    return "0a:58:" + ":".join(f"{b:02x}" for b in digest[:4])


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class IcSubnet:
    """A local Subnet as IC sees it."""

    name: str
    cidrs: tuple[str, ...]
    disable_interconnection: bool = False


@dataclass(frozen=True)
class RemotePort:
    """A port ``ovn-ic`` made on the local ``ts`` for another AZ (type ``remote``)."""

    name: str
    mac: str
    address: str
    """``ip/prefixlen``."""

    @property
    def az(self) -> str:
        return self.name.removeprefix(f"{TRANSIT_SWITCH}-")

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.address).ip)


@dataclass(frozen=True)
class Route:
    """A static route on ``ovn-cluster``."""

    uuid: str
    prefix: str
    nexthop: str
    learned: bool
    """Made by ``ovn-ic`` (external_ids ``ic-learned-route``)."""


@dataclass(frozen=True)
class CurrentPort:
    """podnet-ic's router port as the NB holds it."""

    mac: str
    networks: tuple[str, ...]


@dataclass(frozen=True)
class Observed:
    """What the adapters read from the local NB/SB and the IC databases."""

    ts_subnet: str = DEFAULT_TS_SUBNET
    ts_present: bool = False
    """Whether ``ovn-ic`` has made the transit switch in the local NB yet."""
    remote_ports: tuple[RemotePort, ...] = ()
    current_port: CurrentPort | None = None
    routes: tuple[Route, ...] = ()
    remote_prefixes: tuple[tuple[str, str], ...] = ()
    """(AZ, prefix) advertised by other AZs in the IC SB."""
    chassis: Mapping[str, str] = field(default_factory=dict)
    """Node name -> chassis name, for the nodes that have a chassis."""


# ------------------------------------------------------------------ outputs


@dataclass(frozen=True)
class GatewayChassis:
    name: str
    chassis: str
    priority: int


@dataclass(frozen=True)
class IcRouterPort:
    name: str
    mac: str
    networks: tuple[str, ...]
    gateway_chassis: tuple[GatewayChassis, ...]
    external_ids: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class IcSwitchPort:
    name: str
    router_port: str
    external_ids: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class IcPolicy:
    key: str
    priority: int
    match: str
    action: str = "allow"


@dataclass(frozen=True)
class Refusal:
    """A remote prefix not learned: it overlaps a local subnet (cf. kube-ovn#7264)."""

    az: str
    prefix: str
    subnet: str
    local_cidr: str

    @property
    def message(self) -> str:
        return (f"route {self.prefix} advertised by AZ {self.az} is not learned: it "
                f"overlaps subnet {self.subnet} ({self.local_cidr}) of this cluster")


@dataclass
class IcDesired:
    """Every row podnet-ic wants in the local NB; empty when IC is off."""

    enabled: bool
    az: str = ""
    options: dict[str, str] = field(default_factory=dict)
    """NB_Global options of :data:`ROUTE_OPTIONS` to set; the others are removed."""
    router_port: IcRouterPort | None = None
    switch_port: IcSwitchPort | None = None
    policies: dict[str, IcPolicy] = field(default_factory=dict)
    drop_routes: tuple[str, ...] = ()
    """UUIDs of learned routes to delete (refused, or every one on teardown)."""
    refusals: tuple[Refusal, ...] = ()
    gw_nodes: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)
    """What keeps a part from being made yet, for the log."""


def _networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    found = []
    for cidr in cidrs:
        try:
            found.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            continue
    return found


def blacklist(subnets: Sequence[IcSubnet], join_cidrs: Iterable[str],
              node_addresses: Iterable[str], refused: Iterable[str] = ()) -> list[str]:
    """``ic-route-blacklist``: what is never advertised nor learned, sorted."""
    cidrs: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for subnet in subnets:
        if subnet.disable_interconnection:
            cidrs.update(_networks(subnet.cidrs))
    cidrs.update(_networks(join_cidrs))
    for address in node_addresses:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            continue
        cidrs.add(ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}"))
    cidrs.update(_networks(refused))
    return [str(c) for c in sorted(cidrs, key=lambda n: (n.version, n))]


def refusals(observed: Observed, subnets: Sequence[IcSubnet],
             join_cidrs: Iterable[str]) -> tuple[Refusal, ...]:
    """Remote prefixes that overlap a local subnet (the join subnet too)."""
    local = [(subnet.name, net) for subnet in subnets for net in _networks(subnet.cidrs)]
    local += [("join", net) for net in _networks(join_cidrs)]
    found: dict[str, Refusal] = {}
    for az, prefix in sorted(observed.remote_prefixes):
        nets = _networks([prefix])
        if not nets or prefix in found:
            continue
        remote = nets[0]
        for name, net in local:
            if net.version == remote.version and net.overlaps(remote):
                found[prefix] = Refusal(az, str(remote), name, str(net))
                break
    return tuple(found.values())


def choose_address(az: str, ts_subnet: str, current: CurrentPort | None,
                   remote_ports: Sequence[RemotePort]) -> str:
    """The router port's ``ip/prefixlen`` in the transit subnet.

    Kept once chosen, unless a remote port holds the same address and that AZ's name
    sorts before ours (then we move, and it stays: two AZs never both move). A fresh
    choice starts at a point derived from the AZ name and takes the first address no
    remote port uses, so it is the same on every reconcile.
    """
    network = ipaddress.ip_network(ts_subnet, strict=False)
    used = {port.ip: port.az for port in remote_ports if _in(port.ip, network)}
    for address in current.networks if current else ():
        try:
            iface = ipaddress.ip_interface(address)
        except ValueError:
            continue
        holder = used.get(str(iface.ip))
        if iface.network == network and (holder is None or holder > az):
            return f"{iface.ip}/{network.prefixlen}"
    first, count = int(network.network_address) + 1, network.num_addresses - 2
    if count <= 0:
        raise ValueError(f"transit switch subnet {ts_subnet} has no host addresses")
    start = int.from_bytes(hashlib.sha256(az.encode()).digest()[:8], "big") % count
    for step in range(count):
        ip = ipaddress.ip_address(first + (start + step) % count)
        if str(ip) not in used:
            return f"{ip}/{network.prefixlen}"
    raise ValueError(f"transit switch subnet {ts_subnet} is full: every address is used "
                     "by another AZ")


def _in(ip: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(ip) in network
    except ValueError:
        return False


def _policies(observed: Observed, refused: set[str]) -> dict[str, IcPolicy]:
    """An allow per prefix routed to a next hop in the transit subnet (learned by
    ``ovn-ic`` or added by hand), so no gateway reroute takes that traffic."""
    network = ipaddress.ip_network(observed.ts_subnet, strict=False)
    policies: dict[str, IcPolicy] = {}
    for route in observed.routes:
        nets = _networks([route.prefix])
        if not nets or str(nets[0]) in refused or not _in(route.nexthop, network):
            continue
        prefix = nets[0]
        key = f"ic-route/{prefix}"
        policies[key] = IcPolicy(key, PRIORITY_IC_ROUTE, f"ip{prefix.version}.dst == {prefix}")
    return policies


def desired_state(config: IcConfig, subnets: Sequence[IcSubnet], join_cidrs: Sequence[str],
                  node_addresses: Sequence[str], observed: Observed) -> IcDesired:
    """What the local NB should hold for ``config``; with IC off, nothing (and every
    learned route dropped)."""
    if not config.enabled:
        return IcDesired(False, drop_routes=tuple(r.uuid for r in observed.routes
                                                  if r.learned))
    az = config.az_name
    refused = refusals(observed, subnets, join_cidrs)
    refused_prefixes = {r.prefix for r in refused}
    value = "true" if config.auto_route else "false"
    options = {"ic-route-adv": value, "ic-route-learn": value}
    denied = ",".join(blacklist(subnets, join_cidrs, node_addresses, refused_prefixes))
    if denied:
        options["ic-route-blacklist"] = options["ic-route-denylist"] = denied
    state = IcDesired(True, az, options, gw_nodes=config.gw_nodes, refusals=refused)
    state.drop_routes = tuple(
        r.uuid for r in observed.routes
        if r.learned and (not config.auto_route or _prefix(r.prefix) in refused_prefixes))
    state.policies = _policies(observed, refused_prefixes)
    if not config.auto_route:  # the learned routes go, and their policies with them
        state.policies = {key: policy for key, policy in state.policies.items()
                          if not _learned_only(key, observed)}
    chassis = []
    for index, node in enumerate(config.gw_nodes):
        name = observed.chassis.get(node)
        if name is None:
            state.problems.append(f"gw-node {node}: no chassis registered yet")
            continue
        chassis.append(GatewayChassis(f"{router_port(az)}-{name}", name,
                                      len(config.gw_nodes) - index))
    try:
        address = choose_address(az, observed.ts_subnet, observed.current_port,
                                 observed.remote_ports)
    except ValueError as exc:
        state.problems.append(str(exc))
        return state
    mac = observed.current_port.mac if observed.current_port else derived_mac(az)
    state.router_port = IcRouterPort(
        router_port(az), mac, (address,), tuple(chassis),
        tuple(sorted(owned("router-port", **{AZ_KEY: az}).items())))
    if observed.ts_present:
        state.switch_port = IcSwitchPort(
            switch_port(az), router_port(az),
            tuple(sorted(owned("switch-port", **{AZ_KEY: az}).items())))
    else:
        state.problems.append(f"transit switch {TRANSIT_SWITCH} not in the local NB yet "
                              "(ovn-ic makes it)")
    return state


def _prefix(prefix: str) -> str:
    nets = _networks([prefix])
    return str(nets[0]) if nets else prefix


def _learned_only(key: str, observed: Observed) -> bool:
    """Whether every route behind a policy key is a learned one (gone with auto-route
    off, so its policy goes too)."""
    prefixes = [r for r in observed.routes if f"ic-route/{_prefix(r.prefix)}" == key]
    return bool(prefixes) and all(r.learned for r in prefixes)
