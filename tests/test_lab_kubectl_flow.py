"""A Kubernetes user's session with the real kubectl against ``podnet up``: discovery,
``explain``, a server dry run, apply, rollout, wait, describe, an unchanged re-apply,
scale, EndpointSlices, a refused edit of a podnet-owned annotation, ``podnet exec``, a
static IP refused at ``kubectl apply``, and deletes that wait and cascade."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipam import annotations as keys
from podnet.lab import LabSettings, up
from podnet.lab.rest import Rest
from podnet.lab.up import check_connectivity
from podnet_plumbing import kube
from tests.kubectl import KUBECTL, MODERN, run_kubectl
from tests.lab_fixtures import lab_settings, removed_after

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(KUBECTL is None or not MODERN,
                                 reason="needs kubectl 1.27 or later")]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"""


class Kubectl:
    """kubectl with the lab admin's kubeconfig, as ``podnet up`` tells users to use it."""

    def __init__(self, lab: LabSettings, cache: Path) -> None:
        self.kubeconfig, self.cache = lab.kubeconfig("admin"), cache

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_kubectl("", self.cache, *args, stdin=stdin, kubeconfig=self.kubeconfig)

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> dict[str, object]:
        found: dict[str, object] = json.loads(self(*args, "-o", "json"))
        return found


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabSettings]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for name in ("00-namespaces.yaml", "10-subnets.yaml"):
        shutil.copy(EXAMPLES / name, manifests / name)
    with removed_after(lab_settings(tmp_path / "state", manifests)) as settings:
        assert up(settings) == []
        yield settings


def pods_of(kubectl: Kubectl) -> list[dict[str, object]]:
    items = kubectl.json("get", "pods", "-n", "shop", "-l", "app=web")["items"]
    assert isinstance(items, list)
    return items


def ip_of(pod: dict[str, object]) -> str:
    status = pod["status"]
    assert isinstance(status, dict)
    return str(status["podIP"])


def name_of(pod: dict[str, object]) -> str:
    metadata = pod["metadata"]
    assert isinstance(metadata, dict)
    return str(metadata["name"])


