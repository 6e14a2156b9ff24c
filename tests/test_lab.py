"""``podnet up`` / ``status`` / ``trace`` / ``down`` with real processes, each lab on its own.

``tests/test_lab_up.py`` checks the pods ``up`` makes of the examples; this file the
lab's promises as a whole, on a small manifest set: it runs every piece, attaches pods
through the node agents, proves connectivity (same node, across nodes, across subnets,
a Service VIP, out through the gateway), reports bad manifests, explains a packet's path,
is safe to run twice, and ``down`` leaves nothing behind."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from podnet.daemons import pid_alive
from podnet.lab import LabSettings, down, lab_processes, status_report, up
from podnet.lab.report import Report
from podnet.lab.trace import explain
from tests.lab_fixtures import lab_settings, leftovers

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: web
  annotations: {ovn.kubernetes.io/logical_switch: web}
---
apiVersion: v1
kind: Namespace
metadata:
  name: data
  annotations: {ovn.kubernetes.io/logical_switch: data}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: web}
spec: {cidrBlock: 10.70.0.0/24, natOutgoing: true}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: data}
spec: {cidrBlock: 10.71.0.0/24, private: true, allowSubnets: [10.70.0.0/24]}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: broken}
spec: {cidrBlock: 10.99.0.0/33}
---
apiVersion: v1
kind: Service
metadata: {name: frontend, namespace: web}
spec:
  selector: {app: frontend}
  ports: [{name: http, port: 80, targetPort: http}]
  sessionAffinity: ClientIP
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend, namespace: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec:
      containers:
      - {name: web, image: nginx, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: data}
spec: {containers: [{name: db, image: postgres}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: registry
  namespace: default
  annotations:
    ovn.kubernetes.io/ip_address: 10.16.0.100
    ovn.kubernetes.io/mac_address: 0a:58:0a:10:00:64
spec: {containers: [{name: registry, image: registry}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: squatter
  namespace: default
  annotations: {ovn.kubernetes.io/ip_address: 10.16.0.100}
spec: {containers: [{name: app, image: busybox}]}
"""
KINDS = ["same node", "across nodes (Geneve)", "across subnets", "Service VIP",
         "outside world (SNAT)"]


@pytest.fixture
def lab(tmp_path: Path) -> LabSettings:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "lab.yaml").write_text(MANIFESTS)
    return lab_settings(tmp_path / "state", manifests, nodes=2)


def problems_of(lab: LabSettings) -> list[str]:
    source = lab.manifests[0] / "lab.yaml"
    return [
        f"{source}#4: Subnet broken: admission webhook \"subnets.podnet.io\" denied the request: "
        "spec.cidrBlock 10.99.0.0/33: is not a valid CIDR",
        f"{source}#9: Pod squatter: admission webhook \"pods.podnet.io\" denied the request: "
        "ovn.kubernetes.io/ip_address 10.16.0.100 is already used by pod default/registry",
    ]


def check_pods_and_connectivity(lab: LabSettings) -> Report:
    report = Report.load(lab.state_dir)
    assert sorted(row.status for row in report.pods) == ["Running"] * 4
    assert {row.node for row in report.pods} == {"node-1", "node-2"}
    assert all(row.ready_s is not None for row in report.pods)
    results = report.connectivity
    assert sorted({r.kind for r in results}) == sorted(KINDS)
    assert [r for r in results if not r.ok] == []
    assert all(r.latency_ms is not None and r.latency_ms < 1000 for r in results)
    service = next(r for r in results if r.kind == "Service VIP")
    assert "ClientIP affinity held" in service.detail
    for outside in (r for r in results if r.kind == "outside world (SNAT)"):
        assert outside.detail.startswith("external host saw 172.30.0.1")
        assert "(node-" in outside.detail
    return report


def check_traces(lab: LabSettings) -> None:
    to_service = explain(lab, "default/registry", "10.96.0.10:80")
    assert "path:           switch ovn-default -> router ovn-cluster -> switch web" in to_service
    assert "load balancer:  10.96.0.10:80 -> 10.70.0." in to_service
    assert "(ClientIP affinity)" in to_service
    assert "outcome:        delivered to frontend-" in to_service
    denied = explain(lab, "default/registry", "data/db:5432")
    assert "ACL:            denied by ACL to-lport priority 2900 on data: ip" in denied
    allowed = explain(lab, next(f"web/{row.name}" for row in Report.load(lab.state_dir).pods
                                if row.namespace == "web"), "data/db:5432")
    assert "outcome:        delivered to db.data" in allowed
    out = explain(lab, "default/registry", "198.51.100.10:9000")
    assert "reroute to 100.64.0." in out and "its gateway out of the cluster" in out


@pytest.mark.slow
def test_up_attaches_pods_proves_connectivity_traces_and_down_leaves_nothing(
    lab: LabSettings,
) -> None:
    pids: dict[str, int | None] = {}
    try:
        assert [str(p) for p in up(lab)] == problems_of(lab)
        report = check_pods_and_connectivity(lab)
        with urllib.request.urlopen(f"http://{lab.ipam_listen}/api/v1/subnets") as response:
            names = [subnet["name"] for subnet in json.load(response)]
        assert names == ["data", "join", "ovn-default", "web"]
        check_traces(lab)
        status = status_report(lab)
        assert "outside world (SNAT)" in status and "FAIL" not in status
        pids = {name: process.pid() for name, process in lab_processes(lab).items()}
        assert all(pids.values())
        assert sorted(pids) == ["agent-node-1", "agent-node-2", "apiserver", "controllers",
                                "ipam-endpoint", "redis", "sync", "webhook"]

        assert [str(p) for p in up(lab)] == problems_of(lab)  # a second up keeps what runs
        assert {name: p.pid() for name, p in lab_processes(lab).items()} == pids
        again = Report.load(lab.state_dir)
        assert {row.uid for row in again.pods} == {row.uid for row in report.pods}
        assert all(result.ok for result in again.connectivity)
    finally:
        down(lab)
    assert not any(pid_alive(pid) for pid in pids.values() if pid)
    assert not lab.state_dir.exists()
    assert leftovers(lab) == []


async def test_a_subnet_overlapping_the_built_in_default_is_a_problem_not_a_crash(
    ipam: object, tmp_path: Path
) -> None:
    from ipam.register import register_ipam_objects
    from ipam.store import Ipam
    from podnet_plumbing.manifests import read_manifests

    assert isinstance(ipam, Ipam)
    (tmp_path / "s.yaml").write_text(
        "apiVersion: kubeovn.io/v1\nkind: Subnet\nmetadata: {name: wide}\n"
        "spec: {cidrBlock: 10.0.0.0/8}\n"
    )
    manifests, _ = read_manifests([tmp_path])
    outcome = await register_ipam_objects(ipam, manifests, ensure_default=True)
    assert outcome.registered == ["subnet wide (10.0.0.0/8)"]
    assert "overlaps subnet wide" in str(outcome.problems[0])
