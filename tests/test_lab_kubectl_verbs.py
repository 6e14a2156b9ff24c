"""kubectl's everyday verbs against the lab's API server: validation and ``explain`` from
the served OpenAPI, dry runs, server-side apply, ``scale`` and cascading deletes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube_api import KubeApi
from tests.kubectl import KUBECTL, MODERN, kubectl_ok, run_kubectl

pytestmark = pytest.mark.skipif(KUBECTL is None or not MODERN,
                                reason="needs kubectl 1.27 or later")
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{containerPort: 80, name: http}]}]
"""


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi(defaults=True) as server:
        yield server


def test_explain_reads_the_subnet_crd_and_the_built_in_schemas(
    api: KubeApi, tmp_path: Path
) -> None:
    subnet = kubectl_ok(api.url, tmp_path, "explain", "subnet.spec.cidrBlock")
    assert "KIND:       Subnet" in subnet and "FIELD: cidrBlock <string>" in subnet
    ports = kubectl_ok(api.url, tmp_path, "explain", "pods.spec.containers.ports")
    assert "containerPort\t<integer> -required-" in ports


def test_an_unknown_field_is_refused_by_strict_validation_and_dropped_with_a_warning(
    api: KubeApi, tmp_path: Path
) -> None:
    typo = DEPLOYMENT.replace("image: nginx,", "image: nginx, colour: blue,")
    refused = run_kubectl(api.url, tmp_path, "apply", "-f", "-", stdin=typo)
    assert refused.returncode != 0
    assert 'unknown field "spec.template.spec.containers[0].colour"' in refused.stderr
    warned = run_kubectl(api.url, tmp_path, "apply", "--validate=warn", "-f", "-", stdin=typo)
    assert warned.returncode == 0, warned.stderr
    assert 'Warning: unknown field "spec.template.spec.containers[0].colour"' in warned.stderr
    stored = api.get("Deployment", "web", "shop")["spec"]["template"]["spec"]["containers"]
    assert "colour" not in stored[0]


def test_a_custom_resource_loses_the_fields_its_crd_does_not_declare(
    api: KubeApi, tmp_path: Path
) -> None:
    subnet = "apiVersion: kubeovn.io/v1\nkind: Subnet\nmetadata: {name: blue}\n" \
        "spec: {cidrBlock: 10.70.0.0/24, shade: navy}\n"
    result = run_kubectl(api.url, tmp_path, "apply", "--validate=warn", "-f", "-",
                         stdin=subnet)
    assert result.returncode == 0 and 'unknown field "spec.shade"' in result.stderr
    assert api.get("Subnet", "blue")["spec"] == {"cidrBlock": "10.70.0.0/24"}


def test_a_server_dry_run_stores_nothing_and_a_second_apply_changes_nothing(
    api: KubeApi, tmp_path: Path
) -> None:
    dry = kubectl_ok(api.url, tmp_path, "apply", "--dry-run=server", "-f", "-",
                     stdin=DEPLOYMENT)
    assert "created (server dry run)" in dry and api.objects("Deployment") == []
    assert "created" in kubectl_ok(api.url, tmp_path, "apply", "-f", "-", stdin=DEPLOYMENT)
    before = api.get("Deployment", "web", "shop")["metadata"]["resourceVersion"]
    again = kubectl_ok(api.url, tmp_path, "apply", "-f", "-", stdin=DEPLOYMENT)
    assert "deployment.apps/web unchanged" in again
    assert api.get("Deployment", "web", "shop")["metadata"]["resourceVersion"] == before


def test_server_side_apply_creates_then_merges_containers_by_name(
    api: KubeApi, tmp_path: Path
) -> None:
    created = kubectl_ok(api.url, tmp_path, "apply", "--server-side", "-f", "-",
                         stdin=DEPLOYMENT)
    assert "deployment.apps/web serverside-applied" in created
    sidecar = DEPLOYMENT.replace("replicas: 2", "replicas: 4").replace(
        "containers: [{name: web, image: nginx, ports: [{containerPort: 80, name: http}]}]",
        "containers: [{name: web, image: nginx:2}]")
    kubectl_ok(api.url, tmp_path, "apply", "--server-side", "-f", "-", stdin=sidecar)
    spec = api.get("Deployment", "web", "shop")["spec"]
    assert spec["replicas"] == 4
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == "nginx:2" and container["ports"][0]["containerPort"] == 80


def test_scale_writes_the_replicas_through_the_scale_subresource(
    api: KubeApi, tmp_path: Path
) -> None:
    kubectl_ok(api.url, tmp_path, "apply", "-f", "-", stdin=DEPLOYMENT)
    assert "scaled" in kubectl_ok(api.url, tmp_path, "scale", "-n", "shop", "deploy/web",
                                  "--replicas=5")
    deployment = api.get("Deployment", "web", "shop")
    assert deployment["spec"]["replicas"] == 5 and deployment["metadata"]["generation"] == 2
    refused = run_kubectl(api.url, tmp_path, "scale", "-n", "shop", "deploy/web",
                          "--replicas=3", "--current-replicas=4")
    assert refused.returncode != 0 and api.get("Deployment", "web", "shop")["spec"][
        "replicas"] == 5


