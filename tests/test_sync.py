"""The sync worker end to end: the official client against the local API fixture,
a real Redis and a real OVN NB/SB with ovn-northd."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from ipam import errors
from ipam.records import Allocation
from ipam.requests import ReserveRequest
from ipam.settings import RedisSettings
from ipam.store import Ipam
from podnet.ovn import OvnCentral
from podnet_plumbing import kube
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.main import cluster_hooks, kube_watchers, marking
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState
from podnet_sync.worker import KINDS, SyncSettings, SyncWorker
from tests.kube_api import KubeApi
from tests.waiting import cancelled, eventually

ORPHAN_MARGIN_S = 0.3
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

    async def admit(self, name: str, subnet: str = "apps", token: str = "",
                    owner: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """What the webhook does: reserve, then the pod is stored with its annotations."""
        token = token or f"tok-{name}"
        allocation = await self.ipam.reserve(subnet, token, ReserveRequest(**extra),
                                             namespace="default", name=name)
        return self.store_pod(name, subnet, allocation, token, owner)

    def store_pod(self, name: str, subnet: str, allocation: Allocation, token: str,
                  owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The API server storing an admitted pod (a new UID each time)."""
        owners = [dict(owner)] if owner else []
        return self.api.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "ownerReferences": owners,
                         "annotations": {
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
        stores = {kind: kube.Store() for kind in KINDS}
        settings = SyncSettings(resync_interval_s=3600, release_grace_s=0,
                                orphan_margin_s=ORPHAN_MARGIN_S)
        worker = cluster_hooks(api_client).worker(ipam, northbound, stores, settings)
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


# ------------------------------------------------------------- the allocation lifecycle

STATEFULSET = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "sts-1",
               "controller": True}


async def full_step(cluster: Cluster) -> None:
    """Ask the running worker for a full step and wait until one has ended."""
    before = cluster.worker.last_full_at
    cluster.worker.mark("Resync", full=True)
    await eventually(lambda: cluster.worker.last_full_at > before)


def port_column(cluster: Cluster, port: str, column: str) -> str:
    return cluster.central.nbctl("get", "Logical_Switch_Port", port, column).strip()


def events_of(cluster: Cluster, pod: str, reason: str) -> list[dict[str, Any]]:
    return [event for event in cluster.api.objects("Event", "default")
            if event["involvedObject"]["name"] == pod and event["reason"] == reason]


async def test_a_refused_recreate_of_a_running_statefulset_pod_leaves_its_address_alone(
    cluster: Cluster,
) -> None:
    cluster.api.create({"apiVersion": "apps/v1", "kind": "StatefulSet",
                        "metadata": {"name": "db", "namespace": "default"},
                        "spec": {"replicas": 1}}, "default")
    sticky = ReserveRequest(sticky_key="default/db/0")
    live = await cluster.admit("db-0", owner=STATEFULSET, sticky_key="default/db/0")
    address = live["metadata"]["annotations"]["ovn.kubernetes.io/ip_address"]
    await eventually(lambda: "db-0.default" in cluster.ports())
    await eventually(lambda: _state(cluster.ipam, "tok-db-0", "bound"))
    # A stale StatefulSet controller creates db-0 again: admission runs, then the API
    # server answers AlreadyExists, so no pod ever carries the second token.
    with pytest.raises(errors.StickyHeld, match="default/db/0 is still held by pod default/db-0"):
        await cluster.ipam.reserve("apps", "tok-db-0-again", sticky,
                                   namespace="default", name="db-0")
    await full_step(cluster)
    holder = await cluster.ipam.lookup_ip(address)
    assert holder is not None and holder.uid == live["metadata"]["uid"]
    assert address in port_column(cluster, "db-0.default", "addresses")


async def _state(ipam: Ipam, token: str, state: str) -> bool:
    allocation = await ipam.lookup_token(token)
    return allocation is not None and allocation.state == state


async def test_one_pod_whose_address_cannot_be_bound_is_reported_and_the_rest_go_on(
    cluster: Cluster,
) -> None:
    holder = await cluster.admit("web-10")
    taken = holder["metadata"]["annotations"]["ovn.kubernetes.io/ip_address"]
    # A pod whose token the IPAM does not know, claiming an address another pod holds:
    # its restore from the annotations conflicts.
    phantom = await cluster.ipam.reserve("apps", "tok-phantom")
    await cluster.ipam.release("apps", "token", "tok-phantom")
    bad = dataclasses.replace(phantom, ips=holder_ips(taken))
    cluster.store_pod("web-11", "apps", bad, "tok-lost")
    await cluster.admit("web-12")
    cluster.worker.mark("Resync", full=True)
    await eventually(lambda: {"web-10.default", "web-12.default"} <= cluster.ports())
    assert "web-11.default" not in cluster.ports()
    (event,) = await eventually(lambda: events_of(cluster, "web-11", "AddressNotBound"))
    assert event["type"] == "Warning" and taken in event["message"]
    assert await cluster.ipam.lookup_ip(taken) == await cluster.ipam.lookup_token("tok-web-10")


