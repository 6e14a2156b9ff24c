"""The Kubernetes API as podnet's components use it: credentials, list-then-watch, patches.

The webhook and the sync worker both need to follow objects (pods, services, Subnets,
...) without missing a change, and to survive an API server that restarts, compacts its
history or is briefly unreachable. ``Watcher`` is that reflector, written once:

- it lists, hands the consumer a full ``Snapshot`` (with what disappeared since the last
  one, so deletions that happened while not watching are not lost), then watches from
  the list's resourceVersion;
- a dropped connection resumes from the last resourceVersion seen, so nothing is missed
  or delivered twice; ``410 Gone`` (as an HTTP status or as an ERROR event) means that
  point is no longer in the server's history, and it lists again;
- errors back off exponentially with jitter, bounded, and the backoff resets after a
  success; a watch that ends at once without events counts as an error, so a server
  that closes every watch cannot make it spin.

Why a thread: the official client is synchronous, and it is the code that speaks every
way a cluster authenticates (rotating service-account tokens, client certificates, exec
plugins of managed clusters). Re-implementing that on aiohttp would be the riskier code.
Each ``Watcher`` therefore runs its list and watch calls in one thread and hands every
result to the event loop with ``call_soon_threadsafe`` into an ``asyncio.Queue``; the
``Store`` and the consumer's callback run only on the loop and need no locks. Stopping
shuts the open response's socket down, so the thread never outlives ``stop()`` by a
read timeout.

Objects stay plain dicts exactly as the API sent them (``_preload_content=False`` and
``json.loads``): Subnets and Pods look alike, nothing is lost to model classes, and it is
much faster than the client's model deserialisation.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from podnet_plumbing.tasks import raise_if_cancelled

log = logging.getLogger(__name__)

KubeObject = dict[str, Any]
ListFunction = Callable[..., Any]
"""A list call of the official client (``CoreV1Api.list_pod_for_all_namespaces``, or
``functools.partial(CustomObjectsApi.list_cluster_custom_object, group, version, plural)``,
with any selectors bound): it must accept ``watch``, ``resource_version``, ``limit``,
``_continue``, ``timeout_seconds``, ``allow_watch_bookmarks``, ``_preload_content`` and
``_request_timeout``, as all of the client's list calls do."""

MERGE_PATCH = "application/merge-patch+json"
EXPIRED = 410


# ------------------------------------------------------------------ errors


class KubeError(RuntimeError):
    """The Kubernetes API refused or failed a request."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeConfigError(KubeError):
    """No usable credentials for the Kubernetes API."""


class NotFound(KubeError):
    """The object does not exist (HTTP 404)."""


class Expired(KubeError):
    """The resourceVersion asked for is no longer in the server's history (HTTP 410)."""


def api_error(exc: ApiException, what: str) -> KubeError:
    """A podnet error for a failed call about ``what``; the caller chains it with ``from``."""
    message = str(exc.reason or "")
    with contextlib.suppress(ValueError, TypeError):
        message = str(json.loads(exc.body or "")["message"])
    text = f"{what}: {message} (HTTP {exc.status})"
    if exc.status == 404:
        return NotFound(text, 404)
    if exc.status == EXPIRED:
        return Expired(text, EXPIRED)
    return KubeError(text, exc.status)


# ------------------------------------------------------------- credentials


@dataclass(frozen=True)
class KubeSettings:
    """Where the credentials come from (see ``kube_client``)."""

    kubeconfig: Path | None = None
    in_cluster: bool | None = None
    context: str | None = None
    """A kubeconfig context other than the file's current one."""


def kube_client(
    kubeconfig: Path | None = None, in_cluster: bool | None = None, context: str | None = None
) -> client.ApiClient:
    """A client for the cluster: ``in_cluster`` (the pod's service account), else the
    ``kubeconfig`` file, else, when neither is said, in-cluster if running in a pod and
    otherwise the kubeconfig ``kubectl`` would use (``$KUBECONFIG`` or ``~/.kube/config``).
    """
    if in_cluster and kubeconfig is not None:
        raise KubeConfigError("choose one of --in-cluster and --kubeconfig, not both")
    if in_cluster:
        return _in_cluster()
    if kubeconfig is not None:
        if not kubeconfig.is_file():
            raise KubeConfigError(f"--kubeconfig {kubeconfig}: no such file")
        return _from_kubeconfig(str(kubeconfig), context)
    if in_cluster is None:
        with contextlib.suppress(KubeConfigError):
            return _in_cluster()
    try:
        return _from_kubeconfig(None, context)
    except KubeConfigError as exc:
        raise KubeConfigError(
            "no Kubernetes credentials: not running in a pod with a service account, and "
            f"no usable kubeconfig ($KUBECONFIG or ~/.kube/config: {exc}); "
            "pass --kubeconfig PATH or --in-cluster"
        ) from exc


