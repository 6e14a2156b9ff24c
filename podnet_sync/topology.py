"""Desired OVN state as a pure function of subnets, pods, nodes and services.

Names follow the contract in docs/architecture.md (spelled in ``ipam.names``): router
``ovn-cluster``; a switch per subnet joined by router port ``ovn-cluster-<subnet>`` and switch port
``<subnet>-ovn-cluster``; pod ports ``<pod>.<namespace>``; the ``join`` switch with a
port ``node-<node>`` per node; a ``Load_Balancer`` per service and protocol.

Routing out of the cluster is expressed as router policies: traffic between cluster
subnets is allowed first (priority 31000); a centralized subnet's traffic is rerouted
to its gateway node's join address, and a distributed subnet's traffic to the join
address of the node each pod runs on (an address set of the pod IPs per node), both at
priority 29000. The node then routes (and SNATs for ``natOutgoing`` subnets).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ipam import names
from ipam.addresses import IPAddress
from ipam.errors import InvalidInput
from ipam.subnet import JOIN_SUBNET, SubnetSpec
from ipam.subnet_acl import EW_PRIORITY, PRIORITY_BASE, SubnetAcl, parse_match
from podnet_sync.cluster import EndpointSliceView, PodView, ServicePort, ServiceView
from podnet_sync.nb_model import (
    CLUSTER_ROUTER,
    SWITCH_KEY,
    Acl,
    AddressSet,
    DesiredState,
    LoadBalancer,
    Router,
    RouterPolicy,
    RouterPort,
    StaticRoute,
    Switch,
    SwitchPort,
    derived_mac,
    owned,
    pairs,
)

OVN_MAX_AFFINITY_TIMEOUT_S = 65535
PRIORITY_CLUSTER_INTERNAL = 31000
PRIORITY_GATEWAY = 29000
PRIORITY_PRIVATE_ALLOW = 3000
PRIORITY_PRIVATE_DROP = 2900
SUBNET_ACL_PRIORITIES = range(PRIORITY_BASE, PRIORITY_BASE + 2000)
"""Kube-OVN's subnet ACL priorities 0-1999, written at 4000-5999: above the private
subnets' rows and BaselineAdminNetworkPolicy, below NetworkPolicy (9999-10001)."""
NEW_ONLY = "(!ct.trk || !ct.est)"
"""Added to a subnet ACL's drop or reject: new connections only, as NetworkPolicy's
drops (docs/network-policy.md: an established load-balanced connection that starts to
match a drop trips an assertion of Open vSwitch 3.1.0's userspace conntrack). Written
with ``!ct.trk`` so that a switch whose traffic skips conntrack still drops."""


@dataclass(frozen=True)
class NodeJoin:
    """A node's port on the join switch, from its IPAM allocation in ``join``."""

    name: str
    ips: tuple[IPAddress, ...]
    mac: str
    internal_ips: tuple[IPAddress, ...] = ()

    @property
    def port_name(self) -> str:
        return names.node_port(self.name)


@dataclass(frozen=True)
class ClusterView:
    """Everything the desired state depends on."""

    subnets: Sequence[SubnetSpec]
    pods: Sequence[PodView]
    nodes: Sequence[NodeJoin]
    services: Sequence[ServiceView] = ()
    slices: Sequence[EndpointSliceView] = ()


def desired_state(
    view: ClusterView,
    ports_for: frozenset[str] | None = None,
    services_for: frozenset[str] | None = None,
    gateways_for: frozenset[tuple[str, str]] | None = None,
    skeleton: bool = True,
) -> DesiredState:
    """Every row podnet wants. For a step that touches only some objects, ``ports_for``
    (pod ``namespace/name`` keys), ``services_for`` (service keys) and ``gateways_for``
    ((subnet, node) pairs) limit the pod ports, load balancers and per-node gateway
    rows computed, and ``skeleton=False`` leaves out the router, switches, their
    ports, ACLs and routes (rows that only a full step writes)."""
    state = DesiredState()
    subnets = {subnet.name: subnet for subnet in view.subnets}
    if skeleton:
        _add_skeleton(state, view)
    placed = [pod for pod in view.pods if has_port(pod, subnets, state.skipped)]
    for pod in placed:
        if ports_for is None or pod.key in ports_for:
            port = pod_port(pod)
            state.switch_ports[port.name] = port
    routed = placed if gateways_for is None else [
        pod for pod in placed if (pod.subnet, pod.node) in gateways_for]
    _add_gateway_policies(state, view.subnets, view.nodes, routed)
    services = [s for s in view.services if services_for is None or s.key in services_for]
    for balancer in service_load_balancers(services, view.slices, view.nodes):
        state.load_balancers[balancer.name] = balancer
    return state