def holder_ips(text: str) -> tuple[Any, ...]:
    import ipaddress

    return tuple(ipaddress.ip_address(part) for part in text.split(","))


async def test_an_edited_address_annotation_does_not_move_the_pod_in_ovn(
    cluster: Cluster,
) -> None:
    pod = await cluster.admit("web-13")
    address = pod["metadata"]["annotations"]["ovn.kubernetes.io/ip_address"]
    mac = pod["metadata"]["annotations"]["ovn.kubernetes.io/mac_address"]
    await eventually(lambda: "web-13.default" in cluster.ports())
    cluster.api.patch("Pod", "web-13", {"metadata": {"annotations": {
        "ovn.kubernetes.io/ip_address": "10.20.0.200",
        "ovn.kubernetes.io/mac_address": f"{mac} 0.0.0.0/0"}}}, "default")
    cluster.worker.mark("Resync", full=True)
    await eventually(lambda: events_of(cluster, "web-13", "AnnotationsIgnored"))
    assert port_column(cluster, "web-13.default", "addresses") == f'["{mac} {address}"]'
    assert port_column(cluster, "web-13.default", "port_security") == f'["{mac} {address}"]'
    assert await cluster.ipam.lookup_ip("10.20.0.200") is None


async def test_a_pod_in_its_grace_period_keeps_its_port_and_address_until_it_is_gone(
    cluster: Cluster,
) -> None:
    pod = await cluster.admit("web-14")
    await eventually(lambda: "web-14.default" in cluster.ports())
    deleting = cluster.api.delete("Pod", "web-14", "default", grace_s=None)
    assert deleting["metadata"]["deletionGracePeriodSeconds"] == 30  # no kubelet ends it
    await full_step(cluster)
    await asyncio.sleep(0.3)
    assert "web-14.default" in cluster.ports()
    held = await cluster.ipam.lookup_token("tok-web-14")
    assert held is not None and held.uid == pod["metadata"]["uid"]
    cluster.api.delete("Pod", "web-14", "default", grace_s=0)  # the kubelet's, once stopped
    await eventually(lambda: "web-14.default" not in cluster.ports())
    await eventually(lambda: _released(cluster.ipam, "default", "web-14"))


async def test_a_same_name_recreate_keeps_the_address_of_the_new_pod(cluster: Cluster) -> None:
    await cluster.admit("web-15")
    await eventually(lambda: _state(cluster.ipam, "tok-web-15", "bound"))
    # The webhook admits the next web-15 while the first one is still stored ...
    fresh = await cluster.ipam.reserve("apps", "tok-web-15-b", namespace="default",
                                       name="web-15")
    cluster.api.delete("Pod", "web-15", "default")
    cluster.store_pod("web-15", "apps", fresh, "tok-web-15-b")
    # ... and the release of the old pod, by its UID, leaves the new one's address.
    await eventually(lambda: _released_token(cluster.ipam, "tok-web-15"))
    await eventually(lambda: _state(cluster.ipam, "tok-web-15-b", "bound"))
    assert fresh.ip_strings()[0] in port_column(cluster, "web-15.default", "addresses")


async def _released_token(ipam: Ipam, token: str) -> bool:
    return await ipam.lookup_token(token) is None


async def test_capacity_reserved_for_pods_never_stored_comes_back_after_the_margin(
    cluster: Cluster,
) -> None:
    refused = await cluster.ipam.reserve("apps", "tok-refused", namespace="default",
                                         name="quota-0")
    sticky = await cluster.ipam.reserve("apps", "tok-sts-refused",
                                        ReserveRequest(sticky_key="default/cache/0"),
                                        namespace="default", name="cache-0")
    await cluster.admit("web-16")
    assert await cluster.worker.sweep_orphans() == 0  # too young to judge
    await asyncio.sleep(ORPHAN_MARGIN_S + 0.1)
    assert await cluster.worker.sweep_orphans() == 2
    assert await cluster.ipam.lookup_ip(refused.ip_strings()[0]) is None
    kept = await cluster.ipam.lookup_ip(sticky.ip_strings()[0])
    assert kept is not None and kept.state == "kept"
    held = await cluster.ipam.lookup_token("tok-web-16")
    assert held is not None and held.state == "bound"


