"""The lab's schemas: every field podnet's examples and Kube-OVN's documentation use is
declared (so none is pruned before a webhook sees it), unknown fields are found where
kube-apiserver finds them, and the OpenAPI v3 documents say what kubectl looks for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from podnet.lab.objects import RESOURCES, Resource
from podnet.lab.schemas import (
    OpenApiV3,
    crd_definition_name,
    drop_unknown_fields,
    lab_catalog,
)

REPOSITORY = Path(__file__).resolve().parent.parent
KUBE_OVN_EXAMPLES = REPOSITORY.parent / "shared" / "kube-ovn-examples"
SERVED = {(r.api_version, r.kind): r for r in RESOURCES}
PRUNED_IN_A_CLUSTER = {"84-non-primary-vpc-subnet.yaml": ["spec.cidr"]}
"""Fields of Kube-OVN's documentation that its own CRD lacks too (a typo of cidrBlock)."""


def served_objects(directory: Path) -> list[tuple[str, Resource, dict[str, Any]]]:
    found = []
    for path in sorted(directory.glob("*.y*ml")):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # the unparseable ones are another test's business
        found += [(path.name, SERVED[key], doc) for doc in documents
                  if isinstance(doc, dict)
                  and (key := (doc.get("apiVersion"), doc.get("kind"))) in SERVED]
    return found


def unknown_fields(resource: Resource, obj: dict[str, Any]) -> list[str]:
    known = lab_catalog()
    schema = known.schema(resource)
    assert schema is not None, resource
    return drop_unknown_fields(schema, obj, known.definitions)


def test_every_field_of_podnets_examples_is_declared_by_its_schema() -> None:
    objects = served_objects(REPOSITORY / "examples")
    assert len(objects) > 10
    assert {name: unknown_fields(r, obj) for name, r, obj in objects
            if unknown_fields(r, obj)} == {}


@pytest.mark.skipif(not KUBE_OVN_EXAMPLES.is_dir(), reason="the Kube-OVN examples are absent")
def test_the_crds_declare_every_field_kube_ovns_documentation_uses() -> None:
    found = {name: dropped for name, r, obj in served_objects(KUBE_OVN_EXAMPLES)
             if (dropped := unknown_fields(r, obj))}
    assert found == PRUNED_IN_A_CLUSTER


def test_unknown_fields_are_found_at_any_depth_and_maps_keep_their_keys() -> None:
    deployment: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment",
                                  "metadata": {"name": "web", "labels": {"any-key": "kept"}},
                                  "spec": {"template": {"spec": {"containers": [
                                      {"name": "a", "colour": "blue"}]}}, "shade": 1}}
    dropped = unknown_fields(SERVED[("apps/v1", "Deployment")], deployment)
    assert sorted(dropped) == ["spec.shade", "spec.template.spec.containers[0].colour"]
    assert deployment["metadata"]["labels"] == {"any-key": "kept"}
    assert deployment["spec"]["template"]["spec"]["containers"] == [{"name": "a"}]


def test_each_group_version_document_offers_field_validation_on_patch() -> None:
    documents = OpenApiV3(RESOURCES, lab_catalog())
    assert set(documents.root()["paths"]) == {
        "api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1", "apis/coordination.k8s.io/v1",
        "apis/kubeovn.io/v1",
        "apis/admissionregistration.k8s.io/v1", "apis/networking.k8s.io/v1",
        "apis/policy.networking.k8s.io/v1alpha1"}
    for resource in RESOURCES:
        path = ("apis/" + resource.group if resource.group else "api") + "/" + resource.version
        document = documents.document(path)
        assert document is not None
        patches = [item["patch"] for item in document["paths"].values() if "patch" in item
                   and item["patch"]["x-kubernetes-group-version-kind"]["kind"] == resource.kind]
        assert patches, resource
        assert "fieldValidation" in {p["name"] for p in patches[0]["parameters"]}
    kube_ovn = documents.document("apis/kubeovn.io/v1")
    assert kube_ovn is not None
    subnet = kube_ovn["components"]["schemas"][crd_definition_name("kubeovn.io", "v1", "Subnet")]
    assert "cidrBlock" in subnet["properties"]["spec"]["properties"]
    assert subnet["properties"]["metadata"] == {"allOf": [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]}
