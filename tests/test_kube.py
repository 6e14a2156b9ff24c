"""podnet_plumbing.kube against the official client and the local API fixture (tests/kube_api.py).

The watcher is the piece everything Kubernetes-facing stands on, so these tests break
its connection on purpose: dropped watches, compacted history (410 Gone, both as an
ERROR event and as an HTTP status), an API server that goes away and comes back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from podnet_plumbing.kube import (
    Backoff,
    BackoffSettings,
    Change,
    KubeConfigError,
    NotFound,
    Snapshot,
    Watcher,
    WatchEvent,
    WatchSettings,
    kube_client,
    lister,
    patch_pod_annotations,
)
from tests.kube_api import KubeApi
from tests.waiting import eventually

FAST = WatchSettings(backoff=BackoffSettings(initial_s=0.05, max_s=0.2), stop_timeout_s=2.0)


def pod(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}


def subnet(name: str, cidr: str) -> dict[str, Any]:
    return {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"cidrBlock": cidr}}


class Recorder:
    """Collects what a watcher delivers."""

    def __init__(self) -> None:
        self.events: list[WatchEvent] = []

    async def __call__(self, event: WatchEvent) -> None:
        self.events.append(event)

    @property
    def changes(self) -> list[tuple[str, str]]:
        return [(e.type, e.obj["metadata"]["name"]) for e in self.events
                if isinstance(e, Change)]

    @property
    def snapshots(self) -> list[Snapshot]:
        return [e for e in self.events if isinstance(e, Snapshot)]


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi() as server:
        yield server


@pytest.fixture
def kube(api: KubeApi) -> Iterator[client.ApiClient]:
    with api.client() as api_client:
        yield api_client


@pytest.fixture
async def pods(kube: client.ApiClient) -> AsyncIterator[tuple[Watcher, Recorder]]:
    recorder = Recorder()
    watcher = Watcher(lister(kube, "Pod"), "Pod", recorder, settings=FAST)
    async with watcher:
        await watcher.store.wait_synced(5)
        yield watcher, recorder


def names(watcher: Watcher) -> list[str]:
    return [obj["metadata"]["name"] for obj in watcher.store.list()]


# ------------------------------------------------------------ list + watch


async def test_a_watcher_lists_first_then_sees_creates_updates_and_deletes_in_order(
    api: KubeApi, kube: client.ApiClient
) -> None:
    api.create(pod("a"))
    api.create(pod("b"))
    recorder = Recorder()
    async with Watcher(lister(kube, "Pod"), "Pod", recorder, settings=FAST) as watcher:
        await watcher.store.wait_synced(5)
        api.create(pod("c"))
        api.patch("Pod", "a", {"metadata": {"labels": {"tier": "web"}}}, "default")
        api.delete("Pod", "b", "default")
        await eventually(lambda: len(recorder.changes) == 3)
    first = recorder.events[0]
    assert isinstance(first, Snapshot)
    assert [o["metadata"]["name"] for o in first.objects] == ["a", "b"]
    assert all(o["kind"] == "Pod" and o["apiVersion"] == "v1" for o in first.objects)
    assert recorder.changes == [("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b")]
    modified = recorder.events[2]
    assert isinstance(modified, Change) and modified.old is not None
    assert "tier" not in modified.old["metadata"]["labels"]
    assert names(watcher) == ["a", "c"]
    stored = watcher.store.get("a", "default")
    assert stored is not None and stored["metadata"]["labels"] == {"tier": "web"}
    assert watcher.store.resource_version == str(api.resource_version)


@pytest.mark.parametrize("abrupt", [True, False], ids=["reset", "clean-end"])
async def test_a_watcher_resumes_from_its_resource_version_after_the_connection_drops(
    api: KubeApi, pods: tuple[Watcher, Recorder], abrupt: bool
) -> None:
    watcher, recorder = pods
    api.create(pod("a"))
    await eventually(lambda: recorder.changes == [("ADDED", "a")])
    await eventually(lambda: api.watches == 1)
    assert api.drop_watches(abrupt=abrupt) == 1
    api.create(pod("b"))
    api.patch("Pod", "a", {"metadata": {"annotations": {"k": "v"}}}, "default")
    await eventually(lambda: len(recorder.changes) == 3)
    await asyncio.sleep(0.2)  # anything repeated would show up now
    assert recorder.changes == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a")]
    assert watcher.stats.lists == 1 and watcher.stats.watches >= 2
    assert len(recorder.snapshots) == 1


@pytest.mark.parametrize("as_status", [False, True], ids=["error-event", "http-410"])
async def test_after_compaction_a_watcher_gets_410_lists_again_and_forgets_deleted_objects(
    as_status: bool,
) -> None:
    with KubeApi(expired_as_status=as_status) as api, api.client() as kube:
        api.create(pod("a"))
        api.create(pod("b"))
        recorder = Recorder()
        async with Watcher(lister(kube, "Pod"), "Pod", recorder, settings=FAST) as watcher:
            await watcher.store.wait_synced(5)
            api.stop()
            api.delete("Pod", "a", "default")
            api.create(pod("c"))
            api.compact()
            api.start()
            await eventually(lambda: len(recorder.snapshots) == 2)
            assert names(watcher) == ["b", "c"]
            assert watcher.stats.expired == 1 and watcher.stats.lists == 2
            relist = recorder.snapshots[1]
            assert [o["metadata"]["name"] for o in relist.removed] == ["a"]
            api.create(pod("d"))
            await eventually(lambda: names(watcher) == ["b", "c", "d"])


async def test_a_bookmark_moves_the_watch_position_so_compaction_needs_no_relist(
    api: KubeApi, pods: tuple[Watcher, Recorder]
) -> None:
    watcher, _ = pods
    await eventually(lambda: api.watches == 1)
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    api.bookmark()
    await asyncio.sleep(0.1)
    api.compact()
    api.drop_watches()
    api.create(pod("a"))
    await eventually(lambda: names(watcher) == ["a"])
    assert watcher.stats.lists == 1 and watcher.stats.expired == 0


async def test_a_watcher_backs_off_while_the_api_is_down_and_recovers_when_it_returns(
    api: KubeApi, pods: tuple[Watcher, Recorder]
) -> None:
    watcher, _ = pods
    api.stop()
    await asyncio.sleep(1.0)
    # Delays of 0.05, 0.1, 0.2, 0.2, ... (less up to 20% jitter): a handful, not a spin.
    assert 3 <= watcher.stats.errors <= 12
    api.create(pod("late"))
    api.start()
    await eventually(lambda: names(watcher) == ["late"])
    errors = watcher.stats.errors
    api.create(pod("later"))
    await eventually(lambda: names(watcher) == ["late", "later"])
    assert watcher.stats.errors == errors


def test_backoff_doubles_up_to_its_bound_with_jitter_and_resets() -> None:
    backoff = Backoff(BackoffSettings(initial_s=1.0, max_s=5.0, jitter=0.0))
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 1.0
    jittered = Backoff(BackoffSettings(initial_s=1.0, max_s=5.0, jitter=0.2), lambda: 1.0)
    assert jittered.next() == pytest.approx(0.8)


async def test_stopping_a_watcher_mid_watch_is_prompt(kube: client.ApiClient) -> None:
    watcher = Watcher(lister(kube, "Pod"), "Pod", settings=FAST)
    watcher.start()
    await watcher.store.wait_synced(5)
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await watcher.stop()
    assert time.monotonic() - started < 1.0


async def test_a_failing_event_handler_is_logged_and_the_watcher_goes_on(
    api: KubeApi, kube: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(event: WatchEvent) -> None:
        raise ValueError("consumer bug")

    async with Watcher(lister(kube, "Pod"), "Pod", explode, settings=FAST) as watcher:
        await watcher.store.wait_synced(5)
        api.create(pod("a"))
        api.create(pod("b"))
        await eventually(lambda: names(watcher) == ["a", "b"])
    assert "consumer bug" in caplog.text


async def test_label_selected_watches_see_objects_enter_and_leave_the_selection(
    api: KubeApi, kube: client.ApiClient
) -> None:
    core = client.CoreV1Api(kube)

    def web_pods(**options: Any) -> Any:
        return core.list_namespaced_pod("default", label_selector="app=web", **options)

    recorder = Recorder()
    async with Watcher(web_pods, "Pod", recorder, settings=FAST) as watcher:
        await watcher.store.wait_synced(5)
        api.create(pod("a", app="db"))
        api.patch("Pod", "a", {"metadata": {"labels": {"app": "web"}}}, "default")
        api.patch("Pod", "a", {"metadata": {"labels": {"app": "db"}}}, "default")
        await eventually(lambda: len(recorder.changes) == 2)
    assert recorder.changes == [("ADDED", "a"), ("DELETED", "a")]


# ------------------------------------------------------------ custom objects


async def test_subnets_are_followed_as_cluster_scoped_custom_objects(
    api: KubeApi, kube: client.ApiClient
) -> None:
    objects = client.CustomObjectsApi(kube)
    recorder = Recorder()
    async with Watcher(lister(kube, "Subnet"), "Subnet", recorder, settings=FAST) as watcher:
        await watcher.store.wait_synced(5)
        objects.create_cluster_custom_object(
            "kubeovn.io", "v1", "subnets", subnet("zone-a", "10.20.0.0/24"))
        objects.patch_cluster_custom_object(
            "kubeovn.io", "v1", "subnets", "zone-a", {"spec": {"gateway": "10.20.0.254"}})
        await eventually(lambda: len(recorder.changes) == 2)
        stored = watcher.store.get("zone-a")
        assert stored is not None
        assert stored["spec"] == {"cidrBlock": "10.20.0.0/24", "gateway": "10.20.0.254"}
        objects.delete_cluster_custom_object("kubeovn.io", "v1", "subnets", "zone-a")
        await eventually(lambda: len(watcher.store) == 0)
    assert recorder.changes == [
        ("ADDED", "zone-a"), ("MODIFIED", "zone-a"), ("DELETED", "zone-a")]


# ------------------------------------------------------------------ patches


async def test_patching_pod_annotations_merges_and_removes_keys_and_keeps_the_rest(
    api: KubeApi, kube: client.ApiClient
) -> None:
    api.create({**pod("web-0"), "metadata": {
        "name": "web-0", "namespace": "default",
        "annotations": {"ovn.kubernetes.io/ip_address": "10.16.0.7", "stale": "x"}}})
    core = client.CoreV1Api(kube)
    patched = await patch_pod_annotations(
        core, "default", "web-0", {"ovn.kubernetes.io/routed": "true", "stale": None})
    assert patched["metadata"]["annotations"] == {
        "ovn.kubernetes.io/ip_address": "10.16.0.7", "ovn.kubernetes.io/routed": "true"}
    assert api.get("Pod", "web-0", "default")["metadata"]["annotations"] == (
        patched["metadata"]["annotations"])
    with pytest.raises(NotFound, match="patching pod default/gone"):
        await patch_pod_annotations(core, "default", "gone", {"k": "v"})


# -------------------------------------------------------------- credentials


def test_a_kubeconfig_file_gives_a_working_client(api: KubeApi, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(f"""\
apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "{api.url}"}}}}]
users: [{{name: test, user: {{token: secret}}}}]
contexts: [{{name: test, context: {{cluster: test, user: test}}}}]
current-context: test
""")
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "edge"}})
    with kube_client(kubeconfig) as kube:
        listed = client.CoreV1Api(kube).list_namespace()
    assert [ns.metadata.name for ns in listed.items if ns.metadata] == ["edge"]


def test_missing_credentials_are_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(
        "kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none"))
    with pytest.raises(KubeConfigError, match="pass --kubeconfig PATH or --in-cluster"):
        kube_client()
    with pytest.raises(KubeConfigError, match="in-cluster credentials unavailable"):
        kube_client(in_cluster=True)
    with pytest.raises(KubeConfigError, match="no such file"):
        kube_client(tmp_path / "missing")


async def test_a_large_list_is_read_in_pages_and_relisted_when_its_continue_token_expires(
    api: KubeApi, kube: client.ApiClient
) -> None:
    for index in range(5):
        api.create(pod(f"p{index}"))
    list_pods = lister(kube, "Pod")
    pages: list[str | None] = []

    def paged(**options: Any) -> Any:
        pages.append(options.get("_continue"))
        if len(pages) == 2:
            api.compact()  # the first list's snapshot is gone: its token answers 410
        return list_pods(**options)

    settings = WatchSettings(backoff=FAST.backoff, page_size=2)
    recorder = Recorder()
    async with Watcher(paged, "Pod", recorder, settings=settings) as watcher:
        await watcher.store.wait_synced(5)
    assert len(recorder.snapshots) == 1
    assert names(watcher) == ["p0", "p1", "p2", "p3", "p4"]
    assert watcher.stats.expired == 1
    assert [token is None for token in pages[:5]] == [True, False, True, False, False]


async def test_a_watcher_stopped_before_it_ran_stops_and_can_start_again(
    api: KubeApi, kube: client.ApiClient
) -> None:
    watcher = Watcher(lister(kube, "Pod"), "Pod", settings=FAST)
    watcher.start()
    await asyncio.wait_for(watcher.stop(), 2)
    api.create(pod("a"))
    async with watcher:
        await eventually(lambda: names(watcher) == ["a"])
