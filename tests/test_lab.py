"""``podnet up`` / ``status`` / ``down`` on this machine, with real processes.

``tests/test_lab_up.py`` checks the pods ``up`` makes; this file the lab's promises as a
whole: it runs, it reports bad manifests, it is safe to run twice, and ``down`` leaves
nothing behind."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from podnet.daemons import pid_alive
from podnet.lab import DEFAULT_MANIFESTS, LabSettings, _processes, down, status_report, up
from tests.lab_fixtures import lab_settings, leftovers


@pytest.fixture
def lab(tmp_path: Path) -> LabSettings:
    manifests = tmp_path / "manifests"
    shutil.copytree(DEFAULT_MANIFESTS, manifests)
    (manifests / "90-broken.yaml").write_text(
        "apiVersion: kubeovn.io/v1\nkind: Subnet\nmetadata: {name: broken}\n"
        "spec: {cidrBlock: 10.99.0.0/33}\n"
    )
    return lab_settings(tmp_path / "state", manifests)


@pytest.mark.slow
def test_up_runs_podnet_reports_bad_manifests_and_down_leaves_nothing(lab: LabSettings) -> None:
    try:
        problems = up(lab)
        assert [str(p) for p in problems] == [
            f"{lab.manifests[0] / '90-broken.yaml'}: Subnet broken: "
            'admission webhook "subnets.podnet.io" denied the request: '
            "spec.cidrBlock 10.99.0.0/33: is not a valid CIDR"
        ]
        with urllib.request.urlopen(f"http://{lab.ipam_listen}/api/v1/subnets") as response:
            names = [subnet["name"] for subnet in json.load(response)]
        assert names == ["edge", "join", "ovn-default", "shop", "tools"]
        pids = {name: process.pid() for name, process in _processes(lab).items()}
        assert all(pids.values())

        up(lab)  # a second up keeps what runs
        assert {name: p.pid() for name, p in _processes(lab).items()} == pids
        assert "shop" in status_report(lab)
    finally:
        down(lab)
    assert not any(pid_alive(pid) for pid in pids.values() if pid)
    assert not lab.state_dir.exists()
    assert leftovers(lab) == []


async def test_a_subnet_overlapping_the_built_in_default_is_a_problem_not_a_crash(
    ipam: object, tmp_path: Path
) -> None:
    from ipam.store import Ipam
    from podnet.manifests import read_manifests, register_ipam_objects

    assert isinstance(ipam, Ipam)
    (tmp_path / "s.yaml").write_text(
        "apiVersion: kubeovn.io/v1\nkind: Subnet\nmetadata: {name: wide}\n"
        "spec: {cidrBlock: 10.0.0.0/8}\n"
    )
    manifests, _ = read_manifests([tmp_path])
    outcome = await register_ipam_objects(ipam, manifests, ensure_default=True)
    assert outcome.registered == ["subnet wide (10.0.0.0/8)"]
    assert "overlaps subnet wide" in str(outcome.problems[0])


def test_a_manifest_with_a_duplicate_key_is_a_problem_not_a_merged_object(
    tmp_path: Path,
) -> None:
    from podnet.manifests import read_manifests

    (tmp_path / "twice.yaml").write_text(
        "apiVersion: kubeovn.io/v1\nkind: Subnet\nkind: IPPool\nmetadata: {name: x}\n"
    )
    manifests, problems = read_manifests([tmp_path])
    assert manifests == []
    assert "duplicate key 'kind'" in str(problems[0])
