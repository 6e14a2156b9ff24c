"""A small Kubernetes API server for tests. It is a test fixture, not part of podnet.

These machines have no kube-apiserver, yet podnet's Kubernetes-facing code must be tested
with the official ``kubernetes`` client exactly as it runs against a cluster. This module
serves the part of the API podnet uses, over plain HTTP on 127.0.0.1, from an aiohttp
server running in a thread with its own event loop (so synchronous client calls made by
a test, or by a watcher's thread, never wait on the test's own loop):

- core v1 pods, namespaces, services, nodes; discovery.k8s.io/v1 endpointslices;
  kubeovn.io/v1 subnets and ippools (cluster-scoped custom objects);
- list (namespaced and all-namespaces; ``labelSelector``, ``fieldSelector``), get,
  create (``generateName`` too), replace, delete, and patch: merge patch, strategic merge
  patch (treated as a merge patch; refused for custom resources, as the real API does)
  and JSON patch;
- watch from a resourceVersion, with one global, increasing resourceVersion as etcd
  keeps. Events older than the retained history (``history_limit``, or everything up to
  a ``compact()``) answer ``410 Expired`` as an ERROR event, as the real API does.

Lists honour ``limit`` and ``continue`` (pages of one snapshot; a token expires with
``compact()``). Deliberate simplifications: no admission, no namespace existence checks,
no finalizers (delete is immediate), and a live watch is never expired by compaction
(etcd behaves the same way).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from kubernetes import client

KubeObject = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def builtin(self) -> bool:
        """Built-in lists omit kind and apiVersion on their items; custom ones do not."""
        return self.group in ("", "discovery.k8s.io")


RESOURCES = (
    Resource("", "v1", "pods", "Pod", True),
    Resource("", "v1", "namespaces", "Namespace", False),
    Resource("", "v1", "services", "Service", True),
    Resource("", "v1", "nodes", "Node", False),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("kubeovn.io", "v1", "subnets", "Subnet", False),
    Resource("kubeovn.io", "v1", "ippools", "IPPool", False),
)


class ApiError(Exception):
    """An error answered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> KubeObject:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


# ---------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path and not path.startswith("/"):
        raise ApiError(422, "Invalid", f"json patch path {path!r} must start with /")
    return [s.replace("~1", "/").replace("~0", "~") for s in path.split("/")[1:]]


def _parent(document: Any, path: str) -> tuple[Any, str]:
    *parents, last = _pointer(path) or [""]
    target = document
    try:
        for segment in parents:
            target = target[int(segment)] if isinstance(target, list) else target[segment]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ApiError(422, "Invalid", f"json patch path {path} does not exist") from exc
    return target, last


def _json_patch_op(document: Any, op: Mapping[str, Any]) -> Any:
    name, path = op.get("op"), str(op.get("path", ""))
    if name in ("move", "copy"):
        source, key = _parent(document, str(op.get("from", "")))
        value = copy.deepcopy(source[int(key)] if isinstance(source, list) else source[key])
        if name == "move":
            document = _json_patch_op(document, {"op": "remove", "path": op["from"]})
        return _json_patch_op(document, {"op": "add", "path": path, "value": value})
    target, key = _parent(document, path)
    try:
        if name == "test":
            current = target[int(key)] if isinstance(target, list) else target[key]
            if current != op.get("value"):
                raise ApiError(422, "Invalid", f"json patch test of {path} failed")
        elif isinstance(target, list):
            index = len(target) if key == "-" else int(key)
            if name == "add":
                target.insert(index, copy.deepcopy(op["value"]))
            elif name == "replace":
                target[index] = copy.deepcopy(op["value"])
            elif name == "remove":
                del target[index]
            else:
                raise ApiError(422, "Invalid", f"json patch op {name!r} is not supported")
        elif name == "add" or (name == "replace" and key in target):
            target[key] = copy.deepcopy(op["value"])
        elif name == "remove" and key in target:
            del target[key]
        else:
            raise ApiError(422, "Invalid", f"json patch {name} {path}: no such member")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ApiError(422, "Invalid", f"json patch {name} {path}: {exc}") from exc
    return document


