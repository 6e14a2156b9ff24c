"""NetworkPolicy rows against a real ovsdb-server and ovn-northd: written, updated,
deleted, idempotent, turned into logical flows, and foreign rows left alone."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ipam.subnet import build_subnet
from podnet.ovn import OvnCentral
from podnet_sync.cluster import PodView, parse_pod
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState
from podnet_sync.netpol import (
    NetworkPolicy,
    PolicyView,
    add_network_policies,
    parse_network_policy,
    policy_group,
)
from podnet_sync.topology import ClusterView, NodeJoin, desired_state
from tests.ovn_fixtures import nb_writer

NODE = NodeJoin("node1", (ipaddress.ip_address("100.64.0.2"),), "0a:58:64:40:00:02")


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnCentral]:
    with OvnCentral(tmp_path_factory.mktemp("netpol-central")) as started:
        yield started


@pytest.fixture
def northbound(central: OvnCentral) -> Iterator[Northbound]:
    with nb_writer(central) as writer:
        yield writer


def pod(name: str, ip: str, labels: dict[str, str], namespace: str = "shop") -> PodView:
    return parse_pod({
        "metadata": {"namespace": namespace, "name": name, "uid": f"u-{name}",
                     "labels": labels, "annotations": {
                         "ovn.kubernetes.io/allocated": "true",
                         "ovn.kubernetes.io/logical_switch": "apps",
                         "ovn.kubernetes.io/ip_address": ip,
                         "ovn.kubernetes.io/mac_address":
                             f"0a:00:00:00:00:{ip.rsplit('.', 1)[-1].zfill(2)}"}},
        "spec": {"nodeName": "node1", "containers": [
            {"ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running"},
    })


def policy(spec: dict[str, Any] | None = None, name: str = "web",
           annotations: dict[str, str] | None = None) -> NetworkPolicy:
    body = {"podSelector": {"matchLabels": {"app": "web"}}, **(spec or {})}
    return parse_network_policy({"metadata": {"namespace": "shop", "name": name,
                                              "annotations": annotations or {}},
                                 "spec": body})


def state(pods: list[PodView], policies: list[NetworkPolicy]) -> DesiredState:
    desired = desired_state(ClusterView(
        subnets=[build_subnet("apps", "10.20.0.0/24"), build_subnet("join", "100.64.0.0/16")],
        pods=pods, nodes=[NODE]))
    add_network_policies(desired, PolicyView(policies, pods, node_ips=NODE.ips))
    return desired


WEB = pod("web-a", "10.20.0.5", {"app": "web"})
CLIENT = pod("client", "10.20.0.6", {"app": "client"})
FROM_CLIENTS: dict[str, Any] = {
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                 "ports": [{"port": "http"}]}],
    "egress": [{"to": [{"ipBlock": {"cidr": "10.20.0.0/24"}}]}]}


def nb_list(central: OvnCentral, table: str, column: str) -> list[str]:
    return central.nbctl("--bare", f"--columns={column}", "list", table).split("\n")


def test_a_policy_becomes_port_groups_acls_and_address_sets_and_a_second_run_changes_nothing(
    northbound: Northbound, central: OvnCentral
) -> None:
    desired = state([WEB, CLIENT], [policy(FROM_CLIENTS)])
    report = northbound.reconcile(desired)
    assert report.by_kind["port_groups.created"] == 3  # the policy's, ingress and egress isolation
    group = policy_group(policy())
    assert central.nbctl("get", "Port_Group", group, "ports").strip() != "[]"
    matches = central.nbctl("--bare", "--columns=match", "find", "ACL",
                            "external_ids:podnet.io/kind=netpol")
    assert f"outport == @{group}" in matches and "tcp.dst == 8080" in matches
    after_lb = central.nbctl("--bare", "--columns=options", "find", "ACL",
                             "direction=from-lport", "external_ids:podnet.io/kind=netpol")
    assert "apply-after-lb=true" in after_lb
    assert northbound.reconcile(desired).changes == 0


def test_northd_compiles_the_policy_into_the_acl_stages(
    northbound: Northbound, central: OvnCentral
) -> None:
    northbound.reconcile(state([WEB, CLIENT], [policy(FROM_CLIENTS)]))
    deadline = time.monotonic() + 10
    flows = ""
    while time.monotonic() < deadline:
        flows = central.sbctl("lflow-list", "apps")
        if "ls_in_acl_after_lb" in flows and "tcp.dst == 8080" in flows:
            break
        time.sleep(0.1)
    assert "tcp.dst == 8080" in flows
    assert "ip4.dst == 10.20.0.0/24" in flows  # the egress ipBlock, after load balancing


def test_a_changed_label_moves_the_pod_and_a_deleted_policy_leaves_no_row(
    northbound: Northbound, central: OvnCentral
) -> None:
    northbound.reconcile(state([WEB, CLIENT], [policy(FROM_CLIENTS)]))
    relabelled = pod("client", "10.20.0.6", {"app": "web"})
    report = northbound.reconcile(state([WEB, relabelled], [policy(FROM_CLIENTS)]))
    assert report.by_kind.get("port_groups.updated", 0) >= 1
    ports = central.nbctl("get", "Port_Group", policy_group(policy()), "ports")
    assert len(ports.strip("[]\n").split(",")) == 2
    northbound.reconcile(state([WEB, relabelled], []))
    assert nb_list(central, "Port_Group", "name") == [""]
    assert central.nbctl("--bare", "--columns=_uuid", "find", "ACL",
                         "external_ids:podnet.io/kind=netpol") == ""
    sets = central.nbctl("--bare", "--columns=name", "list", "Address_Set")
    assert "npas_" not in sets and "npsel_" not in sets


def test_foreign_port_groups_and_acls_are_left_alone(
    northbound: Northbound, central: OvnCentral
) -> None:
    central.nbctl("pg-add", "someone_elses")
    central.nbctl("acl-add", "someone_elses", "to-lport", "100", "ip", "drop")
    try:
        northbound.reconcile(state([WEB], [policy(FROM_CLIENTS)]))
        northbound.reconcile(state([WEB], []))
        assert "someone_elses" in central.nbctl("--bare", "--columns=name", "list", "Port_Group")
        assert "drop" in central.nbctl("acl-list", "someone_elses")
    finally:
        central.nbctl("pg-del", "someone_elses")


def test_logging_annotations_give_named_severe_metered_acls(
    northbound: Northbound, central: OvnCentral
) -> None:
    logged = policy(FROM_CLIENTS, annotations={
        "ovn.kubernetes.io/enable_log": "true", "ovn.kubernetes.io/log_acl_actions": "allow,drop",
        "ovn.kubernetes.io/acl_log_meter_rate": "7"})
    desired = state([WEB, CLIENT], [logged])
    northbound.reconcile(desired)
    rows = central.nbctl("--format=json", "--columns=name,severity,meter,log,action", "find",
                         "ACL", "external_ids:podnet.io/kind=netpol", "log=true")
    found = json.loads(rows)["data"]
    assert {row[4] for row in found} == {"allow-related", "drop"}
    assert all(row[2] == "podnet-acl-log-7" for row in found)
    assert central.nbctl("get", "Meter", "podnet-acl-log-7", "fair").strip() == "true"
    assert northbound.reconcile(desired).changes == 0
