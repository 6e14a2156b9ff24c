"""The IC controller's component (manifests/ic/) builds with kustomize into valid
Kubernetes objects that run ``podnet ic`` as podnet-config says, with RBAC for exactly
what it does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from podnet.cli import build_parser
from tests.test_manifests import KUBERNETES_VERSIONS, MANIFESTS, SKIP_KUBECTL, ident, kustomize

pytestmark = SKIP_KUBECTL


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("ic")
    relative = os.path.relpath(MANIFESTS, folder)
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative], "components": [f"{relative}/ic"],
    }))
    return {f"{ident(o)}@{o['metadata'].get('namespace', '')}": o for o in kustomize(folder)}


def test_every_object_of_the_component_validates(built: dict[str, dict[str, Any]]) -> None:
    ours = [o for o in built.values() if o["metadata"]["name"].startswith("podnet-ic")]
    assert {o["kind"] for o in ours} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                         "Role", "RoleBinding", "Deployment"}
    assert len(ours) == 8  # a Role and RoleBinding each for kube-system and the lease
    for obj in ours:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_deployment_runs_podnet_ic_with_the_databases_of_podnet_config(
    built: dict[str, dict[str, Any]],
) -> None:
    deployment = built["Deployment/podnet-ic@podnet-system"]
    # active/standby: two replicas, one leading through the lease; a rolling update
    # never has two reconciling, as the new pod stands by until the old one releases it
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "podnet-ic"
    (container,) = pod["containers"]
    assert container["command"][-1] == "podnet"
    args = build_parser().parse_args(container["args"])  # podnet ic takes exactly these
    assert (args.command, args.in_cluster, args.listen) == ("ic", True, ("0.0.0.0", 9478))
    assert (args.leader_elect, args.lease_namespace, args.lease_name) == (
        True, deployment["metadata"]["namespace"], "podnet-ic")
    assert args.lease_identity == "$(POD_NAME)"
    sources = {e["name"]: e["valueFrom"] for e in container["env"]}
    assert sources.pop("POD_NAME") == {"fieldRef": {"fieldPath": "metadata.name"}}
    keys = {name: source["configMapKeyRef"]["key"] for name, source in sources.items()}
    assert keys == {"PODNET_OVN_NB": "ovn-nb", "PODNET_OVN_SB": "ovn-sb"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(args.state_dir) in mounts


def test_the_ic_rbac_reads_its_inputs_and_writes_only_node_labels_events_and_its_lease(
    built: dict[str, dict[str, Any]],
) -> None:
    cluster = built["ClusterRole/podnet-ic@"]["rules"]
    namespaced = built["Role/podnet-ic@kube-system"]["rules"]
    leader = built["Role/podnet-ic-leader@podnet-system"]["rules"]
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    written = {r for rule in cluster + namespaced if writes & set(rule["verbs"])
               for r in rule["resources"]}
    assert written == {"nodes", "events"}
    assert namespaced == [{"apiGroups": [""], "resources": ["configmaps"],
                           "verbs": ["list", "watch"]}]
    assert leader == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["podnet-ic"], "verbs": ["get", "update"]}]
    binding = built["RoleBinding/podnet-ic-leader@podnet-system"]
    assert binding["roleRef"]["name"] == "podnet-ic-leader"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "podnet-ic",
                                    "namespace": "podnet-system"}]
    lines = (MANIFESTS / "ic" / "rbac.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            assert lines[index - 1].startswith("# "), f"rbac.yaml:{index + 1}"


def test_the_component_folder_is_not_part_of_the_base(tmp_path: Path) -> None:
    base = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert not any(str(r).startswith("ic/") for r in base["resources"])