def json_patch(document: KubeObject, ops: Any) -> KubeObject:
    """RFC 6902 (add, remove, replace, test, move, copy)."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "a json patch must be a list of operations")
    result: KubeObject = copy.deepcopy(document)
    for op in ops:
        result = _json_patch_op(result, op)
    return result


# -------------------------------------------------------------- selectors


_SET = re.compile(r"^\s*(!?[\w./-]+)\s+(in|notin)\s+\((.*)\)\s*$")


def _split_selector(text: str) -> Iterator[str]:
    depth, start = 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            yield text[start:index]
            start = index + 1
    yield text[start:]


def _requirement(term: str) -> Callable[[Mapping[str, str]], bool]:
    term = term.strip()
    matched = _SET.match(term)
    if matched:
        key, operator = matched.group(1), matched.group(2)
        values = {v.strip() for v in matched.group(3).split(",")}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for operator in ("!=", "==", "="):
        if operator in term:
            key, value = (part.strip() for part in term.split(operator, 1))
            if operator == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        return lambda labels: term[1:] not in labels
    return lambda labels: term in labels


def selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A label (or field) selector: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, in, notin."""
    terms = [_requirement(t) for t in _split_selector(text or "") if t.strip()]
    return lambda labels: all(term(labels) for term in terms)


def _fields(obj: Mapping[str, Any]) -> dict[str, str]:
    """Every scalar of ``obj`` by dotted path, for field selectors."""
    found: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif not isinstance(value, list):
            found[prefix] = "" if value is None else str(value)

    walk("", obj)
    return found


# ------------------------------------------------------------------ state


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


@dataclass(frozen=True)
class Event:
    resource_version: int
    resource: Resource
    type: str
    obj: KubeObject
    old: KubeObject | None = None


@dataclass(frozen=True)
class Filter:
    """What a list or watch selects: a namespace (None: all) and label/field selectors."""

    namespace: str | None = None
    labels: str | None = None
    fields: str | None = None

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        namespace, _ = _key(obj)
        if self.namespace is not None and namespace != self.namespace:
            return False
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return selector(self.labels)(labels) and selector(self.fields)(_fields(obj))


@dataclass
class WatchStream:
    """One open watch: what it selects, and events committed but not yet written."""

    resource: Resource
    filter: Filter
    bookmarks: bool
    loop: asyncio.AbstractEventLoop
    pending: list[Event] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    transport: asyncio.Transport | None = None
    ended: bool = False

    def render(self, event: Event) -> KubeObject | None:
        """The event as this watch sees it: selectors turn updates into adds or deletes."""
        if event.type == "BOOKMARK":
            return {"type": "BOOKMARK", "object": event.obj} if self.bookmarks else None
        now, before = self.filter.matches(event.obj), self.filter.matches(event.old)
        if event.type == "MODIFIED" and now != before:
            kind = "ADDED" if now else "DELETED"
        elif (event.type == "DELETED" and before) or (event.type != "DELETED" and now):
            kind = event.type
        else:
            return None
        return {"type": kind, "object": event.obj}

    def notify(self) -> None:
        self.loop.call_soon_threadsafe(self.wake.set)


