"""``kubectl patch`` against the lab's API server: a strategic merge patch merges
containers by name, as it does in a cluster, instead of replacing the list."""

from __future__ import annotations

import json
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
        server.create({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "front", "namespace": "shop"},
                       "spec": {"selector": {"matchLabels": {"app": "front"}}, "template": {
                           "metadata": {"labels": {"app": "front"}}, "spec": {"containers": [
                               {"name": "web", "image": "nginx"},
                               {"name": "log", "image": "busybox"}]}}}}, "shop")
        yield server


def kubectl(api: KubeApi, cache: Path, *args: str) -> str:
    return kubectl_ok(api.url, cache, *args)


def containers(api: KubeApi) -> list[dict[str, str]]:
    found: list[dict[str, str]] = api.get("Deployment", "front", "shop")[
        "spec"]["template"]["spec"]["containers"]
    return found


def test_a_container_added_by_name_keeps_the_others(api: KubeApi, tmp_path: Path) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:2"}, {"name": "sidecar", "image": "envoy"}]}}}}
    kubectl(api, tmp_path, "-n", "shop", "patch", "deployment", "front", "--type=strategic",
            "-p", json.dumps(patch))
    # kube-apiserver's order: the patch's items in its order, the others where they were
    # relative to them (a new item is not placed after an old one it cannot compare to)
    assert containers(api) == [{"name": "web", "image": "nginx:2"},
                               {"name": "sidecar", "image": "envoy"},
                               {"name": "log", "image": "busybox"}]


def test_a_container_deleted_by_its_directive_leaves_the_others(
    api: KubeApi, tmp_path: Path
) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "log", "$patch": "delete"}]}}}}
    kubectl(api, tmp_path, "-n", "shop", "patch", "deployment", "front", "-p", json.dumps(patch))
    assert containers(api) == [{"name": "web", "image": "nginx"}]