def until(check: object, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not callable(check) or not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_a_kubectl_user_deploys_scales_reaches_and_deletes_an_application(
    lab: LabSettings, tmp_path: Path
) -> None:
    kubectl = Kubectl(lab, tmp_path / "cache")
    resources = kubectl("api-resources", "--no-headers")
    assert "subnets" in resources and "endpointslices" in resources
    assert "10.66.0.0/16" in kubectl("get", "subnets")
    assert "FIELD: cidrBlock <string>" in kubectl("explain", "subnet.spec.cidrBlock")

    assert "(server dry run)" in kubectl("apply", "--dry-run=server", "-f", "-", stdin=WEB)
    assert kubectl.json("get", "deploy", "-n", "shop")["items"] == []
    assert "deployment.apps/web created" in kubectl("apply", "-f", "-", stdin=WEB)
    assert "successfully rolled out" in kubectl(
        "rollout", "status", "-n", "shop", "deploy/web", "--timeout=120s")
    kubectl("wait", "-n", "shop", "--for=condition=Ready", "pod", "-l", "app=web",
            "--timeout=120s")
    first, second = pods_of(kubectl)
    wide = kubectl("get", "pods", "-A", "-o", "wide")
    assert wide.splitlines()[0].split()[-2:] == ["IP", "NODE"]
    assert ip_of(first) in wide and ip_of(second) in wide
    described = kubectl("describe", "pod", "-n", "shop", name_of(first))
    assert ip_of(first) in described and "Running" in described
    again = kubectl("apply", "-f", "-", stdin=WEB)
    assert "deployment.apps/web unchanged" in again and "service/web unchanged" in again

    assert "scaled" in kubectl("scale", "-n", "shop", "deploy/web", "--replicas=3")
    kubectl("rollout", "status", "-n", "shop", "deploy/web", "--timeout=120s")
    assert len(pods_of(kubectl)) == 3

    def three_endpoints() -> bool:
        slices = kubectl.json("get", "endpointslices", "-n", "shop",
                              "-l", "kubernetes.io/service-name=web")["items"]
        assert isinstance(slices, list)
        return sum(len(s.get("endpoints") or []) for s in slices) == 3

    until(three_endpoints, "the Service's EndpointSlices never listed the 3 pods")
    until(lambda: kubectl("get", "subnet", "shop", "-o",
                          "jsonpath={.status.v4usingIPs}") == "3",
          "the Subnet's status never counted the 3 pods")

    edit = kubectl.run("annotate", "pod", "-n", "shop", name_of(first), "--overwrite",
                       f"{keys.IP_ADDRESS}={ip_of(second)}")
    assert edit.returncode != 0 and keys.IP_ADDRESS in edit.stderr
    ping = subprocess.run(
        [sys.executable, "-m", "podnet.cli", "exec", "--state-dir", str(lab.state_dir),
         f"shop/{name_of(first)}", "--", "ping", "-c1", "-W5", ip_of(second)],
        capture_output=True, text=True, timeout=60, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    taken = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: copycat\n  namespace: shop\n"
             f"  annotations: {{{keys.IP_ADDRESS}: {ip_of(second)}}}\n"
             "spec: {containers: [{name: c, image: busybox}]}\n")
    refused = kubectl.run("apply", "-f", "-", stdin=taken)
    assert refused.returncode != 0
    assert f"{ip_of(second)} is already used by pod shop/{name_of(second)}" in refused.stderr

    kubectl("delete", "-n", "shop", "deploy/web", "--wait", "--timeout=120s")
    kubectl("wait", "-n", "shop", "--for=delete", "pod", "-l", "app=web", "--timeout=120s")
    kubectl("delete", "--ignore-not-found", "--wait", "-f", "-", stdin=WEB)
    assert kubectl("get", "all", "-n", "shop", "--no-headers").strip() == ""


@pytest.fixture
def bare_lab(tmp_path: Path) -> Iterator[LabSettings]:
    """A lab that ``podnet up`` started with nothing to apply."""
    manifests = tmp_path / "nothing"
    manifests.mkdir()
    with removed_after(lab_settings(tmp_path / "state", manifests)) as settings:
        assert up(settings) == []
        yield settings


def test_the_examples_applied_with_kubectl_behave_as_when_podnet_up_applies_them(
    bare_lab: LabSettings, tmp_path: Path
) -> None:
    kubectl = Kubectl(bare_lab, tmp_path / "cache")
    # Subnets first, then what uses them, as ``podnet up`` applies in phases: a pod that
    # names a subnet the sync worker has not registered yet is refused ("subnet edge
    # does not exist"), so one ``kubectl apply`` of the whole folder can lose a pod.
    network = [str(EXAMPLES / name) for name in ("00-namespaces.yaml", "10-subnets.yaml")]
    assert "subnet.kubeovn.io/shop created" in kubectl("apply", *(
        arg for path in network for arg in ("-f", path)))

    def registered() -> bool:
        subnets = kubectl.json("get", "subnets")["items"]
        assert isinstance(subnets, list)
        return all("v4availableIPs" in (s.get("status") or {}) for s in subnets)

    until(registered, "the sync worker never registered the subnets")
    kubectl("apply", "-f", str(EXAMPLES))
    workloads = kubectl("get", "deployments,statefulsets", "-A", "-o", "jsonpath="
                        "{range .items[*]}{.kind}/{.metadata.name} {.metadata.namespace}\n{end}")
    for line in workloads.splitlines():
        workload, namespace = line.split()
        kubectl("rollout", "status", "-n", namespace, workload.lower(), "--timeout=180s")
    rest = Rest(kube.kube_client(bare_lab.kubeconfig("admin")))
    results = check_connectivity(bare_lab, rest)
    assert results and [r for r in results if not r.ok] == []