def owned_by(api: KubeApi, owner: dict[str, object]) -> dict[str, object]:
    metadata = owner["metadata"]
    assert isinstance(metadata, dict)
    return api.create({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
        "name": "web-1", "namespace": "shop", "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
            "uid": metadata["uid"], "controller": True}]},
        "spec": {"selector": {"matchLabels": {"app": "web"}}}}, "shop")


def test_an_orphaning_delete_keeps_the_dependents_without_their_owner(
    api: KubeApi, tmp_path: Path
) -> None:
    kubectl_ok(api.url, tmp_path, "apply", "-f", "-", stdin=DEPLOYMENT)
    owned_by(api, api.get("Deployment", "web", "shop"))
    kubectl_ok(api.url, tmp_path, "delete", "-n", "shop", "deploy/web", "--cascade=orphan")
    assert api.objects("Deployment") == []
    (left,) = api.objects("ReplicaSet")
    assert "ownerReferences" not in left["metadata"]


def test_a_foreground_delete_holds_the_owner_until_its_dependents_are_gone(
    api: KubeApi, tmp_path: Path
) -> None:
    kubectl_ok(api.url, tmp_path, "apply", "-f", "-", stdin=DEPLOYMENT)
    owned_by(api, api.get("Deployment", "web", "shop"))
    kubectl_ok(api.url, tmp_path, "delete", "-n", "shop", "deploy/web",
               "--cascade=foreground", "--wait=false")
    held = api.get("Deployment", "web", "shop")["metadata"]
    assert held["finalizers"] == ["foregroundDeletion"] and held["deletionTimestamp"]
    api.delete("ReplicaSet", "web-1", "shop")  # what the garbage collector does
    api.patch("Deployment", "web", {"metadata": {"finalizers": []}}, "shop")
    assert api.objects("Deployment") == []


def test_a_status_is_written_only_through_the_status_subresource(
    api: KubeApi, tmp_path: Path
) -> None:
    api.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "blue"},
                "spec": {"cidrBlock": "10.70.0.0/24"}, "status": {"v4usingIPs": 1}})
    kubectl_ok(api.url, tmp_path, "patch", "subnet", "blue", "--type=merge",
               "-p", '{"status": {"v4usingIPs": 9}}')
    assert api.get("Subnet", "blue")["status"] == {"v4usingIPs": 1}
    kubectl_ok(api.url, tmp_path, "patch", "subnet", "blue", "--type=merge",
               "--subresource=status", "-p", '{"status": {"v4usingIPs": 9}}')
    assert api.get("Subnet", "blue")["status"] == {"v4usingIPs": 9}


def test_get_watch_prints_each_change_as_a_row(api: KubeApi, tmp_path: Path) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "shop"},
           "spec": {"containers": [{"name": "c"}]}}
    api.create(pod, "shop")
    watching = subprocess.Popen(
        [str(KUBECTL), f"--server={api.url}", "--token=podnet-lab:admin",
         f"--cache-dir={tmp_path}", "get", "pods", "-n", "shop", "--watch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watching.stdout is not None
    try:
        header, first = watching.stdout.readline(), watching.stdout.readline()
        api.patch("Pod", "a", {"status": {"phase": "Running"}}, "shop")
        second = watching.stdout.readline()  # kubectl prints each change as it comes
    finally:
        watching.kill()
        watching.communicate(timeout=10)
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert first.split()[2] == "Pending" and second.split()[2] == "Running"


ADMIN_POLICY = """\
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: cluster-control}
spec:
  priority: 20
  subject: {namespaces: {}}
  ingress:
  - name: allow-monitoring
    action: Allow
    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
  - name: pass-the-rest-to-namespaces
    action: Pass
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}]
    ports: [{portNumber: {protocol: TCP, port: 80}}, {namedPort: http},
            {portRange: {protocol: UDP, start: 5000, end: 5100}}]
  egress:
  - {name: deny-metadata, action: Deny, to: [{networks: [169.254.169.254/32]}]}
"""


def test_an_admin_network_policy_is_stored_whole_and_explained_from_its_crd(
    api: KubeApi, tmp_path: Path
) -> None:
    kubectl_ok(api.url, tmp_path, "apply", "-f", "-", stdin=ADMIN_POLICY)
    stored = api.get("AdminNetworkPolicy", "cluster-control")["spec"]
    assert stored["ingress"][1]["ports"][2]["portRange"]["end"] == 5100
    assert stored["egress"][0]["to"] == [{"networks": ["169.254.169.254/32"]}]
    assert "priority" in kubectl_ok(api.url, tmp_path, "explain", "anp.spec.priority")
    header, row = kubectl_ok(api.url, tmp_path, "get", "anp").splitlines()
    assert header.split() == ["NAME", "PRIORITY", "AGE"]  # the CRD's printer columns
    assert row.split()[:2] == ["cluster-control", "20"]
