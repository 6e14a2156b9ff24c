"""kubectl against the lab's API server: discovery finds every resource (short names,
the ``all`` category) and ``kubectl get`` prints the server's Tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube_api import KubeApi
from tests.kubectl import KUBECTL, MODERN, kubectl_ok

pytestmark = pytest.mark.skipif(KUBECTL is None or not MODERN,
                                reason="needs kubectl 1.27 or later")


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi(defaults=True) as server:
        pod = server.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "web", "namespace": "shop"}, "spec": {
                "nodeName": "node-1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.16.0.7",
                       "podIPs": [{"ip": "10.16.0.7"}],
                       "containerStatuses": [{"name": "a", "ready": True, "restartCount": 2},
                                             {"name": "b", "ready": False}]}}, "shop")
        server.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                       "metadata": {"name": "blue"},
                       "spec": {"cidrBlock": "10.70.0.0/24", "natOutgoing": True},
                       "status": {"v4usingIPs": 3, "v4availableIPs": 250, "v6usingIPs": 0,
                                  "v6availableIPs": 0}})
        server.create({"apiVersion": "v1", "kind": "Event",
                       "metadata": {"name": "web.1", "namespace": "shop"},
                       "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web",
                                          "uid": pod["metadata"]["uid"]},
                       "reason": "AnnotationsIgnored", "type": "Warning",
                       "message": "podnet keeps what its IPAM holds"}, "shop")
        server.create({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "front", "namespace": "shop"},
                       "spec": {"replicas": 3}, "status": {"readyReplicas": 2}}, "shop")
        server.create({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": "node-1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        yield server


def kubectl(api: KubeApi, cache: Path, *args: str) -> str:
    return kubectl_ok(api.url, cache, *args)


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
    assert lines[0].split()[-5:] == ["V4USED", "V4AVAILABLE", "V6USED", "V6AVAILABLE", "AGE"]
    assert lines[1].split()[:4] == ["blue", "ovn", "IPv4", "10.70.0.0/24"]
    assert lines[1].split()[-5:-1] == ["3", "250", "0", "0"]
    assert kubectl(api, tmp_path, "get", "subnets/blue", "-o",
                   "jsonpath={.spec.cidrBlock}") == "10.70.0.0/24"
    assert "web" in kubectl(api, tmp_path, "get", "all", "-n", "shop")


def test_events_workloads_and_nodes_print_as_kubectl_prints_them(
    api: KubeApi, tmp_path: Path
) -> None:
    events = kubectl(api, tmp_path, "get", "events", "-n", "shop").splitlines()
    assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert events[1].split()[1:4] == ["Warning", "AnnotationsIgnored", "pod/web"]
    deploy = kubectl(api, tmp_path, "get", "deploy", "-n", "shop").splitlines()
    assert deploy[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deploy[1].split()[:2] == ["front", "2/3"]
    nodes = kubectl(api, tmp_path, "get", "no").splitlines()
    assert nodes[1].split()[:3] == ["node-1", "Ready", "control-plane"]
    described = kubectl(api, tmp_path, "describe", "pod", "web", "-n", "shop")
    assert "AnnotationsIgnored" in described and "podnet keeps what its IPAM holds" in described
