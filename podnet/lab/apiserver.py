"""The lab's stand-in for kube-apiserver: the Kubernetes API subset podnet's components use.

``podnet up`` runs podnet on a machine with no Kubernetes. Its components must still run
the code they run in a cluster: the sync worker, the node agent and the lab's
controllers use the official ``kubernetes`` client (list, watch, patch) against this
server, and every Pod create goes through podnet's real admission webhook over HTTPS,
called exactly as kube-apiserver calls it. Only the source of objects differs. The same
server, run in a thread, is the tests' local API (``tests/kube_api.py``).

What it serves, over plain HTTP on loopback:

- core v1 pods (with the ``status`` and ``binding`` subresources), namespaces, services,
  nodes; discovery.k8s.io/v1 endpointslices; coordination.k8s.io/v1 leases (what
  leader election takes: a MicroTime or a lease duration kube-apiserver would refuse is
  refused here too); apps/v1 deployments, replicasets and
  statefulsets (``status`` subresource); kubeovn.io/v1 subnets and ippools;
  admissionregistration.k8s.io/v1 mutating and validating webhook configurations;
- list (namespaced and all-namespaces; ``labelSelector``, ``fieldSelector``, ``limit``
  and ``continue``), get, create (``generateName`` too), replace, delete, and patch:
  merge patch, strategic merge patch (lists merged by the merge keys of the kind's
  schema, directives honoured: ``podnet.lab.strategic``; refused for custom resources,
  as the real API does) and JSON patch; ``dryRun=All``;
- watch from a resourceVersion, with one global, increasing resourceVersion as etcd
  keeps. Events older than the retained history (``history_limit``, or everything up to
  a ``compact()``) answer ``410 Expired`` as an ERROR event, as the real API does;
- admission (``admission``): the stored webhook configurations are honoured as
  kube-apiserver honours them (see ``podnet.lab.admission``);
- with ``defaults`` on (the lab), what kube-apiserver's registries add: a Service gets
  a ClusterIP from ``service_cidr``, a Namespace its ``kubernetes.io/metadata.name``
  label, a Pod the ``Pending`` phase;
- with a ``state`` file, every object is written to it (atomically, at most every
  ``flush_s``) and read back at start, so the lab survives restarts of this process and
  a second ``podnet up``. History is not kept: watchers relist after a restart, as they
  do after an etcd compaction (see ``ApiState.restore``).

A bearer token ``podnet-lab:<username>`` names the caller (the kubeconfigs ``podnet up``
writes carry one per component), and becomes the ``userInfo`` of admission reviews.
A delete is kube-apiserver's: a pod gets ``deletionTimestamp`` and its grace period and
stays until the lab kubelet removes it (grace 0 removes it at once), and finalizers hold
any object until the last is cleared. Deliberate simplifications: no authorization, no
namespace existence checks, owners' dependents are collected by the lab's controllers,
and a live watch is never expired by compaction (etcd behaves the same way); docs/lab.md
lists the rest.

The objects, their history and watches live in ``podnet.lab.apistore``; this module is
the HTTP side, the server run in a thread (for tests) and the process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import yaml
from aiohttp import web
from kubernetes import client

from podnet.lab import discovery, schemas
from podnet.lab.apistore import (
    DEFAULT_SERVICE_CIDR,
    ApiError,
    ApiState,
    Filter,
    WatchStream,
    conflict,
    json_patch,
    merge_patch,
    read_state,
    selector,
    write_state,
)
from podnet.lab.objects import RESOURCES, TOKEN_PREFIX, KubeObject, Resource, scale_of
from podnet.lab.strategic import strategic_merge_patch
from podnet_plumbing import logs
from podnet_plumbing.signals import stop_on_signals

__all__ = [
    "JSON_PATCH", "MERGE_PATCH", "STRATEGIC_MERGE_PATCH", "Admission", "ApiError", "ApiHandler",
    "ApiServer", "ApiState", "Attributes", "json_patch", "main", "merge_patch", "read_state",
    "selector", "serve", "write_state",
]

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
ANONYMOUS = "system:anonymous"
WARNINGS = web.RequestKey("warnings", list[str])
"""Where a request's handler collects the ``Warning`` headers of its response."""


# --------------------------------------------------------------- admission


