"""The node's part of the cluster gateway, as a pure plan: routes, SNAT, policy routing.

OVN's router sends a pod's traffic for outside the cluster to a node's join address
(docs/architecture.md; the sync worker writes the router policies): to the pod's own node
for a ``distributed`` subnet, to the subnet's gateway node for a ``centralized`` one.
The packet comes up ``ovn0`` and the node routes it on. This module decides, from the
subnets alone, what the node needs for that:

- routes to every cluster subnet through ``ovn0`` (and the join gateway), so the node
  reaches pods and the answers to forwarded traffic find their way back;
- SNAT (nftables ``masquerade``) of ``natOutgoing`` subnets' traffic leaving the node
  for outside the cluster, on every node for a distributed subnet and on the gateway
  nodes of a centralized one. Subnets without ``natOutgoing`` are routed unchanged;
- for a centralized subnet on its gateway node, policy routing: the subnet's traffic
  arriving from ``ovn0`` looks up the main table without its default route first (so
  cluster and node networks stay reachable), then a table of the subnet's own whose
  default route is the node's way out.

Everything here is data in, data out; ``routing.py`` applies it.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ipam.subnet import JOIN_SUBNET, SubnetSpec
from node_agent.network import Address, Network

NFT_TABLE = "podnet"
JOIN_INTERFACE = "ovn0"
POLICY_PRIORITY = 3000
"""``ip rule`` priority of podnet's rules (the main-without-default rule sits one below)."""
POLICY_TABLE_BASE = 0x506E0000
POLICY_TABLE_SPAN = 0x10000
"""podnet's routing tables are numbered in [BASE, BASE + SPAN), one per subnet."""


@dataclass(frozen=True)
class ClusterRoute:
    destination: Network
    via: Address


@dataclass(frozen=True)
class PolicyRoute:
    """Traffic of ``source`` arriving on the join interface uses routing ``table``."""

    subnet: str
    source: Network
    table: int


@dataclass(frozen=True)
class GatewayPlan:
    routes: tuple[ClusterRoute, ...]
    cluster: tuple[Network, ...]
    snat: tuple[Network, ...]
    policies: tuple[PolicyRoute, ...]


def policy_table(subnet: str) -> int:
    """A routing table number of the subnet's own, stable across restarts."""
    return POLICY_TABLE_BASE + zlib.crc32(subnet.encode()) % POLICY_TABLE_SPAN


def is_policy_table(table: int) -> bool:
    return POLICY_TABLE_BASE <= table < POLICY_TABLE_BASE + POLICY_TABLE_SPAN


def gateway_nodes(subnet: SubnetSpec) -> list[str]:
    """The names in ``gatewayNode`` (``node1,node2`` or ``node1:ip,node2:ip``)."""
    return [part.split(":")[0].strip() for part in subnet.gateway_node.split(",")
            if part.strip()]


def exits_here(subnet: SubnetSpec, node: str) -> bool:
    """Whether this node is where the subnet's traffic leaves the cluster."""
    if subnet.gateway_type == "centralized":
        return node in gateway_nodes(subnet)
    return True


def plan_gateway(node: str, subnets: Sequence[SubnetSpec]) -> GatewayPlan:
    join = next((s for s in subnets if s.name == JOIN_SUBNET), None)
    join_gateways = {layout.family: layout.gateway for layout in join.families} if join else {}
    pod_subnets = sorted((s for s in subnets if s.name != JOIN_SUBNET), key=lambda s: s.name)
    routes = [
        ClusterRoute(layout.network, join_gateways[layout.family])
        for subnet in pod_subnets for layout in subnet.families
        if layout.family in join_gateways
    ]
    cluster = [layout.network for subnet in subnets for layout in subnet.families]
    snat = [
        layout.network for subnet in pod_subnets
        if subnet.nat_outgoing and exits_here(subnet, node) for layout in subnet.families
    ]
    policies = [
        PolicyRoute(subnet.name, layout.network, policy_table(subnet.name))
        for subnet in pod_subnets
        if subnet.gateway_type == "centralized" and node in gateway_nodes(subnet)
        for layout in subnet.families
    ]
    return GatewayPlan(tuple(routes), tuple(_sorted(cluster)), tuple(_sorted(snat)),
                       tuple(policies))


def _sorted(networks: Iterable[Network]) -> list[Network]:
    return sorted(set(networks), key=lambda n: (n.version, int(n.network_address), n.prefixlen))


def _elements(networks: Iterable[Network], family: int) -> list[str]:
    return [str(n) for n in networks if n.version == family]


def nft_ruleset(plan: GatewayPlan, table: str = NFT_TABLE,
                join_interface: str = JOIN_INTERFACE) -> str:
    """An ``nft -f`` script that replaces podnet's table atomically with the plan's SNAT."""
    lines = [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    rules = []
    for family, (selector, addr_type) in {4: ("ip", "ipv4_addr"),
                                          6: ("ip6", "ipv6_addr")}.items():
        cluster = _elements(plan.cluster, family)
        snat = _elements(plan.snat, family)
        if not snat:
            continue
        lines.append(_set(f"snat_v{family}", addr_type, snat))
        rule = f"{selector} saddr @snat_v{family}"
        if cluster:
            lines.append(_set(f"cluster_v{family}", addr_type, cluster))
            rule += f" {selector} daddr != @cluster_v{family}"
        rules.append(f'\t\t{rule} oifname != "{join_interface}" masquerade')
    lines += [
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        *rules,
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _set(name: str, addr_type: str, elements: Sequence[str]) -> str:
    return (f"\tset {name} {{ type {addr_type}; flags interval; "
            f"elements = {{ {', '.join(elements)} }} }}")


def default_route(family: int) -> Network:
    return ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")
