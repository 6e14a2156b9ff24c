"""The sync worker end to end: the official client against the local API fixture,
a real Redis and a real OVN NB/SB with ovn-northd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from ipam.requests import ReserveRequest
from ipam.settings import RedisSettings
from ipam.store import Ipam
from podnet.ovn import OvnCentral
from podnet_plumbing import kube
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.main import kube_watchers, marking
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState
from podnet_sync.worker import KINDS, SyncSettings, SyncWorker
from tests.kube_api import KubeApi
from tests.waiting import cancelled, eventually

FAST = kube.WatchSettings(backoff=kube.BackoffSettings(initial_s=0.05, max_s=0.2),
                          stop_timeout_s=2.0)


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnCentral]:
    with OvnCentral(tmp_path_factory.mktemp("sync-central")) as started:
        yield started


@dataclass
class Cluster:
    api: KubeApi
    ipam: Ipam
    worker: SyncWorker
    central: OvnCentral

    async def admit(self, name: str, subnet: str = "apps", **extra: Any) -> dict[str, Any]:
        """What the webhook does: reserve, then the pod is stored with its annotations."""
        token = f"tok-{name}"
        allocation = await self.ipam.reserve(subnet, token, ReserveRequest(**extra),
                                             namespace="default", name=name)
        return self.api.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": {
                "ovn.kubernetes.io/allocated": "true",
                "ovn.kubernetes.io/logical_switch": subnet,
                "ovn.kubernetes.io/ip_address": ",".join(allocation.ip_strings()),
                "ovn.kubernetes.io/mac_address": allocation.mac,
                "podnet.io/reservation": token}},
            "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running"},
        }, "default")

    def ports(self) -> set[str]:
        return set(self.central.nbctl("--bare", "--columns=name", "list",
                                      "Logical_Switch_Port").split())


@asynccontextmanager
async def watched_worker(central: OvnCentral, redis: RedisSettings) -> AsyncIterator[Cluster]:
    """A worker (not yet stepped) on the local API fixture holding a subnet and a node,
    its watches synced; every row it wrote is removed afterwards."""
    with KubeApi() as api, api.client() as api_client:
        api.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                    "metadata": {"name": "apps"}, "spec": {"cidrBlock": "10.20.0.0/24"}})
        api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"},
                    "status": {"addresses": [{"type": "InternalIP",
                                              "address": "192.168.5.11"}]}})
        ipam = Ipam.connect(redis)
        northbound = Northbound(await asyncio.to_thread(nb_api, central.nb_remote))
        core = client.CoreV1Api(api_client)

        async def patch(namespace: str, name: str, annotations: Mapping[str, str]) -> object:
            return await kube.patch_pod_annotations(core, namespace, name, annotations)

        stores = {kind: kube.Store() for kind in KINDS}
        worker = SyncWorker(ipam, northbound, stores,
                            SyncSettings(resync_interval_s=3600, release_grace_s=0),
                            patch_pod=patch)
        try:
            async with kube_watchers(api_client, stores, marking(worker), FAST) as watchers:
                for watcher in watchers:
                    await watcher.store.wait_synced(5)
                yield Cluster(api, ipam, worker, central)
        finally:
            await asyncio.to_thread(northbound.reconcile, DesiredState())
            close_api(northbound.api)
            await ipam.close()


@pytest.fixture
async def cluster(
    central: OvnCentral, redis_settings: RedisSettings
) -> AsyncIterator[Cluster]:
    async with watched_worker(central, redis_settings) as started:
        await started.worker.step()  # registers the subnet before anything is admitted
        runner = asyncio.create_task(started.worker.run())
        try:
            yield started
        finally:
            await cancelled(runner)


async def test_a_stored_pod_is_bound_gets_its_port_and_is_marked_routed(
    cluster: Cluster,
) -> None:
    await cluster.admit("web-0")
    await eventually(lambda: "web-0.default" in cluster.ports())
    allocation = await eventually(lambda: cluster.ipam.lookup_pod("default", "web-0"))
    assert allocation.state == "bound"

    def routed() -> bool:
        pod = cluster.api.objects("Pod")[0]
        return bool(pod["metadata"]["annotations"].get("ovn.kubernetes.io/routed") == "true")

    await eventually(routed)
    assert {"node-node1", "apps-ovn-cluster"} <= cluster.ports()


async def test_a_running_worker_without_events_waits_for_its_next_resync(
    cluster: Cluster,
) -> None:
    await asyncio.sleep(0.2)  # the wake-up the initial list left behind
    steps = cluster.worker.steps
    await asyncio.sleep(0.5)
    assert cluster.worker.steps == steps


async def test_a_deleted_pod_releases_its_address_and_loses_its_port(cluster: Cluster) -> None:
    await cluster.admit("web-1")
    await eventually(lambda: "web-1.default" in cluster.ports())
    cluster.api.delete("Pod", "web-1", "default")
    await eventually(lambda: "web-1.default" not in cluster.ports())
    assert await eventually(
        lambda: _released(cluster.ipam, "default", "web-1")
    )


async def _released(ipam: Ipam, namespace: str, name: str) -> bool:
    return await ipam.lookup_pod(namespace, name) is None


async def test_a_service_becomes_a_load_balancer_following_its_endpoints(
    cluster: Cluster,
) -> None:
    cluster.api.create({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "web", "namespace": "default"},
                        "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
                       "default")
    cluster.api.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"name": "web-x", "namespace": "default",
                                     "labels": {"kubernetes.io/service-name": "web"}},
                        "addressType": "IPv4",
                        "endpoints": [{"addresses": ["10.20.0.5"],
                                       "conditions": {"ready": True}}],
                        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
                       "default")

    def vips() -> str:
        try:
            return cluster.central.nbctl("get", "Load_Balancer", "podnet/svc/default/web/tcp",
                                         "vips")
        except Exception:
            return ""

    await eventually(lambda: "10.20.0.5:8080" in vips())
    cluster.api.patch("EndpointSlice", "web-x", {"endpoints": [
        {"addresses": ["10.20.0.6"], "conditions": {"ready": True}}]}, "default")
    await eventually(lambda: "10.20.0.6:8080" in vips() and "10.20.0.5" not in vips())


async def test_a_port_deleted_by_hand_comes_back_on_the_next_full_resync(
    cluster: Cluster,
) -> None:
    await cluster.admit("web-2")
    await eventually(lambda: "web-2.default" in cluster.ports())
    cluster.central.nbctl("lsp-del", "web-2.default")
    cluster.worker.mark("Resync", full=True)
    await eventually(lambda: "web-2.default" in cluster.ports())


async def test_compacted_history_relists_and_converges(cluster: Cluster) -> None:
    await cluster.admit("web-3")
    await eventually(lambda: "web-3.default" in cluster.ports())
    cluster.api.delete("Pod", "web-3", "default")  # missed by the dropped watch ...
    cluster.api.compact()
    cluster.api.drop_watches()
    await eventually(lambda: "web-3.default" not in cluster.ports())  # ... found by relist


async def test_an_index_that_lost_a_reservation_is_rebuilt_from_the_pod(
    cluster: Cluster,
) -> None:
    pod = await cluster.admit("web-4")
    await eventually(lambda: "web-4.default" in cluster.ports())
    await cluster.ipam.release("apps", "token", "tok-web-4")  # as if Redis lost it
    cluster.worker._bound.clear()
    cluster.worker.mark("Resync", full=True)
    restored = await eventually(lambda: cluster.ipam.lookup_pod("default", "web-4"))
    assert restored.ip_strings() == [
        pod["metadata"]["annotations"]["ovn.kubernetes.io/ip_address"]]
    assert restored.state == "bound"