async def test_a_pod_stored_without_admission_is_adopted_addressed_and_routed(
    cluster: Cluster,
) -> None:
    coredns = cluster.api.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "coredns-0", "namespace": "kube-system"},
        "spec": {"nodeName": "node1", "containers": [{"name": "dns", "image": "x"}]},
        "status": {"phase": "Pending"}}, "kube-system")
    cluster.api.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kube-proxy-0", "namespace": "kube-system"},
        "spec": {"nodeName": "node1", "hostNetwork": True, "containers": []}}, "kube-system")

    def annotations() -> dict[str, str]:
        (pod,) = [p for p in cluster.api.objects("Pod", "kube-system")
                  if p["metadata"]["name"] == "coredns-0"]
        found: dict[str, str] = pod["metadata"].get("annotations") or {}
        return found

    await eventually(lambda: annotations().get("ovn.kubernetes.io/routed") == "true")
    given = annotations()
    assert given["podnet.io/reservation"] == f"adopted:{coredns['metadata']['uid']}"
    assert given["ovn.kubernetes.io/logical_switch"] == "ovn-default"
    held = await cluster.ipam.lookup_ip(given["ovn.kubernetes.io/ip_address"])
    assert held is not None and held.uid == coredns["metadata"]["uid"]
    assert "coredns-0.kube-system" in cluster.ports()
    assert "kube-proxy-0.kube-system" not in cluster.ports()


async def test_a_deleted_pod_on_a_lost_node_loses_its_address_only_after_its_grace_period(
    cluster: Cluster,
) -> None:
    cluster.api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-ok"},
                        "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    lost = await cluster.admit("web-17")  # on node1, which reports no Ready condition
    kept = await cluster.admit("web-18")
    cluster.api.patch("Pod", "web-18", {"spec": {"nodeName": "node-ok"}}, "default")
    await eventually(lambda: {"web-17.default", "web-18.default"} <= cluster.ports())
    for name in ("web-17", "web-18"):  # deletionTimestamp has whole seconds: >= 2 s left
        cluster.api.delete("Pod", name, "default", grace_s=3)
    await full_step(cluster)
    assert {"web-17.default", "web-18.default"} <= cluster.ports()  # still in their grace
    await asyncio.sleep(3.5)
    await full_step(cluster)
    await eventually(lambda: "web-17.default" not in cluster.ports())
    assert await cluster.ipam.lookup_uid(lost["metadata"]["uid"]) is None
    assert "web-18.default" in cluster.ports()  # its node is Ready: it may still run
    held = await cluster.ipam.lookup_uid(kept["metadata"]["uid"])
    assert held is not None and held.state == "bound"


async def test_a_statefulset_keeps_only_the_ordinals_it_still_has_in_the_subnet_it_uses(
    cluster: Cluster,
) -> None:
    created = cluster.api.create({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"replicas": 1, "ordinals": {"start": 5}, "template": {"metadata": {}}}},
        "default")
    owner = {**STATEFULSET, "uid": created["metadata"]["uid"]}
    await cluster.admit("db-5", owner=owner, sticky_key="default/db/5")
    await cluster.admit("db-0", owner=owner, sticky_key="default/db/0")
    stale = {**owner, "uid": "an-earlier-statefulset-db"}
    await cluster.admit("db-6", owner=stale, sticky_key="default/db/6")
    for token in ("tok-db-5", "tok-db-0", "tok-db-6"):
        await eventually(functools.partial(_state, cluster.ipam, token, "bound"))
    for name in ("db-5", "db-0", "db-6"):
        cluster.api.delete("Pod", name, "default")
    await eventually(lambda: _state(cluster.ipam, "tok-db-5", "kept"))
    await eventually(lambda: _released_token(cluster.ipam, "tok-db-0"))  # below the start
    await eventually(lambda: _released_token(cluster.ipam, "tok-db-6"))  # another set's
    # The template moves to another subnet: the kept address in this one is freed.
    cluster.api.patch("StatefulSet", "db", {"spec": {"template": {"metadata": {
        "annotations": {"ovn.kubernetes.io/logical_switch": "elsewhere"}}}}}, "default")
    await full_step(cluster)
    assert await _released_token(cluster.ipam, "tok-db-5")