def _add_skeleton(state: DesiredState, view: ClusterView) -> None:
    state.routers[CLUSTER_ROUTER] = Router(CLUSTER_ROUTER, owned("router"))
    join = next((subnet for subnet in view.subnets if subnet.name == JOIN_SUBNET), None)
    for subnet in view.subnets:
        _add_subnet(state, subnet)
    for node in view.nodes:
        _add_node_port(state, node)
    _add_private_acls(state, view.subnets, join)
    for subnet in view.subnets:
        _add_subnet_acls(state, subnet)
    _add_default_routes(state, join)


def _add_default_routes(state: DesiredState, join: SubnetSpec | None) -> None:
    """The router drops what no route matches before its policies run: a default route
    (to the join gateway, as Kube-OVN has) lets traffic for outside the cluster reach the
    gateway policies that reroute it to a node."""
    for layout in join.families if join else ():
        key = f"default/{layout.family}"
        prefix = "0.0.0.0/0" if layout.family == 4 else "::/0"
        state.static_routes[key] = StaticRoute(CLUSTER_ROUTER, key, prefix,
                                               str(layout.gateway))


def _add_subnet(state: DesiredState, subnet: SubnetSpec) -> None:
    ids = owned("subnet", **{"podnet.io/subnet": subnet.name})
    state.switches[subnet.name] = Switch(subnet.name, ids)
    router_port = f"{CLUSTER_ROUTER}-{subnet.name}"
    networks = tuple(sorted(
        f"{layout.gateway}/{layout.network.prefixlen}" for layout in subnet.families
    ))
    state.router_ports[router_port] = RouterPort(
        router_port, CLUSTER_ROUTER, derived_mac(router_port), networks, ids
    )
    switch_port = f"{subnet.name}-{CLUSTER_ROUTER}"
    state.switch_ports[switch_port] = SwitchPort(
        switch_port, subnet.name, ("router",),
        owned("subnet", **{"podnet.io/subnet": subnet.name, SWITCH_KEY: subnet.name}),
        type="router", options=pairs({"router-port": router_port}),
    )


def _add_node_port(state: DesiredState, node: NodeJoin) -> None:
    if JOIN_SUBNET not in state.switches or not node.ips:
        state.skipped.append(f"node {node.name}: no join address yet")
        return
    address = " ".join([node.mac, *map(str, node.ips)])
    # Port security on the MAC alone: as the gateway, the node sends and receives
    # traffic of any address (pods' traffic to and from outside the cluster).
    state.switch_ports[node.port_name] = SwitchPort(
        node.port_name, JOIN_SUBNET, (address,),
        owned("node", **{"podnet.io/node": node.name, SWITCH_KEY: JOIN_SUBNET}),
        port_security=(node.mac,),
    )


def has_port(pod: PodView, subnets: Mapping[str, SubnetSpec], skipped: list[str]) -> bool:
    """Whether the pod has an allocation and can have traffic (reasons go to ``skipped``)."""
    if pod.host_network or pod.terminal or not pod.ips:
        return False
    if pod.subnet not in subnets:
        skipped.append(f"pod {pod.key}: subnet {pod.subnet!r} is unknown")
        return False
    return True


def pod_port(pod: PodView) -> SwitchPort:
    address = " ".join([pod.mac, *map(str, pod.ips)])
    return SwitchPort(
        pod.port_name, pod.subnet, (address,),
        owned("pod", **{
            "podnet.io/pod": pod.name, "podnet.io/namespace": pod.namespace,
            "podnet.io/subnet": pod.subnet, SWITCH_KEY: pod.subnet,
        }),
        port_security=(address,),
    )


def _cidr_match(field: str, subnets: Iterable[SubnetSpec], extra: Iterable[str] = ()) -> str:
    """``ip4.<field> == {...} || ip6.<field> == {...}`` over the subnets' CIDRs."""
    by_family: dict[int, set[str]] = defaultdict(set)
    for subnet in subnets:
        for layout in subnet.families:
            by_family[layout.family].add(str(layout.network))
    for cidr in extra:
        by_family[6 if ":" in cidr else 4].add(cidr.strip())
    clauses = [
        f"ip{family}.{field} == {{{', '.join(sorted(cidrs))}}}"
        for family, cidrs in sorted(by_family.items())
    ]
    return " || ".join(clauses)


