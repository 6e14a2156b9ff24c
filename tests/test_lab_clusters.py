"""``podnet up --clusters 2``: two whole clusters on one machine, interconnected over
OVN-IC by their own IC controllers, with pods of one reaching pods of the other by pod IP.

One lab of its own (temporary state, a unique prefix, free ports), brought down at the
end with the proof that no process, namespace or link of either cluster is left.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podnet.lab import DEFAULT_MANIFESTS, LabSettings, status_report, up
from podnet.lab.checks import ACROSS, PING_ACROSS
from podnet.lab.interconnect import ic_databases, ovn_ic_daemon
from podnet.lab.kubelet import sandbox_name
from podnet.lab.report import Report
from podnet.lab.rest import Rest
from podnet.lab.trace import explain
from podnet.lab.up import check_across_clusters, down
from podnet.ovn_raft import RaftDatabase
from podnet_plumbing import kube
from tests.lab_fixtures import lab_settings, leftovers

pytestmark = pytest.mark.slow


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[LabSettings]:
    first = lab_settings(tmp_path / "state", DEFAULT_MANIFESTS, clusters=2)
    try:
        yield first
    finally:
        down(first)
        for each in first.all_clusters():
            assert leftovers(each) == []
        assert not any(first.interconnect_bridge in line for line in subprocess.run(
            ["ip", "-o", "link", "show"], capture_output=True, text=True,
            check=True).stdout.splitlines())


def pods(settings: LabSettings) -> list[dict[str, Any]]:
    return Rest(kube.kube_client(settings.kubeconfig("admin"))).list("Pod")


def pod_ip(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("podIP"))


def in_pod(settings: LabSettings, pod: dict[str, Any], *argv: str) -> str:
    netns = sandbox_name(settings.prefix, pod)
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True,
                          text=True, check=True, timeout=30).stdout


def test_two_clusters_reach_each_others_pods_by_pod_ip(clusters: LabSettings) -> None:
    problems = up(clusters)
    assert problems == []
    first, second = clusters.all_clusters()
    one = {p["metadata"]["name"]: p for p in pods(first)}
    two = [p for p in pods(second) if str(p["metadata"]["name"]).startswith("web-")]
    assert len(two) == 2 and all(pod_ip(p).startswith("10.18.") for p in two)
    registry = one["registry"]
    assert pod_ip(registry) == "10.16.0.100"

    # up's own checks, both ways: ping with two routers on the way, TCP with the source kept
    report = Report.load(first.state_dir)
    across = [c for c in report.connectivity if c.kind in (ACROSS, PING_ACROSS)]
    assert len(across) == 4 and all(c.ok for c in across), across
    assert all("ttl 62" in c.detail for c in across if c.kind == PING_ACROSS)
    assert all("client's own" in c.detail for c in across if c.kind == ACROSS)
    assert all(c.ok for c in Report.load(second.state_dir).connectivity)

    # and by hand: ping from a pod of cluster 1 to one of cluster 2, TTL 64 - 2
    ping = in_pod(first, registry, "ping", "-n", "-c", "2", "-W", "2", pod_ip(two[0]))
    assert re.findall(r"ttl=(\d+)", ping) == ["62", "62"]
    # TCP from cluster 2 to cluster 1: the server sees the client's pod IP
    server = subprocess.Popen(
        ["ip", "netns", "exec", sandbox_name(first.prefix, registry), "python3", "-c",
         "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
         "socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 9100)); s.listen(1); print('up', "
         "flush=True); c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        seen = in_pod(second, two[1], "python3", "-c",
                      "import socket; c = socket.create_connection(('10.16.0.100', 9100), "
                      "timeout=10); print(c.recv(64).decode())")
        assert seen.strip() == pod_ip(two[1])
    finally:
        server.kill()
        server.wait()

    # the IC databases know both AZs and a gateway each; each AZ learned the other's CIDR
    databases = ic_databases(clusters)
    zones = databases.sbctl("--bare", "--columns=name", "list", "Availability_Zone").split()
    gateways = databases.sbctl("--bare", "--columns=name", "list", "Gateway").split()
    assert sorted(zones) == ["az1", "az2"]
    assert sorted(gateways) == ["c2-node-1", "node-1"]
    assert "10.18.0.0/16" in learned(first) and "100.64.0.0/16" not in learned(first)
    assert all(ovn_ic_daemon(each).pid() for each in (first, second))

    # podnet trace shows the way out through the transit switch
    trace = explain(first, "default/registry", pod_ip(two[0]))
    assert "switch ts" in trace and "ts-az2" in trace
    web = f"default/{two[0]['metadata']['name']}"
    back = explain(LabSettings.recorded(second.state_dir) or second, web, "default/registry")
    assert "-> 10.16.0.100" in back and "ts-az1" in back

    # status covers both clusters and the IC databases
    status = status_report(clusters, with_pods=False)
    assert "cluster 2 (az2)" in status and "IC databases on 127.0.0.1" in status
    assert "gateways c2-node-1, node-1" in status

    # a second up keeps it all and the checks still pass
    assert up(clusters) == []
    assert all(c.ok for c in check_across_clusters(clusters))


@pytest.fixture
def ha_clusters(tmp_path: Path) -> Iterator[LabSettings]:
    first = lab_settings(tmp_path / "state", DEFAULT_MANIFESTS, clusters=2, ha=True)
    try:
        yield first
    finally:
        down(first)
        for each in first.all_clusters():
            assert leftovers(each) == []


def learned(settings: LabSettings) -> set[str]:
    routes = json.loads(settings.central().nbctl(
        "--format=json", "--columns=ip_prefix", "find", "Logical_Router_Static_Route",
        "external_ids:ic-learned-route!=\"\""))
    return {str(ipaddress.ip_network(row[0], strict=False)) for row in routes["data"]}


def test_with_ha_the_ic_databases_lose_their_leaders_and_the_clusters_stay_connected(
    ha_clusters: LabSettings,
) -> None:
    assert up(ha_clusters) == []
    first, second = ha_clusters.all_clusters()
    assert all(c.ok for c in Report.load(first.state_dir).connectivity)
    databases = ic_databases(ha_clusters)
    assert databases.is_clustered
    assert "127.0.0.1,127.0.0.2,127.0.0.3" in status_report(ha_clusters, with_pods=False)

    for database in (databases.nb, databases.sb):
        assert isinstance(database, RaftDatabase)
        leader = database.leader()
        assert leader is not None
        database.kill(leader)
    assert all(c.ok for c in check_across_clusters(ha_clusters))

    # a subnet made after the kills is still advertised by az2 and learned by az1
    Rest(kube.kube_client(second.kubeconfig("admin"))).create({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "later"},
        "spec": {"cidrBlock": "10.19.0.0/24", "gateway": "10.19.0.1"}})
    deadline = time.monotonic() + 90
    while "10.19.0.0/24" not in learned(first):
        assert time.monotonic() < deadline, f"not learned in 90s: {learned(first)}"
        time.sleep(0.5)