def _in_cluster() -> client.ApiClient:
    configuration = client.Configuration()
    load = cast(Callable[..., None], config.load_incluster_config)
    try:
        load(client_configuration=configuration)
    except ConfigException as exc:
        raise KubeConfigError(f"in-cluster credentials unavailable: {exc}") from exc
    return client.ApiClient(configuration)


def _from_kubeconfig(path: str | None, context: str | None) -> client.ApiClient:
    load = cast(Callable[..., client.ApiClient], config.new_client_from_config)
    try:
        api = load(config_file=path, context=context, persist_config=False)
    except (ConfigException, OSError, ValueError) as exc:
        raise KubeConfigError(f"{path or 'kubeconfig'}: {exc}") from exc
    return api


def connect(settings: KubeSettings) -> client.ApiClient:
    return kube_client(settings.kubeconfig, settings.in_cluster, settings.context)


def lister(api: client.ApiClient, kind: str) -> ListFunction:
    """The all-namespaces list call for a kind podnet follows."""
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    calls: dict[str, ListFunction] = {
        "Pod": core.list_pod_for_all_namespaces,
        "Namespace": core.list_namespace,
        "Service": core.list_service_for_all_namespaces,
        "Node": core.list_node,
        "EndpointSlice": client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces,
        "Deployment": apps.list_deployment_for_all_namespaces,
        "ReplicaSet": apps.list_replica_set_for_all_namespaces,
        "StatefulSet": apps.list_stateful_set_for_all_namespaces,
        "NetworkPolicy":
            client.NetworkingV1Api(api).list_network_policy_for_all_namespaces,
    }
    custom = {"Subnet": ("kubeovn.io", "v1", "subnets"),
              "IPPool": ("kubeovn.io", "v1", "ippools"),
              "AdminNetworkPolicy":
                  ("policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies"),
              "BaselineAdminNetworkPolicy":
                  ("policy.networking.k8s.io", "v1alpha1", "baselineadminnetworkpolicies")}
    if kind in custom:
        objects = client.CustomObjectsApi(api)
        group, version, plural = custom[kind]

        def list_custom(**options: Any) -> Any:
            return objects.list_cluster_custom_object(group, version, plural, **options)

        return list_custom
    if kind not in calls:
        raise KeyError(f"podnet does not follow {kind}")
    return calls[kind]