@dataclass(frozen=True)
class Attributes:
    """One request as admission sees it (kube-apiserver's ``admission.Attributes``)."""

    operation: str
    resource: Resource
    namespace: str
    name: str
    obj: KubeObject | None
    old: KubeObject | None
    user: Mapping[str, Any]
    dry_run: bool = False


class Admission(Protocol):
    """Admission control: mutate or refuse a request before it is stored."""

    async def admit(self, attributes: Attributes) -> KubeObject | None:
        """The object to store (mutated, or as it was); raise ``ApiError`` to refuse."""
        ...

    async def mutate(self, attributes: Attributes) -> KubeObject | None:
        """Mutating admission alone (a create's first phase)."""
        ...

    async def validate(self, attributes: Attributes) -> None:
        """Validating admission alone (a create's, once name and UID are set)."""
        ...

    async def close(self) -> None: ...


def user_of(request: web.Request) -> dict[str, Any]:
    """The caller named by its bearer token (``podnet-lab:<username>``)."""
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not token.startswith(TOKEN_PREFIX):
        return {"username": ANONYMOUS, "groups": ["system:unauthenticated"]}
    username = token.removeprefix(TOKEN_PREFIX)
    groups = ["system:authenticated"]
    if username.startswith("system:serviceaccount:"):
        namespace = username.split(":")[2]
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", *groups]
    elif username == "kubernetes-admin":
        groups = ["system:masters", *groups]
    return {"username": username, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, username)),
            "groups": groups}


# ----------------------------------------------------------------- routing