class ApiState:
    """Objects, history and open watches; every method is safe from any thread."""

    def __init__(self, resources: Iterable[Resource], history_limit: int) -> None:
        self.resources = tuple(resources)
        self.history_limit = history_limit
        self.revision = 1
        """Never 0, as in etcd: a watch from "0" means "from now, with the current objects"."""
        self.compacted = 0
        """Watches from a resourceVersion below this get 410: their events are gone."""
        self.objects: dict[Resource, dict[tuple[str, str], KubeObject]] = {
            r: {} for r in self.resources}
        self.history: list[Event] = []
        self.streams: list[WatchStream] = []
        self.continuations: dict[str, tuple[int, list[KubeObject]]] = {}
        """The rest of paged lists, by continue token (a snapshot, as the API promises)."""
        self.lock = threading.RLock()

    def resource(self, kind: str) -> Resource:
        for resource in self.resources:
            if kind in (resource.kind, resource.plural):
                return resource
        raise KeyError(f"the test API does not serve {kind!r}")

    def _commit(self, resource: Resource, kind: str, obj: KubeObject,
                old: KubeObject | None) -> KubeObject:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        event = Event(self.revision, resource, kind, copy.deepcopy(obj), old)
        self.history.append(event)
        if len(self.history) > self.history_limit:
            dropped = self.history[: len(self.history) - self.history_limit]
            del self.history[: len(dropped)]
            self.compacted = dropped[-1].resource_version
        for stream in self.streams:
            if stream.resource == resource:
                stream.pending.append(event)
                stream.notify()
        return copy.deepcopy(obj)

    def _stored(self, resource: Resource, namespace: str, name: str) -> KubeObject:
        found = self.objects[resource].get((namespace, name))
        if found is None:
            where = f" in namespace {namespace}" if namespace else ""
            raise ApiError(404, "NotFound", f'{resource.plural} "{name}" not found{where}')
        return found

    def get(self, resource: Resource, namespace: str, name: str) -> KubeObject:
        with self.lock:
            return copy.deepcopy(self._stored(resource, namespace, name))

    def select(self, resource: Resource, where: Filter) -> tuple[list[KubeObject], int]:
        with self.lock:
            items = [copy.deepcopy(o) for _, o in sorted(self.objects[resource].items())
                     if where.matches(o)]
            return items, self.revision

    def page(self, resource: Resource, where: Filter, limit: int,
             token: str | None) -> tuple[list[KubeObject], int, str | None]:
        """One page of a list: (items, resourceVersion of the snapshot, continue token)."""
        with self.lock:
            if token:
                if token not in self.continuations:
                    raise ApiError(410, "Expired", "The provided continue parameter is too "
                                   "old to display a consistent list result.")
                revision, items = self.continuations.pop(token)
            else:
                items, revision = self.select(resource, where)
            if 0 < limit < len(items):
                token = uuid.uuid4().hex
                self.continuations[token] = (revision, items[limit:])
                return items[:limit], revision, token
            return items, revision, None

    def create(self, resource: Resource, obj: KubeObject, namespace: str = "") -> KubeObject:
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        if resource.namespaced:
            namespace = namespace or str(metadata.get("namespace") or "default")
            if metadata.get("namespace", namespace) != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does "
                               "not match the namespace sent on the request")
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        if not metadata.get("name"):
            raise ApiError(422, "Invalid", f"{resource.kind} is invalid: metadata.name: "
                           "Required value: name or generateName is required")
        obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        metadata.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=datetime.now(
            UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        with self.lock:
            key = _key(obj)
            if key in self.objects[resource]:
                raise ApiError(409, "AlreadyExists",
                               f'{resource.plural} "{key[1]}" already exists')
            self.objects[resource][key] = obj
            return self._commit(resource, "ADDED", obj, None)

    def update(self, resource: Resource, namespace: str, name: str,
               change: Callable[[KubeObject], KubeObject]) -> KubeObject:
        """Replace an object by ``change(current)``, keeping what clients may not change."""
        with self.lock:
            current = self._stored(resource, namespace, name)
            updated = change(copy.deepcopy(current))
            if not isinstance(updated, dict) or not isinstance(updated.get("metadata"), dict):
                raise ApiError(400, "BadRequest", "the result is not an object with metadata")
            wanted = updated["metadata"].get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on '
                               f'{resource.plural} "{name}": the object has been modified')
            kept = ("uid", "name", "namespace", "creationTimestamp", "generation")
            for key in kept:
                if key in current["metadata"]:
                    updated["metadata"][key] = current["metadata"][key]
            if updated.get("spec") != current.get("spec"):
                updated["metadata"]["generation"] = current["metadata"]["generation"] + 1
            updated["kind"], updated["apiVersion"] = resource.kind, resource.api_version
            self.objects[resource][(namespace, name)] = updated
            return self._commit(resource, "MODIFIED", updated, copy.deepcopy(current))

    def delete(self, resource: Resource, namespace: str, name: str) -> KubeObject:
        with self.lock:
            current = self._stored(resource, namespace, name)
            del self.objects[resource][(namespace, name)]
            return self._commit(resource, "DELETED", current, copy.deepcopy(current))

    def open_watch(self, stream: WatchStream, since: str | None) -> None:
        """Queue the events after ``since`` (or the current objects) and follow new ones."""
        with self.lock:
            if since in (None, "", "0"):
                for _, obj in sorted(self.objects[stream.resource].items()):
                    stream.pending.append(Event(self.revision, stream.resource, "ADDED",
                                                copy.deepcopy(obj)))
            else:
                start = _revision(since)
                if start < self.compacted:
                    raise ApiError(410, "Expired", f"too old resource version: {start} "
                                   f"({self.compacted + 1})")
                stream.pending.extend(e for e in self.history
                                      if e.resource == stream.resource
                                      and e.resource_version > start)
            self.streams.append(stream)

    def close_watch(self, stream: WatchStream) -> None:
        with self.lock:
            if stream in self.streams:
                self.streams.remove(stream)

    def take(self, stream: WatchStream) -> list[Event]:
        with self.lock:
            stream.wake.clear()
            taken, stream.pending = stream.pending, []
            return taken

    def compact(self) -> int:
        with self.lock:
            self.history.clear()
            self.continuations.clear()
            self.compacted = self.revision
            return self.revision

    def bookmark(self) -> None:
        with self.lock:
            for stream in self.streams:
                metadata = {"resourceVersion": str(self.revision)}
                obj = {"kind": stream.resource.kind,
                       "apiVersion": stream.resource.api_version, "metadata": metadata}
                stream.pending.append(Event(self.revision, stream.resource, "BOOKMARK", obj))
                stream.notify()


