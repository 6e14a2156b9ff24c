"""The NB writer against a real ovsdb-server and ovn-northd: rows, flows, drift, restarts."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ipam.subnet import build_subnet
from podnet.ovn import OvnCentral
from podnet_sync.cluster import parse_endpoint_slice, parse_pod, parse_service
from podnet_sync.nb import Northbound, Scope
from podnet_sync.nb_model import DesiredState
from podnet_sync.topology import ClusterView, NodeJoin, desired_state, distributed_keys
from tests.ovn_fixtures import nb_writer


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnCentral]:
    """A central of this module alone: full reconciles own every podnet row in it."""
    with OvnCentral(tmp_path_factory.mktemp("nb-central")) as started:
        yield started


@pytest.fixture
def northbound(central: OvnCentral) -> Iterator[Northbound]:
    with nb_writer(central) as writer:
        yield writer


def replica_sees(northbound: Northbound, check: Callable[[Any], bool]) -> None:
    """Wait until the worker's IDL replica has caught up with a change made by hand."""
    deadline = time.monotonic() + 10
    while not check(northbound.api.tables):
        assert time.monotonic() < deadline, "the IDL replica never saw the change"
        time.sleep(0.02)


def pod(name: str, ip: str, node: str = "node1") -> Any:
    return parse_pod({
        "metadata": {"namespace": "default", "name": name, "uid": f"u-{name}", "annotations": {
            "ovn.kubernetes.io/allocated": "true", "ovn.kubernetes.io/logical_switch": "apps",
            "ovn.kubernetes.io/ip_address": ip,
            "ovn.kubernetes.io/mac_address": f"0a:00:00:00:00:{ip.rsplit('.', 1)[-1].zfill(2)}",
        }},
        "spec": {"nodeName": node}, "status": {"phase": "Running"},
    })