@dataclass(frozen=True)
class Target:
    """What an API path names."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str = ""


def route(resources: Iterable[Resource], path: str) -> Target:
    """The target of an API path, or a 404."""
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
        if not rest or (resource.group, resource.version, resource.plural) != (
                group, version, rest[0]):
            continue
        if namespace is not None and not resource.namespaced:
            continue
        if len(rest) <= 2:
            return Target(resource, namespace, rest[1] if len(rest) == 2 else None)
        if len(rest) == 3 and rest[2] in resource.subresources:
            return Target(resource, namespace, rest[1], rest[2])
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


def _success(details: Mapping[str, Any], code: int = 201) -> KubeObject:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": dict(details), "code": code}


class ApiHandler:
    """The HTTP side of an ``ApiState``: one aiohttp handler for every API path."""

    def __init__(self, state: ApiState, admission: Admission | None = None,
                 expired_as_status: bool = False) -> None:
        self.state = state
        self.admission = admission
        self.expired_as_status = expired_as_status
        self.catalog = schemas.lab_catalog()
        self.openapi = schemas.OpenApiV3(state.resources, self.catalog)

    def application(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/healthz", _ok)
        app.router.add_get("/readyz", _ok)
        app.router.add_get("/livez", _ok)
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request[WARNINGS] = []
        try:
            if request.method == "GET" and (found := self._about(request.path)) is not None:
                return _json(found)
            target = route(self.state.resources, request.path)
            if target.name is None:
                response = await self._collection(request, target.resource, target.namespace)
            else:
                response = await self._item(request, target)
        except ApiError as exc:
            response = _json(exc.status(), exc.code)
        if not response.prepared:
            warnings: list[str] = request[WARNINGS]
            for text in dict.fromkeys(warnings):
                response.headers.add("Warning", f"299 - {json.dumps(text)}")
        return response

    def _about(self, path: str) -> dict[str, Any] | None:
        """What the server says about itself at ``path``: discovery, or OpenAPI v3."""
        if path == "/openapi/v3":
            return self.openapi.root()
        if path.startswith("/openapi/v3/"):
            document = self.openapi.document(path.removeprefix("/openapi/v3/"))
            if document is None:
                raise ApiError(404, "NotFound", f"no OpenAPI document at {path}")
            return document
        return discovery.document(self.state.resources, path)

    def _table(self, resource: Resource, items: list[KubeObject], revision: int) -> KubeObject:
        printer = self.catalog.columns.get((resource.group, resource.version, resource.kind))
        return discovery.table(resource, items, revision, printer=printer or ())

    def _known_fields(self, request: web.Request, resource: Resource, obj: Any) -> Any:
        """``obj`` without the fields its kind's schema lacks, as kube-apiserver's
        decoding (built-in kinds) and pruning (custom resources) leave it. With
        ``fieldValidation=Strict`` they are refused instead; with ``Warn`` (the default)
        each is named in a ``Warning`` header, as kubectl shows them."""
        mode = field_validation(request)
        schema = self.catalog.schema(resource)
        if schema is None or not isinstance(obj, dict):
            return obj
        dropped = schemas.drop_unknown_fields(schema, obj, self.catalog.definitions)
        unknown = [f'unknown field "{path}"' for path in dropped]
        if unknown and mode == "Strict":
            raise ApiError(400, "BadRequest", f'{resource.kind} in version "{resource.version}"'
                           f" cannot be handled as a {resource.kind}: strict decoding error: "
                           + ", ".join(unknown))
        if mode == "Warn":
            request[WARNINGS].extend(unknown)
        return obj

    async def _collection(self, request: web.Request, resource: Resource,
                          namespace: str | None) -> web.StreamResponse:
        query = request.query
        where = Filter(namespace, query.get("labelSelector"), query.get("fieldSelector"))
        if request.method == "GET" and query.get("watch") in ("true", "1"):
            return await self._watch(request, resource, where)
        if request.method == "GET":
            limit = int(query.get("limit") or 0)
            page = self.state.page(resource, where, limit, query.get("continue"))
            if discovery.wants_table(request.headers.get("Accept", "")):
                return _json(self._table(resource, page[0], page[1]))
            return _json(_list_body(resource, *page))
        if request.method == "POST":
            return _json(await self._create(request, resource, namespace or ""), 201)
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported here")

    async def _create(self, request: web.Request, resource: Resource,
                      namespace: str, sent: Any = None) -> KubeObject:
        """As kube-apiserver's create handler: mutating admission on the object as sent
        (no name yet for ``generateName``, no UID), then the name generated, UID and
        timestamps set and the name validated, then validating admission (which sees
        them), then quota, then the storage write, where AlreadyExists is found. So a
        create can be refused after every mutating webhook has run."""
        dry_run = _dry_run(request)
        sent = await _body(request) if sent is None else sent
        body = self._known_fields(request, resource, sent)
        obj = self.state.prepare(resource, body, namespace)
        metadata = obj["metadata"]
        attributes = Attributes("CREATE", resource, str(metadata.get("namespace") or ""),
                                str(metadata.get("name") or ""), obj, None, user_of(request),
                                dry_run)
        if self.admission is not None:
            mutated = await self.admission.mutate(attributes)
            obj = mutated if mutated is not None else obj
        obj = self.state.stamp(resource, obj, namespace)
        if self.admission is not None:
            await self.admission.validate(replace(
                attributes, name=str(obj["metadata"]["name"]), obj=obj))
        self.state.check_quota(resource, obj)
        return self.state.store(resource, obj, dry_run)

    async def _item(self, request: web.Request, target: Target) -> web.Response:
        resource, namespace, name = target.resource, target.namespace or "", target.name or ""
        if target.subresource == "binding":
            if request.method != "POST":
                raise ApiError(405, "MethodNotAllowed", "bindings are only created")
            self.state.bind(namespace, name, await _body(request))
            return _json(_success({"name": name, "kind": "pods"}), 201)
        if target.subresource == "scale":
            return _json(await self._scale(request, target))
        if request.method == "GET":
            found = self.state.get(resource, namespace, name)
            if discovery.wants_table(request.headers.get("Accept", "")):
                revision = int(found["metadata"].get("resourceVersion") or 0)
                return _json(self._table(resource, [found], revision))
            return _json(found)
        if request.method == "DELETE":
            return _json(await self._delete(request, resource, namespace, name))
        if request.method == "POST":
            raise ApiError(405, "MethodNotAllowed", "POST is not supported on an object")
        if request.method == "PATCH" and request.content_type == APPLY_PATCH:
            return await self._apply(request, target)
        body = await _body(request)
        if request.method == "PUT":
            change = _replacement(body)
        elif request.method == "PATCH":
            if request.content_type == STRATEGIC_MERGE_PATCH and not resource.builtin:
                raise ApiError(415, "UnsupportedMediaType", "strategic merge patch is not "
                               "supported for custom resources; use a merge patch")
            change = patcher(request.content_type, body, resource)
        else:
            raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported here")
        return _json(await self._update(request, target, change))

    async def _update(self, request: web.Request, target: Target,
                      requested: Callable[[KubeObject], KubeObject]) -> KubeObject:
        resource, namespace, name = target.resource, target.namespace or "", target.name or ""
        dry_run = _dry_run(request)
        keep_status = "status" in resource.subresources and not target.subresource

        def change(current: KubeObject) -> KubeObject:
            updated: KubeObject = self._known_fields(request, resource, requested(current))
            if keep_status:  # written only through the status subresource, as upstream
                updated.pop("status", None)
                if "status" in current:
                    updated["status"] = current["status"]
            return updated

        if self.admission is None or target.subresource:
            return self.state.update(resource, namespace, name, change,
                                     subresource=target.subresource, dry_run=dry_run)
        for _ in range(5):  # a concurrent writer between admission and commit: try again
            current = self.state.get(resource, namespace, name)
            proposed = self.state.update(resource, namespace, name, change, dry_run=True)
            if proposed == current:
                return current
            admitted = await self.admission.admit(Attributes(
                "UPDATE", resource, namespace, name, proposed, current, user_of(request),
                dry_run))
            final = admitted if admitted is not None else proposed
            try:
                return self.state.update(
                    resource, namespace, name, _replacement(final),
                    expect=current["metadata"]["resourceVersion"], dry_run=dry_run)
            except ApiError as exc:
                if exc.code != 409:
                    raise
        raise conflict(resource, name)

    async def _apply(self, request: web.Request, target: Target) -> web.Response:
        """Server-side apply (``kubectl apply --server-side``), as far as the lab goes: an
        object that does not exist is created (admission sees a CREATE); one that does gets
        the applied configuration merged in as a strategic merge patch (lists by the
        schema's merge keys; a merge patch for custom resources). Not kept: managedFields,
        conflicts between field managers, and the removal of fields a manager stops
        applying (docs/lab.md)."""
        resource, namespace, name = target.resource, target.namespace or "", target.name or ""
        if not request.query.get("fieldManager"):
            raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: '
                           "fieldManager: Required value: is required for apply patch")
        applied = _yaml_body(await request.read())
        named = (applied.get("metadata") or {}).get("name")
        if named != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({named}) does not "
                           f"match the name on the URL ({name})")
        if self.state.find(resource, namespace, name) is None and not target.subresource:
            return _json(await self._create(request, resource, namespace, applied), 201)
        merge = STRATEGIC_MERGE_PATCH if resource.builtin else MERGE_PATCH
        return _json(await self._update(request, target, patcher(merge, applied, resource)))

    async def _scale(self, request: web.Request, target: Target) -> KubeObject:
        """The ``scale`` subresource (``kubectl scale``): an ``autoscaling/v1`` Scale read
        from, and written to, the workload's ``spec.replicas``. Admission webhooks for
        the workload do not see it, as their rules name the resource, not ``/scale``."""
        resource, namespace, name = target.resource, target.namespace or "", target.name or ""
        if request.method == "GET":
            return scale_of(self.state.get(resource, namespace, name))
        if request.method not in ("PUT", "PATCH"):
            raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported here")
        body = await _body(request)
        scaled = _replacement(body) if request.method == "PUT" else patcher(
            MERGE_PATCH if request.content_type == STRATEGIC_MERGE_PATCH
            else request.content_type, body)

        def change(current: KubeObject) -> KubeObject:
            wanted = scaled(scale_of(current))
            current.setdefault("spec", {})["replicas"] = scale_replicas(wanted)
            version = (wanted.get("metadata") or {}).get("resourceVersion")
            if request.method == "PUT" and version:
                current["metadata"]["resourceVersion"] = version
            return current

        return scale_of(self.state.update(resource, namespace, name, change,
                                          dry_run=_dry_run(request)))

    async def _delete(self, request: web.Request, resource: Resource, namespace: str,
                      name: str) -> KubeObject:
        dry_run = _dry_run(request)
        if self.admission is not None:
            current = self.state.get(resource, namespace, name)
            await self.admission.admit(Attributes(
                "DELETE", resource, namespace, name, None, current, user_of(request), dry_run))
        options = await _delete_options(request)
        return self.state.delete(resource, namespace, name, dry_run,
                                 _grace_period(options), _propagation(options))

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
                await self._follow(stream, response,
                                   discovery.wants_table(request.headers.get("Accept", "")))
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self.state.close_watch(stream)
        return response

    async def _follow(self, stream: WatchStream, response: web.StreamResponse,
                      as_table: bool) -> None:
        """Write the stream's events (each object as a one-row Table for ``kubectl get
        --watch``, which asks for them) until it ends."""
        while not stream.ended:
            for event in self.state.take(stream):
                rendered = stream.render(event)
                if rendered is not None and as_table and rendered["type"] != "BOOKMARK":
                    obj = rendered["object"]
                    rendered = {**rendered, "object": self._table(
                        stream.resource, [obj], int(obj["metadata"]["resourceVersion"]))}
                if rendered is not None:
                    await response.write(_line(rendered))
            if not stream.pending and not stream.ended:
                await stream.wake.wait()

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


def _replacement(obj: KubeObject) -> Callable[[KubeObject], KubeObject]:
    return lambda _: copy.deepcopy(obj)


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _delete_options(request: web.Request) -> dict[str, Any]:
    """A DELETE's options: the DeleteOptions body, overridden by the query."""
    body = await _body(request) if request.can_read_body else {}
    options = dict(body) if isinstance(body, dict) else {}
    options.update((key, request.query[key]) for key in (
        "gracePeriodSeconds", "propagationPolicy") if key in request.query)
    return options


