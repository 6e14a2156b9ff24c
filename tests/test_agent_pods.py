"""End to end: pods attached by ``podnet-cni`` through the agent, on a real OVN.

Two pods on one subnet talk (ping and TCP), DEL leaves nothing behind, CHECK verifies,
IPv6 works for a dual-stack pod, and a restarted agent leaves running pods alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podnet.daemons import RedisServer
from tests.agent_harness import Lab, lab, pings, stop, tcp_request, tcp_server
from tests.waiting import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
async def cluster(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Lab]:
    async with lab(tmp_path, redis_server.url) as the_lab:
        await the_lab.subnet("apps", "10.20.0.0/24")
        yield the_lab


async def test_two_pods_on_one_subnet_ping_each_other_and_talk_tcp(cluster: Lab) -> None:
    node = await cluster.add_node("node1")
    web = await cluster.pod("web", "apps", node)
    client = await cluster.pod("client", "apps", node)
    assert web.result["ips"][0]["gateway"] == "10.20.0.1"
    assert await pings(client, web.ip)
    server = await tcp_server(web, 8080, "web")
    try:
        answer = await tcp_request(client, web.ip, 8080, "hello")
    finally:
        await stop(server)
    assert answer == f"web {client.ip} hello"


async def test_add_waits_for_a_pod_that_is_admitted_and_routed_only_later(
    cluster: Lab,
) -> None:
    node = await cluster.add_node("node1")
    pending = asyncio.create_task(cluster.attach(node, "late"))
    await asyncio.sleep(1.0)
    assert not pending.done()
    await cluster.admit("late", "apps", node.name)
    pod = await asyncio.wait_for(pending, 15.0)
    assert pod.ip.startswith("10.20.0.")


async def test_del_leaves_no_veth_and_no_port_and_is_idempotent(cluster: Lab) -> None:
    node = await cluster.add_node("node1")
    pod = await cluster.pod("web", "apps", node)
    assert pod.host_ifname in node.vsctl("list-ports", "br-int").split()
    first, second = await cluster.detach(pod), await cluster.detach(pod)
    assert (first.returncode, second.returncode) == (0, 0), (first, second)
    assert pod.host_ifname not in node.vsctl("list-ports", "br-int").split()
    assert pod.host_ifname not in await node.exec("ip", "-o", "link")
    assert "eth0" not in await pod.exec("ip", "-o", "link")


async def test_check_passes_on_a_healthy_pod_and_fails_once_its_address_is_gone(
    cluster: Lab,
) -> None:
    node = await cluster.add_node("node1")
    pod = await cluster.pod("web", "apps", node)
    config = node.config(prevResult=pod.result)
    healthy = await cluster.cni(node, "CHECK", config=config, container_id=pod.container_id,
                                netns=pod.netns_path, args=pod.args)
    assert healthy.returncode == 0, healthy
    await pod.exec("ip", "addr", "flush", "dev", "eth0")
    broken = await cluster.cni(node, "CHECK", config=config, container_id=pod.container_id,
                               netns=pod.netns_path, args=pod.args)
    assert broken.returncode == 1
    assert broken.answer["code"] == 105
    assert "lacks address" in broken.answer["details"]


async def test_a_dual_stack_pod_gets_both_families_and_pings_over_ipv6(cluster: Lab) -> None:
    await cluster.subnet("dual", "10.30.0.0/24,fd00:30::/64")
    node = await cluster.add_node("node1")
    a = await cluster.pod("a", "dual", node)
    b = await cluster.pod("b", "dual", node)
    assert [entry["gateway"] for entry in a.result["ips"]] == ["10.30.0.1", "fd00:30::1"]
    assert {route["dst"] for route in a.result["routes"]} == {"0.0.0.0/0", "::/0"}
    assert await pings(a, b.ips[1])
    assert await pings(a, b.ips[0])


async def test_an_agent_restart_leaves_running_pods_alone_and_removes_gone_ones(
    cluster: Lab,
) -> None:
    node = await cluster.add_node("node1")
    web = await cluster.pod("web", "apps", node)
    client = await cluster.pod("client", "apps", node)
    gone = await cluster.pod("gone", "apps", node)
    await cluster.stop_agent(node)
    cluster.api.delete("Pod", "gone", "default")
    pinger = await client.popen("ping", "-i", "0.05", "-c", "60", "-W", "1", web.ip)
    await cluster.start_agent(node)
    out, _ = await pinger.communicate()
    assert b" 0% packet loss" in out, out.decode()
    ports = node.vsctl("list-ports", "br-int").split()
    assert web.host_ifname in ports and client.host_ifname in ports
    assert gone.host_ifname not in ports
    assert await eventually(lambda: pings(client, web.ip, count=1))


async def test_a_dead_incarnation_never_keeps_a_claim_on_the_logical_port(
    tmp_path: Path, redis_server: RedisServer,
) -> None:
    async with lab(tmp_path, redis_server.url) as cluster:
        await cluster.subnet("apps", "10.20.0.0/24")
        one = await cluster.add_node("node1")
        two = await cluster.add_node("node2")
        assert one.agent is not None and two.agent is not None
        one.agent.settings = dataclasses.replace(one.agent.settings, reconcile_interval_s=0.2)
        first = await cluster.pod("db-1", "apps", one)
        # The pod is deleted while no DEL reaches node1 (its agent was down, say), and a
        # pod of the same name comes up on node1 again, then on node2.
        cluster.api.delete("Pod", "db-1", "default")
        again = await cluster.pod("db-1", "apps", one)
        ports = one.vsctl("list-ports", "br-int").split()
        assert again.host_ifname in ports and first.host_ifname not in ports
        cluster.api.delete("Pod", "db-1", "default")
        moved = await cluster.pod("db-1", "apps", two)
        await eventually(lambda: again.host_ifname not in one.vsctl(
            "list-ports", "br-int").split(), 10.0, "node1 dropping the dead port")
        assert moved.host_ifname in two.vsctl("list-ports", "br-int").split()
        assert "ovn0" in one.vsctl("list-ports", "br-int").split()  # the join port stays
