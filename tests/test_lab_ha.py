"""``podnet up --ha``: OVN central on raft (three NB, three SB, two northd) and Redis
under Sentinel; a pod created after the Redis primary, the NB leader, the SB leader and
the active northd were killed still gets its address, its port, its flows and traffic."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.lab import LabSettings, up
from podnet.lab.checks import CHECK_PORT, Check, Listener, pod_host, run_checks
from podnet.lab.kubelet import sandbox_name
from podnet.lab.objects import pod_ready
from podnet.lab.rest import Rest, RestError
from podnet.lab.up import status_report
from podnet.ovn_raft import RaftCentral
from podnet_plumbing import kube
from tests.lab_fixtures import lab_settings, removed_after

pytestmark = pytest.mark.slow
POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  containers: [{{name: app, image: busybox}}]
"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabSettings]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "pods.yaml").write_text(POD.format(name="before"))
    with removed_after(lab_settings(tmp_path / "state", manifests, ha=True)) as settings:
        assert up(settings) == []
        yield settings


def admitted_after(rest: Rest, deadline: float) -> list[str]:
    """Create the pod ``after``, again while admission refuses it (as a controller
    retries); the refusals."""
    refusals: list[str] = []
    while True:
        try:
            rest.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": "after", "namespace": "default"}, "spec": {"containers": [
                    {"name": "app", "image": "busybox"}]}})
            return refusals
        except RestError as exc:
            refusals.append(str(exc))
        assert time.monotonic() < deadline, f"never admitted: {refusals[-1:]}"
        time.sleep(0.5)


def test_a_pod_made_after_the_primary_and_the_leaders_died_is_served_by_their_successors(
    lab: LabSettings,
) -> None:
    central = lab.central()
    assert isinstance(central, RaftCentral)
    roles = central.roles()
    assert sorted(roles[m.daemon.name] for m in central.nb.members) == [
        "follower", "follower", "leader"]
    assert sorted(roles[d.name] for d in central.northds) == ["active", "standby"]
    status = status_report(lab, with_pods=False)
    assert "(leader)" in status and "(primary)" in status and "(sentinel)" in status

    primary = lab.redis_group.primary_process()
    pid = primary.pid() if primary is not None else None
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    active = central.active_northd()
    assert active is not None
    active.stop()
    for db in (central.nb, central.sb):
        leader = db.leader()
        assert leader is not None
        db.kill(leader)

    rest = Rest(kube.kube_client(lab.kubeconfig("admin")))
    began, deadline = time.monotonic(), time.monotonic() + 90
    refusals = admitted_after(rest, deadline)
    while not pod_ready(rest.get("Pod", "after", "default") or {}):
        assert time.monotonic() < deadline, "the pod never became ready"
        time.sleep(0.5)
    print(f"ready {time.monotonic() - began:.1f} s after the kills; admission refused "
          f"{len(refusals)} times on the way: {refusals[-1:]}")
    hosts = {name: pod_host(rest.get("Pod", name, "default") or {},
                            lambda p: sandbox_name(lab.prefix, p)) for name in ("before", "after")}
    before, after = hosts["before"], hosts["after"]
    assert before is not None and after is not None
    check = Check("raft", before, after.ip, CHECK_PORT, "after", (Listener(after, CHECK_PORT),))
    (result,) = asyncio.run(run_checks([check]))
    assert result.ok, result.detail
