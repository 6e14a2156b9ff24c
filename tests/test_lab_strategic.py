"""Strategic merge patches on built-in kinds: what kubectl and controllers send, merged
by the merge keys and strategies of Kubernetes' own schemas, directives honoured and
never stored."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from podnet.lab.apistore import ApiError
from podnet.lab.objects import RESOURCES
from podnet.lab.schemas import lab_catalog
from podnet.lab.strategic import strategic_merge_patch

KINDS = {resource.kind: resource for resource in RESOURCES}


def patched_as(kind: str, original: dict[str, Any], patch: dict[str, Any]) -> Any:
    known = lab_catalog()
    return strategic_merge_patch(original, patch, known.schema(KINDS[kind]), known.definitions)


def pod_patched(original: dict[str, Any], patch: dict[str, Any]) -> Any:
    return patched_as("Pod", original, patch)


def deployment_patched(original: dict[str, Any], patch: dict[str, Any]) -> Any:
    return patched_as("Deployment", original, patch)


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": list(containers), **spec}}


def container(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": f"{name}:1", **fields}


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


def test_the_kind_schema_is_found_by_group_version_and_kind() -> None:
    known = lab_catalog()
    assert known.schema(KINDS["Deployment"]) is known.definitions[
        "io.k8s.api.apps.v1.Deployment"]
    assert known.schema(KINDS["Subnet"]) is known.definitions["io.kubeovn.v1.Subnet"]


def test_a_container_patched_by_name_merges_into_it_and_keeps_the_others() -> None:
    original = pod(container("a"), container("b"))
    patched = pod_patched(original, {"spec": {"containers": [
        {"name": "b", "image": "b:2"}, container("c")]}})
    assert patched["spec"]["containers"] == [
        container("a"), {"name": "b", "image": "b:2"}, container("c")]
    assert original["spec"]["containers"] == [container("a"), container("b")]


def test_a_new_item_comes_before_the_items_the_patch_does_not_name() -> None:
    patched = pod_patched(pod(container("a"), container("b")),
                          {"spec": {"containers": [container("new")]}})
    assert names(patched["spec"]["containers"]) == ["new", "a", "b"]


def test_env_merges_by_name_and_ports_by_container_port() -> None:
    original = pod(container("a", env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                             ports=[{"containerPort": 80, "name": "http"}]))
    patched = pod_patched(original, {"spec": {"containers": [{"name": "a", "env": [
        {"name": "Y", "value": "3"}], "ports": [{"containerPort": 80, "protocol": "TCP"},
                                                {"containerPort": 443}]}]}})
    merged = patched["spec"]["containers"][0]
    assert merged["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}]
    assert merged["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"},
                               {"containerPort": 443}]


def test_a_list_without_a_merge_strategy_is_replaced() -> None:
    original = pod(container("a", args=["--one", "--two"]),
                   tolerations=[{"key": "a", "operator": "Exists"}])
    patched = pod_patched(original, {"spec": {
        "containers": [{"name": "a", "args": ["--three"]}],
        "tolerations": [{"key": "b", "operator": "Exists"}]}})
    assert patched["spec"]["containers"][0]["args"] == ["--three"]
    assert patched["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_null_deletes_a_key_and_a_map_merges_key_by_key() -> None:
    original = pod(container("a"))
    original["metadata"]["labels"] = {"app": "web", "tier": "front"}
    patched = pod_patched(original, {"metadata": {"labels": {"tier": None, "new": "yes"}},
                                     "spec": {"nodeName": "node-1"}})
    assert patched["metadata"]["labels"] == {"app": "web", "new": "yes"}
    assert patched["spec"]["nodeName"] == "node-1"
    assert names(patched["spec"]["containers"]) == ["a"]


def test_set_element_order_puts_the_merged_items_in_the_order_it_lists() -> None:
    original = pod(container("a"), container("b"), container("c"))
    patched = pod_patched(original, {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
        "containers": [{"name": "a", "image": "a:2"}]}})
    assert names(patched["spec"]["containers"]) == ["c", "a", "b"]
    assert patched["spec"]["containers"][1]["image"] == "a:2"
    assert "$setElementOrder/containers" not in patched["spec"]


def test_an_item_with_patch_delete_removes_the_item_with_its_merge_key() -> None:
    original = pod(container("a"), container("b"))
    patched = pod_patched(original, {"spec": {"containers": [
        {"name": "a", "$patch": "delete"}]}})
    assert patched["spec"]["containers"] == [container("b")]


def test_an_item_with_patch_replace_makes_the_patch_list_the_whole_list() -> None:
    original = pod(container("a"), container("b"))
    patched = pod_patched(original, {"spec": {"containers": [
        {"$patch": "replace"}, container("z")]}})
    assert patched["spec"]["containers"] == [container("z")]


def test_a_map_with_patch_replace_keeps_only_what_the_patch_says() -> None:
    original = pod(container("a", resources={"limits": {"cpu": "1", "memory": "1Gi"}}))
    patched = pod_patched(original, {"spec": {"containers": [{"name": "a", "resources": {
        "limits": {"$patch": "replace", "cpu": "2"}}}]}})
    assert patched["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "2"}}


def test_a_map_with_patch_delete_is_emptied_as_kube_apiserver_does() -> None:
    original = pod(container("a"), securityContext={"runAsUser": 1000})
    patched = pod_patched(original, {"spec": {"securityContext": {"$patch": "delete"}}})
    assert patched["spec"]["securityContext"] == {}


def test_retain_keys_clears_the_fields_it_does_not_list() -> None:
    original = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"replicas": 2, "strategy": {
                    "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    patched = deployment_patched(original, {"spec": {"strategy": {
        "$retainKeys": ["type"], "type": "Recreate"}}})
    assert patched["spec"]["strategy"] == {"type": "Recreate"}
    assert patched["spec"]["replicas"] == 2


def test_retain_keys_in_a_volume_replaces_its_source() -> None:
    original = pod(container("a"), volumes=[
        {"name": "data", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "c"}}])
    patched = pod_patched(original, {"spec": {"volumes": [{
        "name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/srv"}}]}})
    assert patched["spec"]["volumes"] == [
        {"name": "data", "hostPath": {"path": "/srv"}},
        {"name": "conf", "configMap": {"name": "c"}}]


def test_finalizers_are_a_union_and_delete_from_primitive_list_removes_some() -> None:
    original = pod(container("a"))
    original["metadata"]["finalizers"] = ["a/x", "b/y"]
    added = pod_patched(original, {"metadata": {"finalizers": ["b/y", "c/z"]}})
    assert added["metadata"]["finalizers"] == ["a/x", "b/y", "c/z"]
    removed = pod_patched(added, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b/y"]}})
    assert removed["metadata"]["finalizers"] == ["a/x", "c/z"]
    assert set(removed["metadata"]) == {"name", "finalizers"}


def test_directives_in_a_field_the_object_lacks_are_applied_not_stored() -> None:
    original = pod(container("a"))
    patched = pod_patched(original, {"spec": {"volumes": [
        {"name": "gone", "$patch": "delete"}, {"name": "data", "emptyDir": {}}],
        "$setElementOrder/volumes": [{"name": "data"}]}})
    assert patched["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]


def test_the_patch_is_not_changed_so_it_can_be_applied_again() -> None:
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                      "containers": [{"name": "b", "$patch": "delete"}, container("c")]}}
    kept = copy.deepcopy(patch)
    first = pod_patched(pod(container("a"), container("b")), patch)
    assert patch == kept
    assert pod_patched(pod(container("a"), container("b")), patch) == first


def test_an_item_without_its_merge_key_is_refused_naming_the_field() -> None:
    with pytest.raises(ApiError) as refused:
        pod_patched(pod(container("a")), {"spec": {"containers": [{"image": "x"}]}})
    assert refused.value.code == 422
    assert "spec.containers" in refused.value.message
    assert "'name'" in refused.value.message


def test_an_unknown_patch_directive_is_refused() -> None:
    with pytest.raises(ApiError) as refused:
        pod_patched(pod(container("a")), {"spec": {"$patch": "merge-all"}})
    assert refused.value.code == 422
    assert "spec" in refused.value.message


@pytest.mark.parametrize("patch", [
    {"spec": {"$setElementOrder/containers": {"name": "a"}}},
    {"spec": {"$setElementOrder": [{"name": "a"}]}},
    {"metadata": {"$deleteFromPrimitiveList/finalizers": "a/x"}},
    {"spec": {"$retainKeys": ["nodeName"], "hostname": "h"}},
])
def test_a_malformed_directive_is_a_bad_request(patch: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as refused:
        pod_patched(pod(container("a")), patch)
    assert refused.value.code == 400


def test_without_a_schema_maps_merge_and_lists_are_replaced() -> None:
    original = {"spec": {"items": [{"name": "a"}], "keep": 1}}
    patched = strategic_merge_patch(original, {"spec": {"items": [{"name": "b"}]}}, None, {})
    assert patched == {"spec": {"items": [{"name": "b"}], "keep": 1}}