def _propagation(options: Mapping[str, Any]) -> str | None:
    policy = options.get("propagationPolicy")
    return None if policy is None else str(policy)


def _grace_period(options: Mapping[str, Any]) -> int | None:
    """``gracePeriodSeconds`` of a DELETE, or a 400 naming it."""
    value = options.get("gracePeriodSeconds")
    if value is None:
        return None
    text = str(value)
    try:
        return int(text)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"gracePeriodSeconds {text!r} is not an integer"
                       ) from exc


def scale_replicas(scale: Any) -> int:
    """``spec.replicas`` of a Scale someone sent, or a 422 naming it."""
    replicas = ((scale.get("spec") if isinstance(scale, dict) else None) or {}).get("replicas")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ApiError(422, "Invalid", f"spec.replicas: Invalid value: {replicas!r}: must be "
                       "greater than or equal to 0")
    return replicas


def field_validation(request: web.Request) -> str:
    """The request's ``fieldValidation`` (``Warn`` when not given), or a 400."""
    mode = request.query.get("fieldValidation") or "Warn"
    if mode not in schemas.FIELD_VALIDATION:
        raise ApiError(400, "BadRequest", f"fieldValidation {mode!r} is not one of "
                       + ", ".join(schemas.FIELD_VALIDATION))
    return mode


