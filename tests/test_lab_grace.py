"""Graceful deletion through the whole of ``podnet up``: a pod being deleted keeps its
OVN port and carries traffic through its grace period (its preStop hook runs), and loses
the port only once the pod object is gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.lab import LabSettings, up
from podnet.lab.checks import CHECK_PORT, Check, Listener, pod_host, run_checks
from podnet.lab.kubelet import sandbox_name
from podnet.lab.objects import metadata
from podnet.lab.rest import Rest
from podnet.lab.up import central_of
from podnet_plumbing import kube
from tests.lab_fixtures import lab_settings, removed_after

pytestmark = pytest.mark.slow
GRACE_S = 12
MANIFESTS = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: default}}
spec:
  containers: [{{name: app, image: busybox}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: server, namespace: default}}
spec:
  terminationGracePeriodSeconds: {GRACE_S}
  containers:
  - name: app
    image: nginx
    lifecycle: {{preStop: {{exec: {{command: [sleep, "{GRACE_S}"]}}}}}}
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabSettings]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "pods.yaml").write_text(MANIFESTS)
    with removed_after(lab_settings(tmp_path / "state", manifests)) as settings:
        yield settings


def pod_ports(lab: LabSettings) -> set[str]:
    return set(central_of(lab).nbctl("--bare", "--columns=name", "find", "Logical_Switch_Port",
                                     'external_ids:"podnet.io/kind"=pod').split())


def test_a_pod_in_its_grace_period_keeps_its_port_and_answers_until_it_is_gone(
    lab: LabSettings,
) -> None:
    assert up(lab) == []
    rest = Rest(kube.kube_client(lab.kubeconfig("admin")))
    hosts = {str(metadata(p)["name"]): pod_host(p, lambda q: sandbox_name(lab.prefix, q))
             for p in rest.list("Pod", "default")}
    client, server = hosts["client"], hosts["server"]
    assert client is not None and server is not None
    check = Check("grace", client, server.ip, CHECK_PORT, "server", (Listener(server, CHECK_PORT),))

    deleted_at = time.monotonic()
    rest.delete("Pod", "server", "default")
    terminating = rest.get("Pod", "server", "default")
    assert terminating is not None and metadata(terminating).get("deletionTimestamp")
    (result,) = asyncio.run(run_checks([check]))
    assert result.ok, result.detail  # in-flight traffic still flows
    assert "server.default" in pod_ports(lab)
    assert time.monotonic() - deleted_at < GRACE_S  # all of it seen inside the grace period

    deadline = time.monotonic() + GRACE_S + 30
    while rest.get("Pod", "server", "default") is not None:
        assert time.monotonic() < deadline, "the kubelet did not remove the pod"
        time.sleep(0.5)
    assert time.monotonic() - deleted_at >= GRACE_S - 1  # its preStop ran the grace out
    while "server.default" in pod_ports(lab):
        assert time.monotonic() < deadline, "the sync worker kept the port of a gone pod"
        time.sleep(0.2)
    assert "client.default" in pod_ports(lab)
