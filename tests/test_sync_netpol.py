"""NetworkPolicy through the sync worker: watched, compiled, written with the pod's port
(before the pod is marked routed), and a policy that cannot compile reported on itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ipam.settings import RedisSettings
from podnet.ovn import OvnCentral
from podnet_sync.netpol import NP_DENY, isolation_group, parse_network_policy, policy_group
from tests.test_sync import Cluster, watched_worker
from tests.waiting import cancelled, eventually


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnCentral]:
    with OvnCentral(tmp_path_factory.mktemp("sync-netpol-central")) as started:
        yield started


@pytest.fixture
async def cluster(central: OvnCentral, redis_settings: RedisSettings) -> AsyncIterator[Cluster]:
    async with watched_worker(central, redis_settings) as started:
        await started.worker.step()
        runner = asyncio.create_task(started.worker.run())
        try:
            yield started
        finally:
            await cancelled(runner)


def network_policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def group_ports(cluster: Cluster, group: str) -> str:
    found = cluster.central.nbctl("--bare", "--columns=ports", "find", "Port_Group",
                                  f"name={group}")
    return found.strip()


def routed(cluster: Cluster, name: str) -> bool:
    pods = [pod for pod in cluster.api.objects("Pod", "default")
            if pod["metadata"]["name"] == name]
    return bool(pods) and pods[0]["metadata"].get("annotations", {}).get(
        "ovn.kubernetes.io/routed") == "true"


async def test_a_new_pod_is_in_its_policys_isolation_group_by_the_time_it_is_routed(
    cluster: Cluster,
) -> None:
    deny_all = network_policy("deny-all", {"podSelector": {}})
    cluster.api.create(deny_all, "default")
    group = policy_group(parse_network_policy(deny_all))
    await eventually(lambda: group in cluster.central.nbctl("--bare", "--columns=name", "list",
                                                            "Port_Group"))
    await cluster.admit("web-0")
    await eventually(lambda: routed(cluster, "web-0"))
    port = cluster.central.nbctl("--bare", "--columns=_uuid", "find", "Logical_Switch_Port",
                                 "name=web-0.default").strip()
    assert port and port in group_ports(cluster, isolation_group("default", "Ingress"))


async def test_a_policy_that_cannot_compile_is_reported_and_the_others_still_apply(
    cluster: Cluster,
) -> None:
    cluster.api.create(network_policy("broken", {"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "Near", "values": ["x"]}]}}), "default")
    cluster.api.create(network_policy("fine", {"podSelector": {}}), "default")
    await cluster.admit("web-1")
    await eventually(lambda: routed(cluster, "web-1"))

    def skipped() -> list[dict[str, Any]]:
        return [event for event in cluster.api.objects("Event", "default")
                if event["involvedObject"].get("kind") == "NetworkPolicy"
                and event["involvedObject"]["name"] == "broken"]

    (event,) = await eventually(skipped)
    assert event["type"] == "Warning" and "operator 'Near'" in event["message"]
    assert group_ports(cluster, isolation_group("default", "Ingress"))


async def test_a_policy_made_after_its_pods_isolates_them_at_the_next_event_step(
    cluster: Cluster,
) -> None:
    cluster.store_pod("early", "apps", await cluster.ipam.reserve(
        "apps", "tok-early", namespace="default", name="early"), "tok-early")
    await eventually(lambda: routed(cluster, "early"))
    cluster.api.create(network_policy("deny-all", {"podSelector": {}}), "default")
    port = cluster.central.nbctl("--bare", "--columns=_uuid", "find", "Logical_Switch_Port",
                                 "name=early.default").strip()
    group = isolation_group("default", "Ingress")
    await eventually(lambda: bool(port) and port in group_ports(cluster, group))
    drops = cluster.central.nbctl("--bare", "--columns=action", "find", "ACL",
                                  f"priority={NP_DENY}")
    assert "drop" in drops.split()