async def test_a_pod_whose_port_name_is_a_nodes_join_port_never_displaces_it(
    cluster: Cluster,
) -> None:
    cluster.api.create({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": "ip-10-0-0-1.ec2.default"},
                        "status": {"addresses": [{"type": "InternalIP",
                                                  "address": "192.168.5.12"}]}})
    await eventually(lambda: "node-ip-10-0-0-1.ec2.default" in cluster.ports())
    join = joins_of(cluster, "node-ip-10-0-0-1.ec2.default")
    assert len(join) == 1
    await cluster.admit("node-ip-10-0-0-1.ec2")  # in namespace default: the same name
    await eventually(lambda: events_of(cluster, "node-ip-10-0-0-1.ec2", "PortNameTaken"))
    assert joins_of(cluster, "node-ip-10-0-0-1.ec2.default") == join


def joins_of(cluster: Cluster, port: str) -> list[str]:
    """The addresses of every port of that name (there must be one, the node's)."""
    return cluster.central.nbctl("--bare", "--columns=addresses", "find",
                                 "Logical_Switch_Port", f"name={port}").split("\n\n")


def subnet_status(cluster: Cluster, name: str = "apps") -> dict[str, Any]:
    found = [s for s in cluster.api.objects("Subnet") if s["metadata"]["name"] == name]
    return dict(found[0].get("status") or {}) if found else {}


def counts(cluster: Cluster, name: str = "apps") -> tuple[Any, ...]:
    status = subnet_status(cluster, name)
    return tuple(status.get(key) for key in (
        "v4usingIPs", "v4availableIPs", "v6usingIPs", "v6availableIPs"))


async def test_a_subnets_status_counts_its_pods_and_follows_a_release(
    cluster: Cluster,
) -> None:
    # 10.20.0.0/24: 256 addresses less network, broadcast and gateway
    await eventually(lambda: counts(cluster) == (0, 253, 0, 0), what="an empty subnet")
    await cluster.admit("web-30")
    await cluster.admit("web-31")
    await eventually(lambda: counts(cluster) == (2, 251, 0, 0), what="two addresses used")
    (ready,) = subnet_status(cluster)["conditions"]
    assert (ready["type"], ready["status"]) == ("Ready", "True")
    cluster.api.delete("Pod", "web-30", "default")
    await eventually(lambda: counts(cluster) == (1, 252, 0, 0), what="one address released")


class PatchCount:
    """Counts the worker's status patches (the observer the metrics use)."""

    def __init__(self) -> None:
        self.written = 0

    def status_patched(self) -> None:
        self.written += 1

    def status_failed(self) -> None:
        raise AssertionError("a status patch failed")


async def test_a_burst_of_pods_costs_a_few_status_patches_and_no_full_resync(
    cluster: Cluster,
) -> None:
    await eventually(lambda: counts(cluster) == (0, 253, 0, 0), what="an empty subnet")
    assert cluster.worker.status is not None
    patches = PatchCount()
    cluster.worker.status.observer = patches
    full_before = cluster.worker.last_full_at
    for number in range(12):
        await cluster.admit(f"burst-{number}")
    await eventually(lambda: counts(cluster) == (12, 241, 0, 0), what="twelve addresses used")
    await asyncio.sleep(1.5)  # a patch still due would have gone out by now
    assert 1 <= patches.written <= 4
    assert cluster.worker.last_full_at == full_before  # its own patches asked for none


def switches(cluster: Cluster) -> set[str]:
    return set(cluster.central.nbctl("--bare", "--columns=name", "list",
                                     "Logical_Switch").split())


async def test_a_deleted_subnet_leaves_the_ipam_and_ovn_with_its_event_not_a_resync(
    cluster: Cluster,
) -> None:
    cluster.api.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                        "metadata": {"name": "brief"}, "spec": {"cidrBlock": "10.21.0.0/24"}})
    await eventually(lambda: "brief" in switches(cluster))
    cluster.api.delete("Subnet", "brief")
    await eventually(lambda: "brief" not in switches(cluster))  # the resync is an hour away
    assert "brief" not in await cluster.ipam.subnet_names()


async def test_a_deleted_subnet_whose_addresses_are_held_keeps_its_switch_for_its_pods(
    cluster: Cluster,
) -> None:
    cluster.api.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                        "metadata": {"name": "held"}, "spec": {"cidrBlock": "10.22.0.0/24"}})
    await eventually(lambda: "held" in switches(cluster))
    await cluster.admit("held-0", subnet="held")
    await eventually(lambda: "held-0.default" in cluster.ports())
    cluster.api.delete("Subnet", "held")
    await full_step(cluster)
    await full_step(cluster)
    assert "held" in await cluster.ipam.subnet_names()
    assert "held" in switches(cluster) and "held-0.default" in cluster.ports()
    cluster.api.delete("Pod", "held-0", "default")
    await eventually(functools.partial(_released, cluster.ipam, "default", "held-0"))
    await full_step(cluster)  # the first after the release takes the subnet out
    assert "held" not in switches(cluster)
