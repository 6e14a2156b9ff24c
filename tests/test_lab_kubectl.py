"""kubectl against the lab's API server: discovery finds every resource (short names,
the ``all`` category) and ``kubectl get`` prints the server's Tables."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube_api import KubeApi

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="needs kubectl")


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi(defaults=True) as server:
        server.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "web", "namespace": "shop"}, "spec": {
                "nodeName": "node-1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.16.0.7",
                       "podIPs": [{"ip": "10.16.0.7"}],
                       "containerStatuses": [{"name": "a", "ready": True, "restartCount": 2},
                                             {"name": "b", "ready": False}]}}, "shop")
        server.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                       "metadata": {"name": "blue"},
                       "spec": {"cidrBlock": "10.70.0.0/24", "natOutgoing": True}})
        yield server


def kubectl(api: KubeApi, cache: Path, *args: str) -> str:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, f"--server={api.url}", "--token=podnet-lab:admin",
         f"--cache-dir={cache}", *args],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_api_resources_lists_every_served_kind_with_its_short_names(
    api: KubeApi, tmp_path: Path
) -> None:
    listed = kubectl(api, tmp_path, "api-resources", "--no-headers")
    rows = {line.split()[0]: line.split() for line in listed.splitlines()}
    assert {"pods", "statefulsets", "subnets", "ippools", "endpointslices"} <= set(rows)
    assert "po" in rows["pods"] and "sts" in rows["statefulsets"]
    assert "subnet" in rows["subnets"]


def test_get_pods_prints_the_columns_kubectl_users_know(api: KubeApi, tmp_path: Path) -> None:
    lines = kubectl(api, tmp_path, "get", "po", "-A").splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].split()[:5] == ["shop", "web", "1/2", "Running", "2"]
    wide = kubectl(api, tmp_path, "get", "pods", "-n", "shop", "-o", "wide").splitlines()
    assert wide[0].split()[-2:] == ["IP", "NODE"]
    assert wide[1].split()[-2:] == ["10.16.0.7", "node-1"]


def test_get_subnets_and_jsonpath_work_on_custom_resources(api: KubeApi, tmp_path: Path) -> None:
    lines = kubectl(api, tmp_path, "get", "subnet").splitlines()
    assert lines[0].split()[:5] == ["NAME", "PROVIDER", "PROTOCOL", "CIDR", "PRIVATE"]
    assert lines[1].split()[:4] == ["blue", "ovn", "IPv4", "10.70.0.0/24"]
    assert kubectl(api, tmp_path, "get", "subnets/blue", "-o",
                   "jsonpath={.spec.cidrBlock}") == "10.70.0.0/24"
    assert "web" in kubectl(api, tmp_path, "get", "all", "-n", "shop")
