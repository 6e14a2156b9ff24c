"""Kube-OVN's Subnet ``spec.acls`` against a real OVN: the ACLs are written on the
subnet's switch, owned by podnet, updated and removed with the subnet, other rows left
alone; and on a real chassis the example's drop blocks a ping while its allow-related
lets the pod itself reach out."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ipam import names
from ipam.settings import RedisSettings
from ipam.subnet import SubnetSpec, build_subnet, parse_subnet
from podnet.ovn import OvnCentral, OvnError, OvsNode
from podnet_sync.cluster import PodView, parse_pod
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState
from podnet_sync.topology import ClusterView, desired_state
from tests.ovn_fixtures import NetnsPod, nb_writer, netns_node, plug_pod, running_node
from tests.test_sync import full_step, watched_worker
from tests.waiting import cancelled, eventually, until

EXAMPLE: list[dict[str, Any]] = [
    {"action": "drop", "direction": "to-lport", "match": "ip4.dst == 10.10.0.2 && ip",
     "priority": 1002},
    {"action": "allow-related", "direction": "from-lport",
     "match": "ip4.src == 10.10.0.2 && ip", "priority": 1002},
]


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnCentral]:
    """A central of this module alone: full reconciles own every podnet row in it."""
    with OvnCentral(tmp_path_factory.mktemp("subnet-acl-central")) as started:
        yield started


@pytest.fixture
def northbound(central: OvnCentral) -> Iterator[Northbound]:
    with nb_writer(central) as writer:
        yield writer


def acl_subnet(acls: list[dict[str, Any]], **spec: Any) -> SubnetSpec:
    return parse_subnet({"kind": "Subnet", "metadata": {"name": "acl"}, "spec": {
        "allowEWTraffic": False, "acls": acls, "cidrBlock": "10.10.0.0/24", **spec}})


def state(*subnets: SubnetSpec, pods: list[PodView] | None = None) -> DesiredState:
    return desired_state(ClusterView(subnets=list(subnets), pods=pods or [], nodes=[]))


def switch_acls(central: OvnCentral, switch: str = "acl") -> str:
    return central.nbctl("acl-list", switch)


def podnet_acls(central: OvnCentral) -> list[str]:
    found = central.nbctl("--bare", "--columns=external_ids", "find", "ACL",
                          "external_ids:podnet.io/kind=acl")
    return [line for line in found.splitlines() if line.strip()]


def test_the_examples_acls_are_written_on_its_switch_owned_by_podnet_and_a_rerun_changes_nothing(
    northbound: Northbound, central: OvnCentral
) -> None:
    desired = state(acl_subnet(EXAMPLE))
    report = northbound.reconcile(desired)
    assert report.by_kind["acls.created"] == 2
    listed = switch_acls(central)
    assert "to-lport  5002 ((ip4.dst == 10.10.0.2 && ip) && (!ct.trk || !ct.est)) drop" in listed
    assert "from-lport  5002 (ip4.src == 10.10.0.2 && ip) allow-related" in listed
    ids = podnet_acls(central)
    assert len(ids) == 2 and all("podnet.io/owner=podnet" in line for line in ids)
    assert any("acl/acls/0" in line and "podnet.io/kind=acl" in line for line in ids)
    assert northbound.reconcile(desired).changes == 0


def test_a_changed_acl_is_updated_and_a_removed_one_deleted(
    northbound: Northbound, central: OvnCentral
) -> None:
    northbound.reconcile(state(acl_subnet(EXAMPLE)))
    changed = [{**EXAMPLE[0], "match": "ip4.dst == 10.10.0.3 && icmp4", "priority": 1500}]
    report = northbound.reconcile(state(acl_subnet(changed)))
    assert report.by_kind.get("acls.updated", 0) == 1
    assert report.by_kind.get("acls.deleted", 0) == 1
    listed = switch_acls(central)
    assert "5500 ((ip4.dst == 10.10.0.3 && icmp4) && (!ct.trk || !ct.est)) drop" in listed
    assert "10.10.0.2" not in listed


def test_the_acls_go_with_the_subnet_and_foreign_acls_stay(
    northbound: Northbound, central: OvnCentral
) -> None:
    northbound.reconcile(state(acl_subnet(EXAMPLE), build_subnet("other", "10.11.0.0/24")))
    central.nbctl("acl-add", "other", "to-lport", "77", "ip4.src == 10.99.0.1", "drop")
    try:
        northbound.reconcile(state(build_subnet("other", "10.11.0.0/24")))
        assert podnet_acls(central) == []
        assert "acl" not in central.nbctl("--bare", "--columns=name", "list",
                                          "Logical_Switch").split()
        assert "ip4.src == 10.99.0.1" in switch_acls(central, "other")
    finally:
        central.nbctl("acl-del", "other")


def test_allow_ew_traffic_adds_the_same_subnet_allows_and_removes_them_again(
    northbound: Northbound, central: OvnCentral
) -> None:
    northbound.reconcile(state(acl_subnet(EXAMPLE, allowEWTraffic=True)))
    listed = switch_acls(central)
    same = "ip4.src == 10.10.0.0/24 && ip4.dst == 10.10.0.0/24"
    assert f"to-lport  5900 ({same}) allow" in listed
    assert f"from-lport  5900 ({same}) allow" in listed
    northbound.reconcile(state(acl_subnet(EXAMPLE)))
    assert same not in switch_acls(central)


EVERY_FIELD = [
    "ip4.src == {10.10.0.0/28, 10.10.0.200} && tcp && tcp.dst >= 80 && tcp.dst <= 90",
    "ip6.dst == fd00::/64 && udp.src == 53 || sctp && sctp.dst != 9",
    "eth.src == 0a:58:0a:0a:00:02 && ip4 && !(ip.ttl != 1) && !!tcp && !tcp.src == 22",
    "!(ip4.src != 10.10.0.0/24 || ip6.src == ::1) && icmp6.code == {0, 1}",
    "icmp4 && icmp4.type == 8 && icmp4.code == 0 || icmp6.type == 128 && icmp6.code == 0",
    "arp || ip.proto == 47 || ip6.src != ::1 || udp.dst > 1023 || eth.dst == ff:ff:ff:ff:ff:ff",
]


def test_northd_compiles_every_whitelisted_field_into_logical_flows(
    northbound: Northbound, central: OvnCentral
) -> None:
    acls = [{"action": action, "direction": "to-lport", "match": match, "priority": 100 + i}
            for i, (match, action) in enumerate(zip(EVERY_FIELD, (
                "allow", "allow-related", "allow-stateless", "drop", "reject", "drop"),
                strict=True))]
    northbound.reconcile(state(acl_subnet(acls)))

    def compiled() -> bool:
        try:
            flows = central.sbctl("lflow-list", "acl")
        except OvnError:  # northd has not made the switch's datapath yet
            return False
        return all(f"priority={4000 + 100 + i + 1000}" in flows  # ACL flows: + 1000
                   for i in range(len(EVERY_FIELD)))

    until(compiled, timeout_s=30)
    # ovn-trace parses every logical flow of the switch, as ovn-controller does, and
    # warns about each match it cannot read
    traced = subprocess.run(
        ["ovn-trace", f"--db={central.sb_remote}", "acl",
         'inport == "acl-ovn-cluster" && eth.src == 0a:58:0a:0a:00:09'],
        capture_output=True, text=True, timeout=30, check=False)
    assert traced.returncode == 0, traced.stderr
    assert "parsing expression failed" not in traced.stderr, traced.stderr


async def listed_after_full_steps(cluster: Any, wanted: Callable[[str], bool]) -> str:
    """The switch's ACLs once a full step has written what ``wanted`` looks for: an
    edit reaches the worker through its watch, which may come after one step began."""
    async def written() -> str:
        await full_step(cluster)
        switches = await asyncio.to_thread(
            cluster.central.nbctl, "--bare", "--columns=name", "list", "Logical_Switch")
        if "acl" not in switches.split():
            return ""
        listed = await asyncio.to_thread(switch_acls, cluster.central)
        return listed if wanted(listed) else ""

    found: str = await eventually(written)
    return found


async def test_the_sync_worker_writes_a_subnets_acls_follows_its_edits_and_refuses_a_hostile_one(
    central: OvnCentral, redis_settings: RedisSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with watched_worker(central, redis_settings) as cluster:
        cluster.api.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                            "metadata": {"name": "acl"},
                            "spec": {"cidrBlock": "10.10.0.0/24", "acls": EXAMPLE}})
        await cluster.worker.step()
        runner = asyncio.create_task(cluster.worker.run())
        try:
            await listed_after_full_steps(
                cluster, lambda listed: "5002 (ip4.src == 10.10.0.2 && ip) allow-related"
                in listed)
            edited = [{**EXAMPLE[1], "match": "ip4.src == {10.10.0.2, 10.10.0.3}"}]
            cluster.api.patch("Subnet", "acl", {"spec": {"acls": edited}})
            listed = await listed_after_full_steps(
                cluster, lambda listed: "(ip4.src == {10.10.0.2, 10.10.0.3}) allow-related"
                in listed)
            assert "drop" not in listed
            # written past the webhook: the worker's own check refuses it, and the ACLs
            # admitted before stay as they were
            hostile = [{**EXAMPLE[1], "match": "outport == @np_anything || ip"}]

            def refused() -> bool:
                return any("spec.acls[0].match" in r.getMessage() and "port group" in
                           r.getMessage() for r in caplog.records)

            with caplog.at_level(logging.WARNING):
                cluster.api.patch("Subnet", "acl", {"spec": {"acls": hostile}})
                listed = await listed_after_full_steps(cluster, lambda _: refused())
            assert "@np_anything" not in listed and "10.10.0.3" in listed
        finally:
            await cancelled(runner)


# ---------------------------------------------------------------- the datapath


@pytest.fixture(scope="module")
def node(central: OvnCentral, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvsNode]:
    chassis = netns_node(tmp_path_factory.mktemp("subnet-acl-node"), central)
    with running_node(chassis):
        yield chassis


def pod_view(name: str, host: int) -> PodView:
    return parse_pod({
        "metadata": {"namespace": "default", "name": name, "uid": f"u-{name}",
                     "annotations": {
                         "ovn.kubernetes.io/allocated": "true",
                         "ovn.kubernetes.io/logical_switch": "acl",
                         "ovn.kubernetes.io/ip_address": f"10.10.0.{host}",
                         "ovn.kubernetes.io/mac_address": f"0a:58:0a:0a:00:{host:02x}"}},
        "spec": {"nodeName": "node"}, "status": {"phase": "Running"},
    })


@pytest.fixture
def pods(node: OvsNode) -> Iterator[tuple[NetnsPod, NetnsPod]]:
    """The example's protected pod 10.10.0.2 and a neighbour 10.10.0.3."""
    plugged: list[NetnsPod] = []
    try:
        for view in (pod_view("guarded", 2), pod_view("neighbour", 3)):
            plugged.append(plug_pod(node, names.pod_port(view.name, view.namespace),
                                    f"{view.ips[0]}/24", view.mac))
        yield plugged[0], plugged[1]
    finally:
        for pod in plugged:
            pod.cleanup()




@pytest.mark.slow
def test_the_examples_drop_blocks_a_ping_to_the_pod_and_its_allow_related_lets_it_reach_out(
    northbound: Northbound, node: OvsNode, pods: tuple[NetnsPod, NetnsPod]
) -> None:
    guarded, neighbour = pods
    views = [pod_view("guarded", 2), pod_view("neighbour", 3)]
    northbound.reconcile(state(acl_subnet([]), pods=views))
    for pod in pods:
        node.wait_port_installed(pod.host_dev, timeout_s=20)
    until(lambda: neighbour.pings(guarded))
    northbound.reconcile(state(acl_subnet(EXAMPLE), pods=views))
    until(lambda: not neighbour.pings(guarded))
    assert guarded.pings(neighbour)  # the reply is related to an allowed connection
    northbound.reconcile(state(acl_subnet([]), pods=views))
    until(lambda: neighbour.pings(guarded))
    # the drop alone: no stateful ACL on the switch, so its traffic skips conntrack
    northbound.reconcile(state(acl_subnet(EXAMPLE[:1]), pods=views))
    until(lambda: not neighbour.pings(guarded))
    assert not neighbour.pings(guarded) and not guarded.pings(neighbour)