def _dry_run(request: web.Request) -> bool:
    return "All" in request.query.getall("dryRun", [])


def _line(event: KubeObject) -> bytes:
    return json.dumps(event).encode() + b"\n"


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from exc


def _yaml_body(data: bytes) -> dict[str, Any]:
    """An apply patch: one YAML (or JSON) object."""
    try:
        found = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ApiError(400, "BadRequest", f"the apply patch is not YAML: {exc}") from exc
    if not isinstance(found, dict):
        raise ApiError(400, "BadRequest", "an apply patch must be an object")
    return found


def patcher(content_type: str, patch: Any,
            resource: Resource | None = None) -> Callable[[KubeObject], KubeObject]:
    """The change a patch of ``content_type`` makes to an object (of ``resource``, whose
    schema says how a strategic merge patch merges its lists)."""
    if content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        if content_type == STRATEGIC_MERGE_PATCH:
            known = schemas.lab_catalog()
            schema = None if resource is None else known.schema(resource)
            return lambda current: dict(strategic_merge_patch(current, patch, schema,
                                                              known.definitions))
        return lambda current: dict(merge_patch(current, patch))
    if content_type == JSON_PATCH:
        return lambda current: json_patch(current, patch)
    raise ApiError(415, "UnsupportedMediaType",
                   f"the body of the request was in an unknown format: {content_type}")


# ------------------------------------------------------ threaded server


