"""Event steps leave OVN exactly as a full resync would: after a random run of pod,
Service and EndpointSlice changes, each followed by an event step only, a full step
finds nothing left to change (a real Redis and a real OVN NB/SB with ovn-northd)."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ipam.settings import RedisSettings
from ipam.store import Ipam
from podnet.ovn import OvnCentral
from podnet_plumbing import kube
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState
from podnet_sync.worker import KINDS, SyncSettings, SyncWorker

SUBNETS = {"apps": "10.20.0.0/24", "data": "10.30.0.0/24"}
NODES = ("node1", "node2")
SERVICES = ("web", "api", "db")


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnCentral]:
    with OvnCentral(tmp_path_factory.mktemp("sync-incremental-central")) as started:
        yield started


def pod(name: str, subnet: str, host: int, node: str) -> dict[str, Any]:
    ip = ipaddress.ip_network(SUBNETS[subnet])[host]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "namespace": "default", "name": name, "uid": f"uid-{name}-{node}", "annotations": {
            "ovn.kubernetes.io/allocated": "true", "ovn.kubernetes.io/logical_switch": subnet,
            "ovn.kubernetes.io/ip_address": str(ip),
            "ovn.kubernetes.io/mac_address": f"0a:00:00:00:{host // 256:02x}:{host % 256:02x}",
            "ovn.kubernetes.io/routed": "true", "podnet.io/reservation": f"tok-{name}-{node}"}},
        "spec": {"nodeName": node}, "status": {"phase": "Running"}}


def service(name: str, index: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": f"10.96.0.{index + 10}",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def endpoint_slice(name: str, service_name: str, ips: list[str]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "default", "name": name,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


class Cluster:
    """The worker's stores, changed as a watch would change them, the worker told."""

    def __init__(self, worker: SyncWorker, stores: dict[str, kube.Store]) -> None:
        self.worker = worker
        self.stores = stores

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        self.stores[kind].apply("MODIFIED", obj)
        self.worker.mark(kind, obj)

    def delete(self, kind: str, obj: dict[str, Any]) -> None:
        self.stores[kind].apply("DELETED", obj)
        self.worker.mark(kind, obj)

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return self.stores[kind].objects()


@pytest.fixture
async def cluster(central: OvnCentral, redis_settings: RedisSettings) -> AsyncIterator[Cluster]:
    stores = {kind: kube.Store() for kind in KINDS}
    stores["Subnet"].replace([
        {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
         "spec": {"cidrBlock": cidr}} for name, cidr in SUBNETS.items()], "1")
    stores["Node"].replace([
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
         "status": {"addresses": [{"type": "InternalIP", "address": f"192.168.5.{i + 11}"}]}}
        for i, name in enumerate(NODES)], "1")
    ipam = Ipam.connect(redis_settings)
    northbound = Northbound(await asyncio.to_thread(nb_api, central.nb_remote))
    worker = SyncWorker(ipam, northbound, stores,
                        SyncSettings(resync_interval_s=3600, release_grace_s=0))
    try:
        await worker.step()
        yield Cluster(worker, stores)
    finally:
        await asyncio.to_thread(northbound.reconcile, DesiredState())
        close_api(northbound.api)
        await ipam.close()


def random_change(cluster: Cluster, rng: random.Random, serial: int) -> None:
    """One change of the kinds event steps handle: pods come, move and go; services and
    their slices come, change, move to another service and go."""
    pods = cluster.objects("Pod")
    slices = cluster.objects("EndpointSlice")
    choice = rng.randrange(6)
    if choice == 0 or not pods:
        cluster.put("Pod", pod(f"p{serial}", rng.choice(list(SUBNETS)), serial + 2,
                               rng.choice(NODES)))
    elif choice == 1:
        cluster.delete("Pod", rng.choice(pods))
    elif choice == 2:  # a pod of the same name comes back elsewhere (a StatefulSet's)
        old = rng.choice(pods)
        cluster.delete("Pod", old)
        name = old["metadata"]["name"]
        cluster.put("Pod", pod(name, rng.choice(list(SUBNETS)), serial + 2, rng.choice(NODES)))
    elif choice == 3:
        index = rng.randrange(len(SERVICES))
        cluster.put("Service", service(SERVICES[index], index))
    elif choice == 4 or not slices:
        ips = [obj["metadata"]["annotations"]["ovn.kubernetes.io/ip_address"]
               for obj in rng.sample(pods, min(len(pods), 2))]
        cluster.put("EndpointSlice", endpoint_slice(f"s{rng.randrange(4)}",
                                                    rng.choice(SERVICES), ips))
    else:
        victim = rng.choice(slices)
        if rng.random() < 0.5:
            cluster.delete("EndpointSlice", victim)
        else:
            service_name = victim["metadata"]["labels"]["kubernetes.io/service-name"]
            cluster.delete("Service", service(service_name, SERVICES.index(service_name)))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_event_steps_leave_nothing_for_a_full_step_to_change(
    cluster: Cluster, seed: int
) -> None:
    rng = random.Random(seed)
    changed: dict[str, int] = {}
    for serial in range(40):
        random_change(cluster, rng, serial)
        if rng.random() < 0.7:  # else two changes share the next step, as a burst does
            report = await cluster.worker.step()
            assert not report.full
            for key, count in report.ovn.by_kind.items():
                changed[key] = changed.get(key, 0) + count
    await cluster.worker.step()
    # The run did exercise every kind the event path writes.
    for kind in ("switch_ports", "load_balancers", "address_sets", "policies"):
        assert any(key.startswith(kind + ".") for key in changed), (kind, changed)
    cluster.worker.mark("Subnet", full=True)
    full = await cluster.worker.step()
    assert full.full
    assert full.ovn.by_kind == {}, f"the full step still had to change {full.ovn.by_kind}"