async def list_now(list_fn: ListFunction, kind: str, page_size: int = 500,
                   timeout_s: float = 60.0) -> list[KubeObject]:
    """Every object of a kind as the API server holds it now: a consistent read (no
    ``resourceVersion``), page by page, never a cache. What evidence needs."""

    def call() -> list[KubeObject]:
        objects: list[KubeObject] = []
        options: dict[str, Any] = {"limit": page_size, "_request_timeout": timeout_s}
        while True:
            response = list_fn(_preload_content=False, **options)
            page = json.loads(response.data)
            objects.extend(_typed(page, kind))
            following = (page.get("metadata") or {}).get("continue")
            if not following:
                return objects
            options["_continue"] = following

    try:
        return await asyncio.to_thread(call)
    except ApiException as exc:
        raise api_error(exc, f"listing {kind}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"listing {kind}: {exc}") from exc


# --------------------------------------------------------------- patching


async def patch_pod_annotations(
    api: client.CoreV1Api, namespace: str, name: str, annotations: Mapping[str, str | None],
    timeout_s: float = 30.0,
) -> KubeObject:
    """Merge ``annotations`` into a pod (``None`` removes one); returns the patched pod.

    A merge patch touches only the keys given, so it never overwrites what others wrote
    meanwhile. The blocking call runs in a thread.
    """
    body = {"metadata": {"annotations": dict(annotations)}}

    def call() -> KubeObject:
        response: Any = api.patch_namespaced_pod(
            name, namespace, body, _content_type=MERGE_PATCH, _preload_content=False,
            _request_timeout=timeout_s,
        )
        pod: KubeObject = json.loads(response.data)
        return pod

    try:
        return await asyncio.to_thread(call)
    except ApiException as exc:
        raise api_error(exc, f"patching pod {namespace}/{name}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"patching pod {namespace}/{name}: {exc}") from exc


async def patch_subnet_status(
    api: client.CustomObjectsApi, name: str, status: Mapping[str, Any], timeout_s: float = 10.0,
) -> None:
    """Merge ``status`` into a ``kubeovn.io/v1`` Subnet's ``status`` subresource.

    The subresource takes only the status, so a change of the spec meanwhile is never
    overwritten, and a merge patch touches only the fields given."""
    body = {"status": dict(status)}

    def call() -> None:
        api.patch_cluster_custom_object_status(
            "kubeovn.io", "v1", "subnets", name, body, _content_type=MERGE_PATCH,
            _preload_content=False, _request_timeout=timeout_s)

    try:
        await asyncio.to_thread(call)
    except ApiException as exc:
        raise api_error(exc, f"patching the status of subnet {name}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"patching the status of subnet {name}: {exc}") from exc


async def record_event(
    api: client.CoreV1Api, involved: Mapping[str, str], reason: str, message: str, *,
    component: str, event_type: str = "Warning", timeout_s: float = 10.0,
) -> None:
    """Create a core/v1 Event about ``involved`` (its kind, namespace, name, uid), as
    ``kubectl describe`` shows it. The message is cut to the API's 1 KiB limit. An
    event about a cluster-scoped object (no namespace) goes to ``default``, as
    Kubernetes' own components put them."""
    namespace = involved.get("namespace") or "default"
    involved = {key: value for key, value in involved.items()
                if key != "namespace" or value}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body: Any = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", **involved},
        "reason": reason, "message": message[:1024], "type": event_type,
        "source": {"component": component}, "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }

    def call() -> None:
        api.create_namespaced_event(namespace, body, _preload_content=False,
                                    _request_timeout=timeout_s)

    try:
        await asyncio.to_thread(call)
    except ApiException as exc:
        raise api_error(exc, f"recording event {reason} on {namespace}/{involved['name']}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"recording event {reason}: {exc}") from exc


# ------------------------------------------------------------------ store


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name); the namespace is empty for cluster-scoped objects."""
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Store:
    """The objects of one kind as last seen, by (namespace, name); kept by a ``Watcher``.

    ``get(name, namespace)`` takes its arguments in the official client's order; the
    namespace is empty for cluster-scoped kinds. Read it from the event loop; it is only
    changed there, between two awaits.
    """

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], KubeObject] = {}
        self._synced = asyncio.Event()
        self.resource_version = ""

    def get(self, name: str, namespace: str = "") -> KubeObject | None:
        return self._objects.get((namespace, name))

    def list(self, namespace: str | None = None) -> list[KubeObject]:
        return [obj for (ns, _), obj in sorted(self._objects.items())
                if namespace is None or ns == namespace]

    def objects(self) -> builtins.list[KubeObject]:
        """Every object, in no particular order (cheaper than ``list`` for big kinds)."""
        return builtins.list(self._objects.values())

    def __len__(self) -> int:
        return len(self._objects)

    @property
    def synced(self) -> bool:
        """True once the first list has been applied."""
        return self._synced.is_set()

    async def wait_synced(self, timeout_s: float | None = None) -> None:
        """Wait for the first list; raises ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            await self._synced.wait()

    def replace(
        self, objects: builtins.list[KubeObject], version: str
    ) -> builtins.list[KubeObject]:
        """Hold exactly ``objects``; returns those held before and now gone."""
        fresh = {object_key(obj): obj for obj in objects}
        removed = [obj for key, obj in sorted(self._objects.items()) if key not in fresh]
        self._objects = fresh
        self.resource_version = version
        self._synced.set()
        return removed

    def apply(self, kind: str, obj: KubeObject) -> KubeObject | None:
        """Apply one watch event; returns the object held before it."""
        key = object_key(obj)
        old = self._objects.pop(key, None) if kind == "DELETED" else self._objects.get(key)
        if kind != "DELETED":
            self._objects[key] = obj
        self.resource_version = resource_version(obj) or self.resource_version
        return old


# ----------------------------------------------------------------- events


@dataclass(frozen=True)
class Snapshot:
    """The full list, at the start and after every relist.

    ``removed`` are objects held before that the list no longer has: deleted while the
    watcher was not watching (no DELETED event will ever come for them).
    """

    objects: tuple[KubeObject, ...]
    removed: tuple[KubeObject, ...]
    resource_version: str


@dataclass(frozen=True)
class Change:
    """One watch event: ``type`` is ADDED, MODIFIED or DELETED; ``old`` what was held."""

    type: str
    obj: KubeObject
    old: KubeObject | None


WatchEvent = Snapshot | Change
EventHandler = Callable[[WatchEvent], Awaitable[None]]


@dataclass(frozen=True)
class _Listed:
    objects: list[KubeObject]
    resource_version: str


@dataclass(frozen=True)
class _Event:
    type: str
    obj: KubeObject


_STOPPED = object()


# ----------------------------------------------------------------- backoff


@dataclass(frozen=True)
class BackoffSettings:
    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    """Each delay is shortened by up to this fraction, at random, so replicas spread."""


class Backoff:
    """Exponential delays with jitter, never above ``max_s``; ``reset`` after a success."""

    def __init__(self, settings: BackoffSettings,
                 rng: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.failures = 0
        self._rng = rng

    def next(self) -> float:
        s = self.settings
        delay = min(s.max_s, s.initial_s * s.factor ** min(self.failures, 64))
        self.failures += 1
        return delay * (1.0 - s.jitter * self._rng())

    def reset(self) -> None:
        self.failures = 0


# ----------------------------------------------------------------- watcher


@dataclass(frozen=True)
class WatchSettings:
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    watch_timeout_s: int = 300
    """The server ends each watch after this long (spread by up to 10%); it resumes."""
    connect_timeout_s: float = 10.0
    list_timeout_s: float = 120.0
    """Longest wait for one page of a list."""
    silence_s: float = 60.0
    """A watch silent this long past its own timeout is treated as a dead connection."""
    page_size: int = 500
    min_watch_s: float = 1.0
    """A watch ending sooner than this with no events counts as a failure."""
    stop_timeout_s: float = 5.0


@dataclass
class WatchStats:
    """What a watcher has done, for logs, metrics and tests."""

    lists: int = 0
    watches: int = 0
    events: int = 0
    errors: int = 0
    expired: int = 0
    last_error: str | None = None
    """Why the last list or watch failed; None once one succeeds again."""


class _Response(Protocol):
    data: bytes

    def stream(self, amt: int | None = ..., decode_content: bool | None = ...) -> Iterator[bytes]:
        ...

    def release_conn(self) -> None: ...

    def shutdown(self) -> None: ...


class Watcher:
    """List-then-watch one kind, keeping ``store`` current and calling ``on_event``.

    ``on_event`` runs on the event loop after the store has the change; an exception in
    it is logged and does not stop the watcher. Use ``start``/``stop``, ``run`` as a
    task, or ``async with``.
    """

    def __init__(
        self,
        list_fn: ListFunction,
        kind: str,
        on_event: EventHandler | None = None,
        *,
        settings: WatchSettings | None = None,
        store: Store | None = None,
    ) -> None:
        self.list_fn = list_fn
        self.kind = kind
        self.on_event = on_event
        self.settings = settings or WatchSettings()
        self.store = store if store is not None else Store()
        self.stats = WatchStats()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._response: _Response | None = None
        self._position: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()

    # ------------------------------------------------------------ loop side

    async def run(self) -> None:
        """Follow the kind until ``stop`` (or cancellation); returns at once once stopped."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def post(item: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(queue.put_nowait, item)

        thread = threading.Thread(
            target=self._reflect, args=(post,), daemon=True, name=f"watch-{self.kind}"
        )
        thread.start()
        try:
            while (item := await queue.get()) is not _STOPPED:
                await self._deliver(item)
                raise_if_cancelled()  # a handler's library may have swallowed it
        finally:
            self._halt()
            await asyncio.to_thread(thread.join, self.settings.stop_timeout_s)

    def start(self) -> None:
        """Run as a task of the current loop (again after ``stop``)."""
        self._stopping.clear()
        self._task = asyncio.create_task(self.run(), name=f"watch-{self.kind}")

    async def stop(self) -> None:
        """Stop within ``stop_timeout_s``: the thread is told to stop and its connection
        shut, but the loop side does not wait for the thread's last word (a read that
        the shutdown fails to interrupt would otherwise hold its owner's shutdown until
        the server ends the watch); undelivered events are dropped."""
        self._halt()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def __aenter__(self) -> Watcher:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _deliver(self, item: object) -> None:
        event: WatchEvent
        if isinstance(item, _Listed):
            removed = self.store.replace(item.objects, item.resource_version)
            event = Snapshot(tuple(item.objects), tuple(removed), item.resource_version)
        elif isinstance(item, _Event):
            event = Change(item.type, item.obj, self.store.apply(item.type, item.obj))
        else:
            return
        if self.on_event is not None:
            try:
                await self.on_event(event)
            except Exception:
                log.exception("%s watcher: handling %s failed", self.kind, type(event).__name__)

    def _halt(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._response is not None:
                with contextlib.suppress(Exception):
                    self._response.shutdown()

    # ---------------------------------------------------------- thread side

    def _reflect(self, post: Callable[[object], None]) -> None:
        backoff = Backoff(self.settings.backoff, self._rng.random)
        try:
            while not self._stopping.is_set():
                delay = self._cycle(post, backoff)
                if delay and self._stopping.wait(delay):
                    break
        finally:
            post(_STOPPED)

    def _cycle(self, post: Callable[[object], None], backoff: Backoff) -> float:
        """One list or watch; returns how long to wait before the next."""
        try:
            if self._position is None:
                self._list(post)
            elif not self._watch(post):
                return backoff.next()
            backoff.reset()
            self.stats.last_error = None
            return 0.0
        except Expired as exc:
            self.stats.expired += 1
            log.info("%s watch expired, listing again: %s", self.kind, exc)
            self._position = None
            return 0.0 if backoff.failures == 0 else backoff.next()
        except Exception as exc:
            if self._stopping.is_set():
                return 0.0
            self.stats.errors += 1
            self.stats.last_error = _describe(exc)
            delay = backoff.next()
            log.warning("%s watch failed (retrying in %.2fs): %s", self.kind, delay,
                        _describe(exc))
            return delay

    def _open(self, **options: Any) -> _Response | None:
        """Call the list function unbuffered; None when stopping."""
        try:
            response: _Response = self.list_fn(_preload_content=False, **options)
        except ApiException as exc:
            raise api_error(exc, f"{'watching' if options.get('watch') else 'listing'} "
                                 f"{self.kind}") from exc
        with self._lock:
            if self._stopping.is_set():
                response.shutdown()
                return None
            self._response = response
        return response

    def _close(self, response: _Response) -> None:
        with self._lock:
            self._response = None
        with contextlib.suppress(Exception):
            response.release_conn()

    def _list(self, post: Callable[[object], None]) -> None:
        objects: list[KubeObject] = []
        options: dict[str, Any] = {"limit": self.settings.page_size, "_request_timeout": (
            self.settings.connect_timeout_s, self.settings.list_timeout_s)}
        while True:
            response = self._open(**options)
            if response is None:
                return
            try:
                page = json.loads(response.data)
            finally:
                self._close(response)
            objects.extend(_typed(page, self.kind))
            metadata = page.get("metadata") or {}
            if not metadata.get("continue"):
                break
            options["_continue"] = metadata["continue"]
        self.stats.lists += 1
        version = str(metadata.get("resourceVersion") or "")
        post(_Listed(objects, version))
        self._position = version

    def _watch(self, post: Callable[[object], None]) -> bool:
        """Watch from the position; True when it was a healthy watch (events, or long)."""
        settings = self.settings
        timeout = int(settings.watch_timeout_s * (1 + 0.1 * self._rng.random()))
        response = self._open(
            watch=True, resource_version=self._position, timeout_seconds=timeout,
            allow_watch_bookmarks=True,
            _request_timeout=(settings.connect_timeout_s, timeout + settings.silence_s),
        )
        if response is None:
            return True
        self.stats.watches += 1
        started, seen = time.monotonic(), 0
        try:
            for line in _lines(response):
                seen += self._handle_line(line, post)
        finally:
            self._close(response)
        return seen > 0 or time.monotonic() - started >= settings.min_watch_s

    def _handle_line(self, line: bytes, post: Callable[[object], None]) -> int:
        event = json.loads(line)
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            raise _status_error(obj, f"watching {self.kind}")
        version = resource_version(obj)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            post(_Event(kind, obj))
            self.stats.events += 1
        elif kind != "BOOKMARK":
            log.warning("%s watch: ignoring an event of type %r", self.kind, kind)
            return 0
        self._position = version or self._position
        return 1


def _lines(response: _Response) -> Iterator[bytes]:
    """The newline-delimited events of a watch, however the chunks split them."""
    pending = b""
    for chunk in response.stream(None, decode_content=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (line for line in lines if line.strip())
    if pending.strip():
        yield pending


def _typed(page: Mapping[str, Any], kind: str) -> list[KubeObject]:
    """A list's items with kind and apiVersion, which built-in lists leave out."""
    api_version = str(page.get("apiVersion") or "")
    items: list[KubeObject] = page.get("items") or []
    for item in items:
        item.setdefault("kind", kind)
        item.setdefault("apiVersion", api_version)
    return items


def _status_error(status: Mapping[str, Any], what: str) -> KubeError:
    code = int(status.get("code") or 0)
    message = f"{what}: {status.get('message') or status.get('reason') or 'error'}"
    return Expired(message, code) if code == EXPIRED else KubeError(message, code or None)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