SERVICE = parse_service({"metadata": {"namespace": "default", "name": "web"}, "spec": {
    "clusterIP": "10.96.0.10", "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}})
SLICE = parse_endpoint_slice({
    "metadata": {"namespace": "default", "name": "web-1",
                 "labels": {"kubernetes.io/service-name": "web"}},
    "endpoints": [{"addresses": ["10.20.0.5"], "conditions": {"ready": True}}],
    "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
})


def cluster(*pods: Any, with_service: bool = True) -> DesiredState:
    return desired_state(ClusterView(
        subnets=[build_subnet("apps", "10.20.0.0/24"), build_subnet("join", "100.64.0.0/16")],
        pods=list(pods),
        nodes=[NodeJoin("node1", (ipaddress.ip_address("100.64.0.2"),), "0a:58:64:40:00:02")],
        services=[SERVICE] if with_service else [], slices=[SLICE] if with_service else [],
    ))


def test_a_reconcile_creates_the_topology_and_a_second_changes_nothing(
    northbound: Northbound, central: OvnCentral
) -> None:
    report = northbound.reconcile(cluster(pod("web-a", "10.20.0.5")))
    assert report.by_kind["switch_ports.created"] == 4  # pod, node, two router links
    assert central.nbctl("get", "Logical_Switch_Port", "web-a.default", "addresses").strip() == (
        '["0a:00:00:00:00:05 10.20.0.5"]')
    assert "10.20.0.1/24" in central.nbctl("lrp-list", "ovn-cluster") + central.nbctl(
        "get", "Logical_Router_Port", "ovn-cluster-apps", "networks")
    vips = central.nbctl("get", "Load_Balancer", "podnet/svc/default/web/tcp", "vips")
    assert '"10.96.0.10:80"="10.20.0.5:8080"' in vips
    groups = central.nbctl("get", "Logical_Switch", "apps", "load_balancer_group")
    assert groups.strip() not in ("", "[]")
    assert northbound.reconcile(cluster(pod("web-a", "10.20.0.5"))).changes == 0


def test_northd_turns_the_service_vip_into_logical_flows(
    northbound: Northbound, central: OvnCentral
) -> None:
    northbound.reconcile(cluster(pod("web-a", "10.20.0.5")))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        flows = central.sbctl("lflow-list", "apps")
        if "10.96.0.10" in flows:
            break
        time.sleep(0.1)
    assert "ct_lb_mark(backends=10.20.0.5:8080)" in flows


def test_drift_is_repaired_and_foreign_rows_are_left_alone(
    northbound: Northbound, central: OvnCentral
) -> None:
    central.nbctl("ls-add", "someone-elses")
    try:
        northbound.reconcile(cluster(pod("web-a", "10.20.0.5")))
        central.nbctl("lsp-del", "web-a.default")
        central.nbctl("set", "Load_Balancer", "podnet/svc/default/web/tcp",
                      'vips={"10.96.0.10:80"="10.99.9.9:1"}')
        replica_sees(northbound, lambda tables: any(
            dict(row.vips).get("10.96.0.10:80") == "10.99.9.9:1"
            for row in tables["Load_Balancer"].rows.values()))
        report = northbound.reconcile(cluster(pod("web-a", "10.20.0.5")))
        assert report.by_kind == {"switch_ports.created": 1, "load_balancers.updated": 1}
        assert "someone-elses" in central.nbctl("ls-list")
    finally:
        central.nbctl("ls-del", "someone-elses")


def test_a_scoped_step_touches_only_its_pods(northbound: Northbound, central: OvnCentral) -> None:
    northbound.reconcile(cluster(pod("web-a", "10.20.0.5"), pod("web-b", "10.20.0.6")))
    scope = Scope(switch_ports=frozenset({"web-c.default", "web-a.default"}), structure=False,
                  load_balancers=frozenset(), address_sets=frozenset(), policies=frozenset())
    # web-a deleted, web-c added; web-b is outside the scope and stays though not desired.
    report = northbound.reconcile(cluster(pod("web-c", "10.20.0.7")), scope)
    assert (report.created, report.deleted) == (1, 1)
    ports = central.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port").split()
    assert {"web-b.default", "web-c.default"} <= set(ports)
    assert "web-a.default" not in ports


def test_a_scoped_step_finds_its_service_and_gateway_rows_without_the_skeleton(
    northbound: Northbound, central: OvnCentral
) -> None:
    northbound.reconcile(cluster(pod("web-a", "10.20.0.5")))
    address_sets, policies = distributed_keys("apps", "node1")
    scope = Scope(switch_ports=frozenset(), structure=False,
                  load_balancers=frozenset({"podnet/svc/default/web/tcp"}),
                  address_sets=frozenset(address_sets), policies=frozenset(policies))
    # The service is deleted and node1 runs no pod of apps any more.
    gone = northbound.reconcile(cluster(with_service=False), scope)
    assert gone.by_kind == {"load_balancers.deleted": 1, "address_sets.deleted": 1,
                            "policies.deleted": 1}
    assert central.nbctl("get", "Load_Balancer_Group", "podnet-cluster-lbs",
                         "load_balancer").strip() == "[]"
    back = northbound.reconcile(cluster(pod("web-a", "10.20.0.5")), scope)
    assert back.by_kind == {"load_balancers.created": 1, "address_sets.created": 1,
                            "policies.created": 1}
    assert northbound.reconcile(cluster(pod("web-a", "10.20.0.5"))).changes == 0


def test_a_restarted_northbound_server_is_reconnected_and_converges(
    northbound: Northbound, central: OvnCentral
) -> None:
    northbound.reconcile(cluster(pod("web-a", "10.20.0.5")))
    central.restart_nb()
    deadline = time.monotonic() + 20
    while True:
        try:
            northbound.reconcile(cluster(pod("web-a", "10.20.0.5"), pod("web-b", "10.20.0.6")))
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert "web-b.default" in central.nbctl("--bare", "--columns=name", "list",
                                            "Logical_Switch_Port")


def test_the_module_central_is_private(central: OvnCentral, tmp_path: Path) -> None:
    assert central.nb_remote.startswith("unix:") and str(tmp_path) not in central.nb_remote


def test_a_large_step_commits_in_slices_and_still_converges(
    northbound: Northbound, central: OvnCentral
) -> None:
    sliced = Northbound(northbound.api, max_changes=3)
    report = sliced.reconcile(cluster(pod("web-a", "10.20.0.5"), pod("web-b", "10.20.0.6")))
    assert report.by_kind["switch_ports.created"] == 5
    assert sliced.reconcile(cluster(pod("web-a", "10.20.0.5"), pod("web-b", "10.20.0.6"))
                            ).changes == 0
    assert {"web-a.default", "web-b.default"} <= set(central.nbctl(
        "--bare", "--columns=name", "list", "Logical_Switch_Port").split())