def _revision(text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"invalid resource version {text!r}") from exc


# ----------------------------------------------------------------- server


def _route(resources: Iterable[Resource], path: str) -> tuple[Resource, str | None, str | None]:
    """(resource, namespace, name) of an API path, or a 404."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "NotFound", f"the server could not find {path}")
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    for resource in resources:
        if (resource.group, resource.version, resource.plural) == (group, version, rest[0]) \
                and len(rest) <= 2 and (namespace is None or resource.namespaced):
            return resource, namespace, rest[1] if len(rest) == 2 else None
    raise ApiError(404, "NotFound", f"the server could not find {path}")


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(obj).encode(), status=status,
                        content_type="application/json")


def _list_body(resource: Resource, items: list[KubeObject], revision: int,
               token: str | None) -> KubeObject:
    if resource.builtin:
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
    metadata = {"resourceVersion": str(revision), **({"continue": token} if token else {})}
    return {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
            "metadata": metadata, "items": items}


class KubeApi:
    """The fixture: start it, point the official client at ``url``, drive it from tests.

    ``history_limit`` is how many events are kept for watches that resume from a
    resourceVersion; ``expired_as_status`` answers a too-old watch with an HTTP 410
    instead of the ERROR event (older API servers, and etcd-backed watches, do both).
    """

    def __init__(self, resources: Iterable[Resource] = RESOURCES, *, history_limit: int = 1000,
                 expired_as_status: bool = False, port: int = 0) -> None:
        self.state = ApiState(resources, history_limit)
        self.expired_as_status = expired_as_status
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # ---------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> KubeApi:
        """Serve (again, on the same port after ``stop``)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                            name="kube-api-fixture")
            self._thread.start()
        self._run(self._serve())
        return self

    def stop(self) -> None:
        """Stop serving (watches are cut); ``start`` serves again with the same state."""
        if self._runner is not None:
            self.drop_watches()
            self._run(self._runner.cleanup())
            self._runner = None

    def close(self) -> None:
        self.stop()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
            self._loop = None

    def __enter__(self) -> KubeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coroutine: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def client(self) -> client.ApiClient:
        """An official client configured for this fixture."""
        return client.ApiClient(client.Configuration(host=self.url))

    # ------------------------------------------------------- test helpers

    def create(self, obj: KubeObject, namespace: str = "") -> KubeObject:
        return self.state.create(self.state.resource(str(obj.get("kind"))), obj, namespace)

    def get(self, kind: str, name: str, namespace: str = "") -> KubeObject:
        return self.state.get(self.state.resource(kind), namespace, name)

    def delete(self, kind: str, name: str, namespace: str = "") -> KubeObject:
        return self.state.delete(self.state.resource(kind), namespace, name)

    def patch(self, kind: str, name: str, patch: Any, namespace: str = "",
              content_type: str = MERGE_PATCH) -> KubeObject:
        return self.state.update(self.state.resource(kind), namespace, name,
                                 _patcher(content_type, patch))

    def objects(self, kind: str, namespace: str | None = None) -> list[KubeObject]:
        return self.state.select(self.state.resource(kind), Filter(namespace))[0]

    @property
    def resource_version(self) -> int:
        return self.state.revision

    def compact(self) -> int:
        """Forget all history: a watch from any earlier resourceVersion gets 410."""
        return self.state.compact()

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to watches that allow them."""
        self.state.bookmark()

    @property
    def watches(self) -> int:
        """How many watch streams are open right now."""
        with self.state.lock:
            return len(self.state.streams)

    def drop_watches(self, abrupt: bool = True) -> int:
        """Cut every open watch (``abrupt``: reset the connection; else end it cleanly)."""
        with self.state.lock:
            streams = list(self.state.streams)
        for stream in streams:
            stream.ended = True
            if abrupt and stream.transport is not None:
                stream.loop.call_soon_threadsafe(stream.transport.abort)
            stream.notify()
        return len(streams)

    # ------------------------------------------------------------ handlers

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            resource, namespace, name = _route(self.state.resources, request.path)
            if name is None:
                return await self._collection(request, resource, namespace)
            return await self._item(request, resource, namespace or "", name)
        except ApiError as exc:
            return _json(exc.status(), exc.code)

    async def _collection(self, request: web.Request, resource: Resource,
                          namespace: str | None) -> web.StreamResponse:
        query = request.query
        where = Filter(namespace, query.get("labelSelector"), query.get("fieldSelector"))
        if request.method == "GET" and query.get("watch") in ("true", "1"):
            return await self._watch(request, resource, where)
        if request.method == "GET":
            limit = int(query.get("limit") or 0)
            page = self.state.page(resource, where, limit, query.get("continue"))
            return _json(_list_body(resource, *page))
        if request.method == "POST":
            body = await _body(request)
            return _json(self.state.create(resource, body, namespace or ""), 201)
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported here")

    async def _item(self, request: web.Request, resource: Resource, namespace: str,
                    name: str) -> web.Response:
        if request.method == "GET":
            return _json(self.state.get(resource, namespace, name))
        if request.method == "DELETE":
            return _json(self.state.delete(resource, namespace, name))
        body = await _body(request)
        if request.method == "PUT":
            return _json(self.state.update(resource, namespace, name, lambda _: body))
        if request.method == "PATCH":
            if request.content_type == STRATEGIC_MERGE_PATCH and not resource.builtin:
                raise ApiError(415, "UnsupportedMediaType", "strategic merge patch is not "
                               "supported for custom resources; use a merge patch")
            change = _patcher(request.content_type, body)
            return _json(self.state.update(resource, namespace, name, change))
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported here")

    async def _watch(self, request: web.Request, resource: Resource,
                     where: Filter) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
        stream = WatchStream(resource, where, bookmarks, loop, transport=request.transport)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            self.state.open_watch(stream, request.query.get("resourceVersion"))
        except ApiError as exc:
            if self.expired_as_status or exc.code != 410:
                raise
            await response.prepare(request)
            await response.write(_line({"type": "ERROR", "object": exc.status()}))
            return response
        try:
            timeout = float(request.query.get("timeoutSeconds") or 1800)
            await response.prepare(request)
            async with asyncio.timeout(timeout):
                await self._follow(stream, response)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self.state.close_watch(stream)
        return response

    async def _follow(self, stream: WatchStream, response: web.StreamResponse) -> None:
        while not stream.ended:
            for event in self.state.take(stream):
                rendered = stream.render(event)
                if rendered is not None:
                    await response.write(_line(rendered))
            if not stream.pending and not stream.ended:
                await stream.wake.wait()


def _line(event: KubeObject) -> bytes:
    return json.dumps(event).encode() + b"\n"


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from exc


def _patcher(content_type: str, patch: Any) -> Callable[[KubeObject], KubeObject]:
    if content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        return lambda current: dict(merge_patch(current, patch))
    if content_type == JSON_PATCH:
        return lambda current: json_patch(current, patch)
    raise ApiError(415, "UnsupportedMediaType",
                   f"the body of the request was in an unknown format: {content_type}")