def _add_private_acls(
    state: DesiredState, subnets: Sequence[SubnetSpec], join: SubnetSpec | None
) -> None:
    """A private subnet accepts traffic only from itself, ``allowSubnets`` and nodes."""
    for subnet in subnets:
        if not subnet.private:
            continue
        allowed = [subnet, *([join] if join else [])]
        match = _cidr_match("src", allowed, subnet.allow_subnets)
        for suffix, priority, acl_match, action in (
            ("private-allow", PRIORITY_PRIVATE_ALLOW, match, "allow-related"),
            ("private-drop", PRIORITY_PRIVATE_DROP, "ip", "drop"),
        ):
            key = f"{subnet.name}/{suffix}"
            state.acls[key] = Acl(subnet.name, key, priority, "to-lport", acl_match, action)


def _add_subnet_acls(state: DesiredState, subnet: SubnetSpec) -> None:
    """Kube-OVN's ``spec.acls`` on the subnet's switch, each at 4000 + its priority, and
    with ``allowEWTraffic`` (and some ACLs) an allow of traffic within the subnet in
    both directions at 4000 + 1900, as Kube-OVN writes them. The match was checked at
    admission; it is checked again here (it may come from a store written by hand), and
    an ACL whose match is refused is left out with the reason."""
    acls: list[SubnetAcl] = []
    for index, acl in enumerate(subnet.acls):
        try:
            parse_match(acl.match, f"subnet {subnet.name} spec.acls[{index}].match")
        except InvalidInput as exc:
            state.skipped.append(str(exc))
            continue
        acls.append(acl)
        key = f"{subnet.name}/acls/{index}"
        match = acl.match
        if acl.action in ("drop", "reject"):
            match = f"({match}) && {NEW_ONLY}"
        state.acls[key] = Acl(subnet.name, key, acl.ovn_priority, acl.direction, match,
                              acl.action)
    if not acls or not subnet.allow_ew_traffic:
        return
    for layout in subnet.families:
        family = f"ip{layout.family}"
        same = f"{family}.src == {layout.network} && {family}.dst == {layout.network}"
        for direction in ("to-lport", "from-lport"):
            key = f"{subnet.name}/allow-ew/{layout.family}/{direction}"
            state.acls[key] = Acl(subnet.name, key, PRIORITY_BASE + EW_PRIORITY, direction,
                                  same, "allow")


def address_set_name(*parts: str) -> str:
    """An OVN address-set name (letters, digits, ``_``) that stays unique."""
    readable = re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts))
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]
    return f"podnet_{readable}_{digest}"


def _add_gateway_policies(
    state: DesiredState, subnets: Sequence[SubnetSpec], nodes: Sequence[NodeJoin],
    pods: Iterable[PodView],
) -> None:
    pod_subnets = [s for s in subnets if s.name != JOIN_SUBNET]
    if not pod_subnets:
        return
    internal = _cidr_match("dst", subnets)
    state.policies["cluster-internal"] = RouterPolicy(
        CLUSTER_ROUTER, "cluster-internal", PRIORITY_CLUSTER_INTERNAL, internal, "allow"
    )
    join_ips = {node.name: node.ips for node in nodes if node.ips}
    placed: dict[tuple[str, str], list[IPAddress]] = defaultdict(list)
    for pod in pods:
        if pod.node in join_ips:
            placed[(pod.subnet, pod.node)].extend(pod.ips)
    for subnet in pod_subnets:
        if subnet.gateway_type == "centralized":
            _centralized_policy(state, subnet, join_ips)
    distributed = {s.name for s in pod_subnets if s.gateway_type != "centralized"}
    for (subnet_name, node), ips in sorted(placed.items()):
        if subnet_name in distributed:
            _distributed_policy(state, subnet_name, node, ips, join_ips[node])


