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
    ours = [o for o in built.values() if o["metadata"]["name"] == "podnet-ic"]
    assert {o["kind"] for o in ours} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                         "Role", "RoleBinding", "Deployment"}
    for obj in ours:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_deployment_runs_podnet_ic_with_the_databases_of_podnet_config(
    built: dict[str, dict[str, Any]],
) -> None:
    deployment = built["Deployment/podnet-ic@podnet-system"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "podnet-ic"
    (container,) = pod["containers"]
    assert container["command"][-1] == "podnet"
    args = build_parser().parse_args(container["args"])  # podnet ic takes exactly these
    assert (args.command, args.in_cluster, args.listen) == ("ic", True, ("0.0.0.0", 9478))
    keys = {e["name"]: e["valueFrom"]["configMapKeyRef"]["key"] for e in container["env"]}
    assert keys == {"PODNET_OVN_NB": "ovn-nb", "PODNET_OVN_SB": "ovn-sb"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(args.state_dir) in mounts


def test_the_ic_rbac_reads_its_inputs_and_writes_only_node_labels_and_events(
    built: dict[str, dict[str, Any]],
) -> None:
    cluster = built["ClusterRole/podnet-ic@"]["rules"]
    namespaced = built["Role/podnet-ic@kube-system"]["rules"]
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    written = {r for rule in cluster + namespaced if writes & set(rule["verbs"])
               for r in rule["resources"]}
    assert written == {"nodes", "events"}
    assert namespaced == [{"apiGroups": [""], "resources": ["configmaps"],
                           "verbs": ["list", "watch"]}]
    lines = (MANIFESTS / "ic" / "rbac.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            assert lines[index - 1].startswith("# "), f"rbac.yaml:{index + 1}"


def test_the_component_folder_is_not_part_of_the_base(tmp_path: Path) -> None:
    base = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert not any(str(r).startswith("ic/") for r in base["resources"])
