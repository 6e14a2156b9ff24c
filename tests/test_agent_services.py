"""End to end: traffic between subnets, to Service VIPs, and into private subnets.

Pods on two subnets talk through the cluster router; a Service's cluster IP reaches its
endpoints through the OVN load balancer, spread over them, and sticks to one with
``sessionAffinity: ClientIP``; a private subnet refuses the other subnets' traffic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podnet.daemons import RedisServer
from tests.agent_harness import (
    Lab,
    LabPod,
    lab,
    pings,
    stop,
    tcp_request,
    tcp_server,
)
from tests.waiting import eventually

pytestmark = pytest.mark.slow
VIP = "10.96.0.10"


@pytest.fixture
async def cluster(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Lab]:
    async with lab(tmp_path, redis_server.url) as the_lab:
        await the_lab.subnet("apps", "10.20.0.0/24")
        await the_lab.subnet("data", "10.21.0.0/24")
        yield the_lab


def service(name: str, vip: str, backends: list[LabPod], affinity: bool = False
            ) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {"clusterIP": vip, "clusterIPs": [vip],
                            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 60}}
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": "default"}, "spec": spec},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{name}-x", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [pod.ip], "conditions": {"ready": True}}
                       for pod in backends],
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
    ]


async def answers(client: LabPod, ip: str, port: int, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        answer = await tcp_request(client, ip, port)
        seen[answer.split()[0] if answer else ""] += 1
    return seen


async def test_pods_on_two_subnets_talk_through_the_router(cluster: Lab) -> None:
    node = await cluster.add_node("node1")
    web = await cluster.pod("web", "apps", node)
    db = await cluster.pod("db", "data", node)
    assert await pings(web, db.ip)
    server = await tcp_server(db, 5432, "db")
    try:
        assert (await tcp_request(web, db.ip, 5432)).startswith(f"db {web.ip}")
    finally:
        await stop(server)


async def test_a_service_vip_spreads_connections_and_affinity_sticks(cluster: Lab) -> None:
    node = await cluster.add_node("node1")
    backends = [await cluster.pod(f"web-{i}", "apps", node) for i in range(3)]
    client = await cluster.pod("client", "data", node)
    servers = [await tcp_server(pod, 8080, pod.name) for pod in backends]
    try:
        for obj in service("web", VIP, backends):
            cluster.api.create(obj, "default")
        await eventually(lambda: tcp_request(client, VIP, 80), 20.0, "the VIP answering")
        spread = await answers(client, VIP, 80, 30)
        assert set(spread) == {pod.name for pod in backends}, spread

        for obj in service("sticky", "10.96.0.11", backends, affinity=True):
            cluster.api.create(obj, "default")
        await eventually(lambda: tcp_request(client, "10.96.0.11", 80), 20.0, "sticky VIP")
        sticky = await answers(client, "10.96.0.11", 80, 20)
        assert len(sticky) == 1 and "" not in sticky, sticky
    finally:
        for server in servers:
            await stop(server)


async def test_a_private_subnet_blocks_other_subnets_but_not_its_own_pods(
    cluster: Lab,
) -> None:
    await cluster.subnet("secret", "10.22.0.0/24", private=True)
    node = await cluster.add_node("node1")
    vault = await cluster.pod("vault", "secret", node)
    insider = await cluster.pod("insider", "secret", node)
    outsider = await cluster.pod("outsider", "apps", node)
    assert await pings(insider, vault.ip)
    assert not await pings(outsider, vault.ip, count=2, timeout_s=1)
