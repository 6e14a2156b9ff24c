"""The lab's API server: as a process with its state file, and what it adds to the API.

The official client talks to it as to kube-apiserver; the process is started and
stopped by PID, like ``podnet up`` does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from podnet.daemons import BackgroundProcess, free_port
from podnet.lab.apiserver import ApiServer, ApiState, Attributes, read_state, write_state
from podnet.lab.objects import KubeObject, write_kubeconfig
from podnet_plumbing import kube


def core(api: client.ApiClient) -> Any:
    """The official client's core API, called with plain dicts as bodies (as JSON)."""
    return client.CoreV1Api(api)


def apps(api: client.ApiClient) -> Any:
    return client.AppsV1Api(api)


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(name: str, namespace_: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace_},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}


@dataclass
class Process:
    """The API server run as ``podnet up`` runs it."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def state(self) -> Path:
        return self.directory / "objects.json"

    @property
    def process(self) -> BackgroundProcess:
        return BackgroundProcess("apiserver", self.directory)

    def start(self) -> None:
        self.process.start([sys.executable, "-m", "podnet.lab.apiserver", "--listen",
                            f"127.0.0.1:{self.port}", "--state", str(self.state)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"the API server did not start: {self.process.logfile.read_text()}")

    def client(self) -> client.ApiClient:
        config = write_kubeconfig(self.directory / "kubeconfig", f"http://127.0.0.1:{self.port}",
                                  "kubernetes-admin")
        return kube.kube_client(config)


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Process]:
    started = Process(tmp_path)
    started.start()
    try:
        yield started
    finally:
        started.process.stop()


def test_objects_survive_a_restart_of_the_process_with_their_uids(process: Process) -> None:
    with process.client() as api:
        core_api = core(api)
        core_api.create_namespace(namespace("shop"))
        created = core_api.create_namespaced_pod("shop", pod("web-0", "shop"))
    assert process.process.stop()
    saved = json.loads(process.state.read_text())
    assert [p["metadata"]["name"] for p in saved["objects"]["pods"]] == ["web-0"]

    process.start()
    with process.client() as api:
        core_api = core(api)
        again = core_api.read_namespaced_pod("web-0", "shop")
        assert again.metadata.uid == created.metadata.uid
        later = core_api.create_namespaced_pod("shop", pod("web-1", "shop"))
    assert int(later.metadata.resource_version) > int(created.metadata.resource_version)


async def test_a_watcher_that_outlives_a_restart_relists_and_misses_nothing(
    process: Process,
) -> None:
    settings = kube.WatchSettings(backoff=kube.BackoffSettings(initial_s=0.05, max_s=0.2),
                                  stop_timeout_s=2.0)
    with process.client() as api:
        core(api).create_namespaced_pod("default", pod("a"))
        watcher = kube.Watcher(kube.lister(api, "Pod"), "Pod", settings=settings)
        async with watcher:
            await watcher.store.wait_synced(5)
            process.process.stop()
            process.start()
            core(api).create_namespaced_pod("default", pod("b"))
            async with asyncio.timeout(10):
                while len(watcher.store) < 2:  # noqa: ASYNC110 (a store has no event)
                    await asyncio.sleep(0.05)
        assert [p["metadata"]["name"] for p in watcher.store.list()] == ["a", "b"]
        assert watcher.stats.expired >= 1 or watcher.stats.lists >= 2


def test_the_state_file_round_trips_every_kind() -> None:
    state = ApiState(defaults=True, service_cidr="10.96.0.0/16")
    state.create(state.resource("Namespace"), namespace("shop"))
    state.create(state.resource("Deployment"), {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 2}})
    restored = ApiState()
    restored.restore(json.loads(json.dumps(state.snapshot())))
    assert restored.revision > state.revision
    assert restored.find(restored.resource("Deployment"), "shop", "web") == state.find(
        state.resource("Deployment"), "shop", "web")


def test_a_missing_state_file_starts_empty_and_is_written_atomically(tmp_path: Path) -> None:
    state = ApiState()
    assert read_state(state, tmp_path / "objects.json") == 0
    state.create(state.resource("Namespace"), namespace("a"))
    write_state(state, tmp_path / "objects.json")
    assert [p.name for p in tmp_path.iterdir()] == ["objects.json"]
    assert read_state(ApiState(), tmp_path / "objects.json") == 1


# ------------------------------------------------------------ what it adds


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(defaults=True, service_cidr="10.96.0.0/24") as server:
        yield server


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}], **spec}}


def test_services_get_cluster_ips_from_the_range_and_a_taken_one_is_refused(
    api: ApiServer,
) -> None:
    with api.client() as kube_api:
        core_api = core(kube_api)
        first = core_api.create_namespaced_service("default", service("a"))
        second = core_api.create_namespaced_service("default", service("b"))
        headless = core_api.create_namespaced_service("default", service("c", clusterIP="None"))
        with pytest.raises(ApiException) as refused:
            core_api.create_namespaced_service("default", service("d", clusterIP="10.96.0.10"))
    assert (first.spec.cluster_ip, second.spec.cluster_ip) == ("10.96.0.10", "10.96.0.11")
    assert first.spec.cluster_ips == ["10.96.0.10"]
    assert headless.spec.cluster_ip == "None"
    assert refused.value.status == 422
    assert "10.96.0.10: provided IP is already allocated" in json.loads(
        str(refused.value.body))["message"]


def test_namespaces_get_their_name_label_and_pods_start_pending(api: ApiServer) -> None:
    with api.client() as kube_api:
        core_api = core(kube_api)
        created = core_api.create_namespace(namespace("shop"))
        stored = core_api.create_namespaced_pod("shop", pod("web", "shop"))
    assert created.metadata.labels == {"kubernetes.io/metadata.name": "shop"}
    assert stored.status.phase == "Pending"
    assert stored.spec.scheduler_name == "default-scheduler"


def test_a_pod_is_bound_to_a_node_once_through_the_binding_subresource(api: ApiServer) -> None:
    api.create(pod("web"))
    binding = client.V1Binding(metadata=client.V1ObjectMeta(name="web"),
                               target=client.V1ObjectReference(kind="Node", name="node-1"))
    with api.client() as kube_api:
        core_api = core(kube_api)
        core_api.create_namespaced_pod_binding("web", "default", binding, _preload_content=False)
        with pytest.raises(ApiException) as twice:
            core_api.create_namespaced_pod_binding("web", "default", binding,
                                               _preload_content=False)
    bound = api.get("Pod", "web", "default")
    assert bound["spec"]["nodeName"] == "node-1"
    assert bound["status"]["conditions"][0]["type"] == "PodScheduled"
    assert twice.value.status == 409


def test_a_status_patch_changes_the_status_and_nothing_else(api: ApiServer) -> None:
    api.create(pod("web"))
    with api.client() as kube_api:
        core(kube_api).patch_namespaced_pod_status("web", "default", {
            "metadata": {"labels": {"sneaky": "yes"}}, "status": {"phase": "Running"}})
    stored = api.get("Pod", "web", "default")
    assert stored["status"]["phase"] == "Running"
    assert "labels" not in stored["metadata"]


def test_an_update_that_changes_nothing_keeps_the_resource_version(api: ApiServer) -> None:
    created = api.create(pod("web"))
    same = api.patch("Pod", "web", {"spec": {"containers": created["spec"]["containers"]}},
                     "default")
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    changed = api.patch("Pod", "web", {"metadata": {"labels": {"a": "b"}}}, "default")
    assert int(changed["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"])


def test_a_dry_run_create_stores_nothing(api: ApiServer) -> None:
    with api.client() as kube_api:
        answer = core(kube_api).create_namespaced_pod("default", pod("web"),
                                                                  dry_run="All")
    assert answer.metadata.name == "web"
    assert api.objects("Pod") == []


def test_apps_kinds_are_served_with_their_status_subresource(api: ApiServer) -> None:
    body = {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db"}, "spec": {"serviceName": "db", "selector": {
                "matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {
                    "app": "db"}}, "spec": {"containers": [{"name": "db", "image": "pg"}]}}}}
    with api.client() as kube_api:
        apps_api = apps(kube_api)
        created = apps_api.create_namespaced_stateful_set("default", body)
        apps_api.patch_namespaced_stateful_set_status("db", "default",
                                                      {"status": {"replicas": 1}})
        listed = apps_api.list_stateful_set_for_all_namespaces()
    assert created.spec.replicas == 1 and created.spec.pod_management_policy == "OrderedReady"
    assert [s.status.replicas for s in listed.items] == [1]


def deployment(name: str, *containers: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": list(containers)}}}}


def test_a_strategic_merge_patch_merges_containers_by_name_and_stores_no_directive(
    api: ApiServer
) -> None:
    api.create(deployment("web", {"name": "app", "image": "nginx"},
                          {"name": "log", "image": "busybox"}), "default")
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "log"}, {"name": "app"}],
        "containers": [{"name": "app", "image": "nginx:2"}]}}}}
    with api.client() as kube_api:
        apps(kube_api).patch_namespaced_deployment(
            "web", "default", patch, _content_type="application/strategic-merge-patch+json")
    spec = api.get("Deployment", "web", "default")["spec"]["template"]["spec"]
    assert spec == {"containers": [{"name": "log", "image": "busybox"},
                                   {"name": "app", "image": "nginx:2"}]}


def test_a_merge_patch_still_replaces_the_list_it_names(api: ApiServer) -> None:
    api.create(deployment("web", {"name": "app", "image": "nginx"},
                          {"name": "log", "image": "busybox"}), "default")
    with api.client() as kube_api:
        apps(kube_api).patch_namespaced_deployment(
            "web", "default", {"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "nginx:2"}]}}}},
            _content_type="application/merge-patch+json")
    spec = api.get("Deployment", "web", "default")["spec"]["template"]["spec"]
    assert spec["containers"] == [{"name": "app", "image": "nginx:2"}]


def test_a_strategic_merge_patch_missing_a_merge_key_is_refused_with_422(
    api: ApiServer
) -> None:
    api.create(deployment("web", {"name": "app", "image": "nginx"}), "default")
    with api.client() as kube_api, pytest.raises(ApiException) as refused:
        apps(kube_api).patch_namespaced_deployment(
            "web", "default", {"spec": {"template": {"spec": {"containers": [
                {"image": "nginx:2"}]}}}},
            _content_type="application/strategic-merge-patch+json")
    assert refused.value.status == 422
    assert "spec.template.spec.containers" in json.loads(refused.value.body or "{}")["message"]


def test_custom_resources_refuse_a_strategic_merge_patch_with_415(api: ApiServer) -> None:
    api.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "blue"},
                "spec": {"cidrBlock": "10.70.0.0/24"}})
    with api.client() as kube_api, pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(kube_api).patch_cluster_custom_object(
            "kubeovn.io", "v1", "subnets", "blue", {"spec": {"private": True}},
            _content_type="application/strategic-merge-patch+json")
    assert refused.value.status == 415


@dataclass
class Recorder:
    """Admission that records who asked, and allows everything."""

    seen: list[Attributes] = field(default_factory=list)

    async def admit(self, attributes: Attributes) -> KubeObject | None:
        self.seen.append(attributes)
        return attributes.obj

    async def mutate(self, attributes: Attributes) -> KubeObject | None:
        return await self.admit(attributes)

    async def validate(self, attributes: Attributes) -> None:
        pass

    async def close(self) -> None:
        pass


def test_the_bearer_token_names_the_caller_admission_sees(tmp_path: Path) -> None:
    recorder = Recorder()
    with ApiServer(admission=lambda _: recorder) as server:
        config = write_kubeconfig(tmp_path / "kubeconfig", server.url,
                                  "system:serviceaccount:podnet-system:podnet-sync")
        with kube.kube_client(config) as kube_api:
            core(kube_api).create_namespaced_pod("default", pod("web"))
    (seen,) = recorder.seen
    assert seen.operation == "CREATE" and seen.name == "web"
    assert seen.user["username"] == "system:serviceaccount:podnet-system:podnet-sync"
    assert "system:serviceaccounts:podnet-system" in seen.user["groups"]


def test_a_network_policy_gets_its_policy_types_as_the_api_defaults_them(
    api: ApiServer,
) -> None:
    ingress_only = api.create({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "a", "namespace": "x"}, "spec": {"podSelector": {}}}, "x")
    both = api.create({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "b", "namespace": "x"},
        "spec": {"podSelector": {}, "egress": [{}]}}, "x")
    assert ingress_only["spec"]["policyTypes"] == ["Ingress"]
    assert both["spec"]["policyTypes"] == ["Ingress", "Egress"]
