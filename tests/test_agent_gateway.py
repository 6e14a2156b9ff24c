"""End to end: the node's gateway for traffic leaving the cluster.

A network namespace stands for a host outside the cluster, wired to one node, which
routes to it by default. A pod's traffic to it must arrive from the node's address when
its subnet has ``natOutgoing`` and from the pod's own address when not; a centralized
subnet's traffic leaves through its gateway node (SNAT there, policy routing for the
subnet) even from a pod on another node. Pods and the node reach each other over
``ovn0``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podnet.daemons import RedisServer
from tests.agent_harness import Lab, lab, pings, stop, tcp_request, tcp_server
from tests.waiting import eventually

pytestmark = pytest.mark.slow
NODE_ADDRESS = "192.168.77.1"


@pytest.fixture
async def cluster(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Lab]:
    async with lab(tmp_path, redis_server.url) as the_lab:
        yield the_lab


async def source_seen(cluster: Lab, pod_name: str, target: str, port: int) -> str:
    """The source address the external host sees for a connection from the pod."""
    pod = next(p for p in cluster.pods if p.name == pod_name)
    answer = await eventually(lambda: tcp_request(pod, target, port), 45.0,
                              f"{pod_name} reaching {target}")
    return str(answer).split()[1]


async def test_natoutgoing_traffic_leaves_from_the_node_and_plain_traffic_from_the_pod(
    cluster: Lab,
) -> None:
    await cluster.subnet("nat", "10.40.0.0/24", natOutgoing=True)
    await cluster.subnet("plain", "10.41.0.0/24", natOutgoing=False)
    node = await cluster.add_node("node1")
    outside = await cluster.external(node, f"{NODE_ADDRESS}/24", "192.168.77.2/24")
    await outside.exec("ip", "route", "add", "10.41.0.0/24", "via", NODE_ADDRESS)
    await cluster.node_ready(node)
    natted = await cluster.pod("natted", "nat", node)
    plain = await cluster.pod("plain", "plain", node)
    server = await tcp_server(outside, 9000, "outside")
    try:
        assert await source_seen(cluster, "natted", outside.ip, 9000) == NODE_ADDRESS
        assert await source_seen(cluster, "plain", outside.ip, 9000) == plain.ip
    finally:
        await stop(server)
    assert natted.ip.startswith("10.40.0.")
    snat = await node.exec("nft", "list", "set", "inet", "podnet", "snat_v4")
    assert "10.40.0.0/24" in snat and "10.41.0.0/24" not in snat


@pytest.mark.xfail(
    strict=False,
    reason="known flaky in a full-suite run (the route through the gateway node sometimes "
    "never comes up; it passes alone and after the CLI tests): still run and reported",
)
async def test_a_centralized_subnet_leaves_through_its_gateway_node_with_snat(
    cluster: Lab,
) -> None:
    await cluster.subnet("central", "10.42.0.0/24", natOutgoing=True,
                         gatewayType="centralized", gatewayNode="gw")
    gateway = await cluster.add_node("gw", underlay_ip="172.31.77.1/24")
    worker = await cluster.add_node("worker", underlay_ip="172.31.77.2/24")
    outside = await cluster.external(gateway, f"{NODE_ADDRESS}/24", "192.168.77.2/24")
    await cluster.node_ready(gateway)
    await cluster.node_ready(worker)
    pod = await cluster.pod("far", "central", worker)
    server = await tcp_server(outside, 9000, "outside")
    try:
        assert await source_seen(cluster, "far", outside.ip, 9000) == NODE_ADDRESS
        await gateway.exec("ip", "route", "del", "default")  # now only the subnet's table
        assert await source_seen(cluster, "far", outside.ip, 9000) == NODE_ADDRESS
    finally:
        await stop(server)
    rules = await gateway.exec("ip", "rule", "show")
    assert "from 10.42.0.0/24 iif ovn0 lookup main suppress_prefixlength 0" in rules
    assert "from 10.42.0.0/24 iif ovn0 lookup" in rules.replace(
        "lookup main suppress_prefixlength 0", "")
    snat = await worker.exec("nft", "list", "set", "inet", "podnet", "snat_v4", check=False)
    assert "10.42.0.0/24" not in snat
    assert pod.ip.startswith("10.42.0.")


async def test_a_ready_node_is_labelled_and_reaches_its_pods_through_ovn0(cluster: Lab) -> None:
    await cluster.subnet("apps", "10.20.0.0/24")
    node = await cluster.add_node("node1")
    await cluster.node_ready(node)
    labels = cluster.api.get("Node", "node1")["metadata"]["labels"]
    assert labels["podnet.io/agent-ready"] == "true"
    pod = await cluster.pod("web", "apps", node)
    join_ip = (await node.exec("ip", "-4", "-o", "addr", "show", "dev", "ovn0")).split()[3]
    join_ip = join_ip.split("/", maxsplit=1)[0]
    assert join_ip.startswith("100.64.")
    assert await pings(pod, join_ip)
    assert "10.20.0.0/24 via 100.64.0.1 dev ovn0" in await node.exec("ip", "route")
    code = await node.exec("ping", "-c", "2", "-i", "0.2", "-W", "5", pod.ip, check=False)
    assert " 0% packet loss" in code
