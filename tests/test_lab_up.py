"""``podnet up`` with the examples: real Redis, OVN, webhook, sync worker,
nodes in network namespaces with their node agents, the lab's API server and
controllers. Pods are admitted, addressed, placed where their subnet exists, wired into
OVN and attached by ``podnet-cni``.

Every lab here has its own ports and name prefix, and each test ends with ``down`` and a
check that nothing of the lab is left on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from podnet.daemons import DaemonError
from podnet.lab import DEFAULT_MANIFESTS, LabSettings, down, lab_processes, status_report, up
from podnet.lab.nodes import lab_nodes
from podnet.lab.report import Report
from podnet.lab.up import central_of
from tests.lab_fixtures import lab_settings, leftovers, removed_after

pytestmark = pytest.mark.slow

CONFLICT = """\
apiVersion: v1
kind: Pod
metadata:
  name: squatter
  namespace: default
  annotations:
    ovn.kubernetes.io/ip_address: 10.16.0.100
spec:
  containers: [{name: app, image: busybox}]
"""
BROKEN = """\
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: broken}
spec: {cidrBlock: 10.99.0.0/33}
"""

COREDNS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
spec:
  replicas: 2
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
    spec:
      containers: [{name: coredns, image: coredns}]
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabSettings]:
    manifests = tmp_path / "manifests"
    shutil.copytree(DEFAULT_MANIFESTS, manifests)
    (manifests / "90-broken.yaml").write_text(BROKEN)
    (manifests / "91-conflict.yaml").write_text(CONFLICT)
    (manifests / "92-coredns.yaml").write_text(COREDNS)  # no admission: adopted
    with removed_after(lab_settings(tmp_path / "state", manifests)) as settings:
        yield settings


def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """The sync worker mirrors into OVN on its own time: wait for it."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("the sync worker did not write OVN in time")
        time.sleep(0.1)


def rows_by_pod(report: Report) -> dict[str, dict[str, object]]:
    return {f"{row.namespace}/{row.name}": row.__dict__ for row in report.pods}


def test_up_admits_places_attaches_and_reports_every_pod_and_a_second_up_keeps_it_all(
    lab: LabSettings,
) -> None:
    problems = [str(p) for p in up(lab)]
    manifests = lab.manifests[0]
    assert problems == [
        f"{manifests / '90-broken.yaml'}: Subnet broken: admission webhook "
        '"subnets.podnet.io" denied the request: spec.cidrBlock 10.99.0.0/33: is not a '
        "valid CIDR",
        f"{manifests / '91-conflict.yaml'}: Pod squatter: admission webhook "
        '"pods.podnet.io" denied the request: ovn.kubernetes.io/ip_address 10.16.0.100 is '
        "already used by pod default/registry",
    ]
    report = Report.load(lab.state_dir)
    rows = rows_by_pod(report)
    frontends = [row for name, row in rows.items() if name.startswith("shop/frontend-")]
    assert sorted(str(row["ip"]) for row in frontends) == [
        "10.66.0.20", "10.66.0.21", "10.66.0.22"]
    assert {row["node"] for row in frontends} == {"node-1", "node-2"}
    assert [rows[f"shop/db-{n}"]["ip"] for n in range(3)] == [
        "10.66.0.30", "10.66.0.31", "10.66.0.32"]
    assert (rows["default/registry"]["ip"], rows["default/registry"]["mac"]) == (
        "10.16.0.100", "0a:58:0a:10:00:64")
    assert rows["edge/gateway"]["node"] == "node-1"  # the only node in zone-a
    assert rows["tools/iperf"]["subnet"] == "tools"
    coredns = [row for name, row in rows.items() if name.startswith("kube-system/coredns-")]
    assert len(coredns) == 2 and all(str(row["ip"]).startswith("10.16.") for row in coredns)
    assert {str(row["status"]) for row in rows.values()} == {"Running"}
    assert all(check.ok for check in report.connectivity)

    wanted = {f"{name.split('/')[1]}.{name.split('/')[0]}" for name in rows}
    eventually(lambda: wanted <= set(central_of(lab).nbctl(
        "--bare", "--columns=name", "list", "Logical_Switch_Port").split()))
    eventually(lambda: "10.96.0.10:80" in central_of(lab).nbctl(
        "--bare", "--columns=vips", "list", "Load_Balancer"))
    assert "shop/frontend-" in status_report(lab)
    a_second_up_keeps_what_runs_and_a_restarted_api_server_keeps_the_objects(lab, problems)


def a_second_up_keeps_what_runs_and_a_restarted_api_server_keeps_the_objects(
    lab: LabSettings, reported: list[str],
) -> None:
    first = {row.uid for row in Report.load(lab.state_dir).pods}
    processes = lab_processes(lab)
    pids = {name: process.pid() for name, process in processes.items()}
    daemons = {**central_of(lab).pids(),
               **{f"{n.name}/{d}": p for n in lab_nodes(lab)
                  for d, p in n.ovs(central_of(lab)).pids().items()}}
    apiserver = pids.pop("apiserver")
    assert apiserver is not None
    os.kill(apiserver, signal.SIGTERM)  # it writes its state file on the way out
    processes["apiserver"].stop()

    assert [str(p) for p in up(lab)] == reported  # the same refusals, nothing new
    assert {row.uid for row in Report.load(lab.state_dir).pods} == first
    assert {name: p.pid() for name, p in processes.items() if name != "apiserver"} == pids
    assert {**central_of(lab).pids(),
            **{f"{n.name}/{d}": p for n in lab_nodes(lab)
               for d, p in n.ovs(central_of(lab)).pids().items()}} == daemons


def test_down_after_a_half_started_up_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = lab_settings(tmp_path / "state", DEFAULT_MANIFESTS,
                                webhook_listen=f"127.0.0.1:{port}")
        try:
            with pytest.raises(DaemonError, match="webhook"):
                up(settings)
            assert lab_processes(settings)["apiserver"].pid() is not None
        finally:
            down(settings)
    assert leftovers(settings) == []


def test_down_with_nothing_running_is_harmless(tmp_path: Path) -> None:
    settings = lab_settings(tmp_path / "state", DEFAULT_MANIFESTS)
    assert down(settings) == []
    assert leftovers(settings) == []