class ApiServer:
    """The server in a thread of its own, with its own event loop.

    Synchronous client calls (a test's, or a watcher's thread) never wait on the
    caller's loop. ``history_limit`` is how many events are kept for watches that resume
    from a resourceVersion; ``expired_as_status`` answers a too-old watch with an HTTP
    410 instead of the ERROR event (older API servers, and etcd-backed watches, do both).
    """

    def __init__(self, resources: Iterable[Resource] = RESOURCES, *, history_limit: int = 1000,
                 expired_as_status: bool = False, port: int = 0,
                 admission: Callable[[ApiState], Admission] | None = None,
                 defaults: bool = False, service_cidr: str | None = None) -> None:
        self.state = ApiState(resources, history_limit, defaults=defaults,
                              service_cidr=service_cidr)
        self.handler = ApiHandler(self.state, admission(self.state) if admission else None,
                                  expired_as_status)
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def expired_as_status(self) -> bool:
        return self.handler.expired_as_status

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        """Serve (again, on the same port after ``stop``)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                            name="kube-api")
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
        if self.handler.admission is not None and self._loop is not None:
            self._run(self.handler.admission.close())
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
            self._loop = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coroutine: Awaitable[Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(_awaited(coroutine), self._loop).result(
            timeout=10)

    async def _serve(self) -> None:
        self._runner = web.AppRunner(self.handler.application(), access_log=None,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def client(self, username: str | None = None) -> client.ApiClient:
        """An official client for this server (as ``username``, when given)."""
        configuration = client.Configuration(host=self.url)
        if username:
            configuration.api_key = {"authorization": f"{TOKEN_PREFIX}{username}"}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)

    # ------------------------------------------------------- test helpers

    def create(self, obj: KubeObject, namespace: str = "") -> KubeObject:
        return self.state.create(self.state.resource(str(obj.get("kind"))), obj, namespace)

    def get(self, kind: str, name: str, namespace: str = "") -> KubeObject:
        return self.state.get(self.state.resource(kind), namespace, name)

    def delete(self, kind: str, name: str, namespace: str = "",
               grace_s: int | None = 0) -> KubeObject:
        """Delete from a test; forced (grace 0) unless ``grace_s`` says otherwise
        (``None``: the pod's own grace period, as a plain ``kubectl delete``)."""
        return self.state.delete(self.state.resource(kind), namespace, name, grace_s=grace_s)

    def patch(self, kind: str, name: str, patch: Any, namespace: str = "",
              content_type: str = MERGE_PATCH) -> KubeObject:
        resource = self.state.resource(kind)
        return self.state.update(resource, namespace, name,
                                 patcher(content_type, patch, resource))

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
        return self.handler.drop_watches(abrupt)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


# ---------------------------------------------------------------- process


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen {text}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _flush_every(state: ApiState, path: Path, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        if state.changed.is_set():
            await asyncio.to_thread(write_state, state, path)


async def serve(listen: str, state_file: Path | None, service_cidr: str | None,
                flush_s: float = 0.2, admission: bool = True) -> None:
    """Serve the lab's API until SIGTERM or SIGINT; the state file is written on the way."""
    from podnet.lab.admission import WebhookAdmission

    host, port = parse_listen(listen)
    state = ApiState(defaults=True, service_cidr=service_cidr)
    if state_file is not None:
        loaded = read_state(state, state_file)
        log.info("loaded %d objects from %s (resourceVersion %d)", loaded, state_file,
                 state.revision)
    handler = ApiHandler(state, WebhookAdmission(state) if admission else None)
    runner = web.AppRunner(handler.application(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    log.info("podnet lab API server on http://%s:%d", host, port)
    stop = stop_on_signals()
    flusher = (asyncio.create_task(_flush_every(state, state_file, flush_s))
               if state_file is not None else None)
    try:
        await stop.wait()
    finally:
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        handler.drop_watches()
        await runner.cleanup()
        if handler.admission is not None:
            await handler.admission.close()
        if state_file is not None:
            write_state(state, state_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m podnet.lab.apiserver",
        description="The lab's stand-in for kube-apiserver (plain HTTP: serve on loopback).",
    )
    parser.add_argument("--listen", default="127.0.0.1:18080", help="HOST:PORT")
    parser.add_argument("--state", type=Path, help="JSON file the objects are kept in")
    parser.add_argument("--service-cidr", default=DEFAULT_SERVICE_CIDR,
                        help="ClusterIP range of Services (default %(default)s)")
    parser.add_argument("--no-admission", action="store_true",
                        help="store objects without calling admission webhooks")
    args = parser.parse_args(argv)
    logs.configure(logging.INFO)
    try:
        asyncio.run(serve(args.listen, args.state, args.service_cidr,
                          admission=not args.no_admission))
    except (OSError, ValueError, ApiError) as exc:
        print(f"podnet lab API server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the main of the module as imported by its name, not of ``__main__``: the
    # classes other modules import (errors caught by type) must be the same objects.
    import importlib

    sys.exit(importlib.import_module("podnet.lab.apiserver").main())
