"""A node's datapath dies under ``podnet up``: its pods get their connectivity back with
nobody's help, and ``podnet status`` says what happened.

OVS 3.1's userspace conntrack can abort ovs-vswitchd (docs/datapath-crash.md). The lab's
keeper must bring vswitchd back on the datapath it left, so the pods' ports, same node and
across nodes, carry traffic again without a new ``podnet up``."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.lab import LabSettings, status_report, up
from podnet.lab.checks import CHECK_PORT, Check, Host, Listener, pod_host, run_checks
from podnet.lab.kubelet import sandbox_name
from podnet.lab.nodes import lab_nodes
from podnet.lab.objects import metadata
from podnet.lab.rest import Rest
from podnet.lab.up import central_of
from podnet_plumbing import kube
from tests.lab_fixtures import lab_settings, removed_after

pytestmark = pytest.mark.slow
RECOVERY_S = 30.0
MANIFESTS = """\
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec: {nodeName: node-1, containers: [{name: app, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: neighbour, namespace: default}
spec: {nodeName: node-1, containers: [{name: app, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: remote, namespace: default}
spec: {nodeName: node-2, containers: [{name: app, image: nginx}]}
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabSettings]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "pods.yaml").write_text(MANIFESTS)
    with removed_after(lab_settings(tmp_path / "state", manifests)) as settings:
        yield settings


def pod_hosts(lab: LabSettings) -> dict[str, Host]:
    rest = Rest(kube.kube_client(lab.kubeconfig("admin")))
    hosts = {}
    for pod in rest.list("Pod", "default"):
        host = pod_host(pod, lambda p: sandbox_name(lab.prefix, p))
        assert host is not None, f"pod {metadata(pod)['name']} has no sandbox"
        hosts[str(metadata(pod)["name"])] = host
    return hosts


def checks_from(client: Host, *servers: Host) -> list[Check]:
    return [Check(f"to {server.label}", client, server.ip, CHECK_PORT, server.label,
                  (Listener(server, CHECK_PORT),)) for server in servers]


def failing(checks: list[Check]) -> list[str]:
    return [f"{r.kind}: {r.detail}" for r in asyncio.run(run_checks(checks)) if not r.ok]


def test_pods_on_a_node_whose_vswitchd_was_killed_talk_again_and_status_says_so(
    lab: LabSettings,
) -> None:
    assert up(lab) == []
    hosts = pod_hosts(lab)
    checks = checks_from(hosts["client"], hosts["neighbour"], hosts["remote"])
    assert failing(checks) == []
    node = lab_nodes(lab)[0].ovs(central_of(lab))
    killed = node.vswitchd.pid()
    assert killed is not None

    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + RECOVERY_S
    while (problems := failing(checks)) or node.vswitchd.pid() in (None, killed):
        assert time.monotonic() < deadline, f"no connectivity after {RECOVERY_S}s: {problems}"
        time.sleep(0.5)

    status = status_report(lab, with_pods=False)
    line = next(text for text in status.splitlines() if text.startswith("node-1/datapath"))
    assert "vswitchd restarted once" in line and "SIGKILL" in line, line
    assert f"now pid {node.vswitchd.pid()}" in line, line
    assert "never restarted" in next(
        text for text in status.splitlines() if text.startswith("node-2/datapath"))