def _centralized_policy(
    state: DesiredState, subnet: SubnetSpec, join_ips: Mapping[str, tuple[IPAddress, ...]]
) -> None:
    """Active-standby: the first listed gateway node with a join address is the exit."""
    gateways = [n.split(":")[0].strip() for n in subnet.gateway_node.split(",") if n.strip()]
    active = next((name for name in gateways if name in join_ips), None)
    if active is None:
        state.skipped.append(f"subnet {subnet.name}: no gateway node of {gateways} is ready")
        return
    for layout in subnet.families:
        nexthop = next((ip for ip in join_ips[active] if ip.version == layout.family), None)
        if nexthop is None:
            continue
        key = f"gateway/{subnet.name}/{layout.family}"
        state.policies[key] = RouterPolicy(
            CLUSTER_ROUTER, key, PRIORITY_GATEWAY,
            f"ip{layout.family}.src == {layout.network}", "reroute", (str(nexthop),),
        )


def distributed_keys(subnet: str, node: str) -> tuple[set[str], set[str]]:
    """The address-set names and policy keys a (subnet, node) pair may own."""
    return (
        {address_set_name(subnet, node, f"ip{family}") for family in (4, 6)},
        {f"gateway/{subnet}/{node}/{family}" for family in (4, 6)},
    )


def _distributed_policy(
    state: DesiredState, subnet: str, node: str, ips: Sequence[IPAddress],
    join_ips: Sequence[IPAddress],
) -> None:
    """A node is the exit for its own pods of the subnet: their IPs in an address set."""
    for family in (4, 6):
        members = sorted(str(ip) for ip in ips if ip.version == family)
        nexthop = next((ip for ip in join_ips if ip.version == family), None)
        if not members or nexthop is None:
            continue
        name = address_set_name(subnet, node, f"ip{family}")
        state.address_sets[name] = AddressSet(
            name, tuple(members),
            owned("gateway", **{"podnet.io/subnet": subnet, "podnet.io/node": node}),
        )
        key = f"gateway/{subnet}/{node}/{family}"
        state.policies[key] = RouterPolicy(
            CLUSTER_ROUTER, key, PRIORITY_GATEWAY, f"ip{family}.src == ${name}",
            "reroute", (str(nexthop),),
        )


# ------------------------------------------------------------------ services


def load_balancer_name(service: ServiceView, protocol: str) -> str:
    return names.load_balancer(service.namespace, service.name, protocol)


def _vip(ip: IPAddress, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _backends(
    port: ServicePort, family: int, slices: Sequence[EndpointSliceView]
) -> list[str]:
    """Ready endpoints; when none is ready, the serving-and-terminating ones."""
    ready: list[str] = []
    terminating: list[str] = []
    for endpoint_slice in slices:
        target = next(
            (p for p in endpoint_slice.ports
             if p.name == port.name and p.protocol == port.protocol), None,
        )
        if target is None or not target.port:
            continue
        for endpoint in endpoint_slice.endpoints:
            for ip in endpoint.ips:
                if ip.version != family:
                    continue
                if endpoint.ready:
                    ready.append(_vip(ip, target.port))
                elif endpoint.serving and endpoint.terminating:
                    terminating.append(_vip(ip, target.port))
    return sorted(set(ready or terminating))


def service_load_balancers(
    services: Iterable[ServiceView], slices: Iterable[EndpointSliceView],
    nodes: Sequence[NodeJoin],
) -> list[LoadBalancer]:
    """One load balancer per service and protocol (headless services have none)."""
    by_service: dict[str, list[EndpointSliceView]] = defaultdict(list)
    for endpoint_slice in slices:
        by_service[endpoint_slice.service_key].append(endpoint_slice)
    node_ips = [ip for node in nodes for ip in node.internal_ips]
    balancers: list[LoadBalancer] = []
    for service in services:
        if service.headless or not service.cluster_ips:
            continue
        for protocol in sorted({port.protocol for port in service.ports}):
            vips: dict[str, str] = {}
            for port in (p for p in service.ports if p.protocol == protocol):
                for ip in (*service.cluster_ips, *service.external_ips):
                    backends = _backends(port, ip.version, by_service[service.key])
                    vips[_vip(ip, port.port)] = ",".join(backends)
                for ip in node_ips if port.node_port else ():
                    backends = _backends(port, ip.version, by_service[service.key])
                    vips[_vip(ip, port.node_port)] = ",".join(backends)
            options: dict[str, str] = {}
            if service.affinity_timeout_s:
                timeout = min(service.affinity_timeout_s, OVN_MAX_AFFINITY_TIMEOUT_S)
                options["affinity_timeout"] = str(timeout)
            balancers.append(LoadBalancer(
                load_balancer_name(service, protocol), protocol.lower(), pairs(vips),
                owned("service", **{"podnet.io/service": service.key}), pairs(options),
            ))
    return balancers
