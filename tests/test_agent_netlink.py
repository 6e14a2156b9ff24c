"""The agent's netlink and nftables adapters against real network namespaces.

A scratch "node" namespace and "pod" namespace per test; the agent's code runs in this
process and reaches both through sockets created there, as it does on a node.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator

import pytest

from ipam.subnet import build_subnet
from node_agent import netns
from node_agent.gateway import plan_gateway
from node_agent.plug import Plumber, PodPlumbing, inspect_pod, set_pod_tbf
from node_agent.qos import tbf_for
from node_agent.routing import Routing
from tests.ovn_fixtures import token


def sh(namespace: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    names = (f"pnnode-{token()}", f"pnpod-{token()}")
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    yield names
    for name in names:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def plumber(namespaces: tuple[str, str]) -> Iterator[Plumber]:
    opened = Plumber.open(netns.netns_path(namespaces[0]))
    yield opened
    opened.close()


async def plug(plumber: Plumber, plan: PodPlumbing) -> str:
    host_mac = await plumber.create_veth(plan)
    await Plumber.configure_pod(plan)
    return host_mac


def plan_for(namespace: str, container: str = "c1") -> PodPlumbing:
    host = f"pn{container:0>12}"
    return PodPlumbing(
        host_ifname=host, ifname="eth0",
        netns=netns.netns_path(namespace), mac="0a:58:0a:14:00:07",
        addresses=(ipaddress.ip_interface("10.20.0.7/24"),
                   ipaddress.ip_interface("fd00:20::7/64")),
        gateways=(ipaddress.ip_address("10.20.0.1"), ipaddress.ip_address("fd00:20::1")),
        mtu=1400, tx_checksum_off=True,
    )


async def test_a_pod_gets_its_veth_end_with_mac_mtu_addresses_and_default_routes(
    namespaces: tuple[str, str], plumber: Plumber,
) -> None:
    node, pod = namespaces
    plan = plan_for(pod)
    host_mac = await plug(plumber, plan)
    assert await inspect_pod(plan) == []
    link = sh(pod, "ip", "-o", "link", "show", "eth0")
    assert "0a:58:0a:14:00:07" in link and "mtu 1400" in link and "UP" in link
    assert host_mac in sh(node, "ip", "-o", "link", "show", plan.host_ifname)
    assert "default via 10.20.0.1 dev eth0" in sh(pod, "ip", "route")
    assert "default via fd00:20::1 dev eth0" in sh(pod, "ip", "-6", "route")
    for namespace, device in ((node, plan.host_ifname), (pod, "eth0")):
        assert "tx-checksumming: off" in sh(namespace, "ethtool", "-k", device)


async def test_inspection_names_what_differs_from_the_plan(
    namespaces: tuple[str, str], plumber: Plumber,
) -> None:
    plan = plan_for(namespaces[1])
    await plug(plumber, plan)
    sh(namespaces[1], "ip", "addr", "del", "10.20.0.7/24", "dev", "eth0")
    sh(namespaces[1], "ip", "link", "set", "eth0", "mtu", "1300")
    problems = await inspect_pod(plan)
    assert "eth0 lacks address 10.20.0.7/24" in problems
    assert "eth0 has MTU 1300, not 1400" in problems
    assert "no default route via 10.20.0.1" in problems


async def test_plugging_again_replaces_the_leftovers_and_unplugging_is_idempotent(
    namespaces: tuple[str, str], plumber: Plumber,
) -> None:
    plan = plan_for(namespaces[1])
    await plug(plumber, plan)
    await plug(plumber, plan)
    assert await inspect_pod(plan) == []
    assert await plumber.unplug(plan.host_ifname) is True
    assert await plumber.unplug(plan.host_ifname) is False
    assert "eth0" not in sh(namespaces[1], "ip", "-o", "link")


async def test_the_pods_egress_shaping_is_set_changed_and_removed(
    namespaces: tuple[str, str], plumber: Plumber,
) -> None:
    plan = plan_for(namespaces[1])
    await plug(plumber, plan)
    await set_pod_tbf(plan.netns, "eth0", tbf_for(10))
    assert "tbf 1: root" in sh(namespaces[1], "tc", "qdisc", "show", "dev", "eth0")
    await set_pod_tbf(plan.netns, "eth0", tbf_for(25))
    assert "rate 25Mbit" in sh(namespaces[1], "tc", "qdisc", "show", "dev", "eth0")
    await set_pod_tbf(plan.netns, "eth0", None)
    await set_pod_tbf(plan.netns, "eth0", None)
    assert "tbf" not in sh(namespaces[1], "tc", "qdisc", "show", "dev", "eth0")


SUBNETS = [
    build_subnet("join", "100.64.0.0/16"),
    build_subnet("nat", "10.40.0.0/24", nat_outgoing=True),
    build_subnet("central", "10.42.0.0/24", nat_outgoing=True, gateway_type="centralized",
                 gateway_node="node1"),
]


async def test_the_gateway_plan_becomes_routes_nftables_and_policy_rules(
    namespaces: tuple[str, str], plumber: Plumber,
) -> None:
    node = namespaces[0]
    sh(node, "ip", "link", "add", "ovn0", "type", "veth", "peer", "name", "ovn0peer")
    sh(node, "ip", "link", "set", "ovn0peer", "up")
    sh(node, "ip", "addr", "add", "100.64.0.2/16", "dev", "ovn0")
    sh(node, "ip", "link", "set", "ovn0", "up")
    routing = Routing(plumber.host, netns.netns_path(node))
    for _ in range(2):  # applying twice changes nothing
        await routing.apply(plan_gateway("node1", SUBNETS))
    routes = sh(node, "ip", "route")
    assert "10.40.0.0/24 via 100.64.0.1 dev ovn0 proto 112" in routes
    assert "10.42.0.0/24 via 100.64.0.1 dev ovn0 proto 112" in routes
    rules = sh(node, "ip", "rule")
    assert rules.count("from 10.42.0.0/24 iif ovn0") == 2
    assert "10.42.0.0/24" in sh(node, "nft", "list", "set", "inet", "podnet", "snat_v4")

    await routing.apply(plan_gateway("node1", SUBNETS[:2]))
    assert "10.42.0.0/24" not in sh(node, "ip", "route")
    assert "10.42.0.0/24" not in sh(node, "ip", "rule")
    await routing.remove()
    assert "podnet" not in sh(node, "nft", "list", "ruleset")
