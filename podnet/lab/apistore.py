"""The lab API server's objects: storage, history, watches, patches, selectors, defaults.

This is the part of ``podnet.lab.apiserver`` that has no HTTP in it, kept apart so each
half reads on its own. ``ApiState`` holds every object by resource, namespace and name,
with one global, increasing resourceVersion as etcd keeps; a history of events for
watches that resume from a resourceVersion (older than ``history_limit`` answers 410);
and open watch streams, fed on every commit. Every method is safe from any thread.
Merge patches (RFC 7386) and JSON patches (RFC 6902), label and field selectors, and
what kube-apiserver's registries add to new objects (``apply_defaults``) are here too,
as is the state file (``write_state``/``read_state``).
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podnet.lab.objects import FOREGROUND_DELETION, RESOURCES, KubeObject, Resource, now_timestamp

log = logging.getLogger(__name__)

DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP_OFFSET = 10
"""Service addresses start at the tenth of the range, as readable as a cluster's."""
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
RESTART_GAP = 1000
"""How far the resourceVersion jumps when objects are restored from the state file."""


class ApiError(Exception):
    """An error answered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> KubeObject:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           409: "Conflict", 410: "Expired", 422: "Invalid", 429: "TooManyRequests",
           500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


def reason_for(code: int) -> str:
    return REASONS.get(code, "Unknown")


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
    if path == "" and name in ("add", "replace"):
        return copy.deepcopy(op["value"])
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


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
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
        namespace, _ = object_key(obj)
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


class ServiceAddresses:
    """ClusterIP allocation for Services, from one range, as kube-apiserver's registry does.

    What is in use is read from the stored Services each time, so nothing can drift
    from the objects (and a restart from the state file needs no allocator state).
    """

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr)

    def assign(self, service: KubeObject, stored: Iterable[KubeObject]) -> None:
        spec = service.setdefault("spec", {})
        if spec.get("clusterIP") == "None" or spec.get("type") == "ExternalName":
            return
        used = {ip for other in stored for ip in _cluster_ips(other)}
        wanted = spec.get("clusterIP") or next(iter(spec.get("clusterIPs") or []), "")
        if wanted:
            self._check(str(wanted), used, service)
            chosen = str(wanted)
        else:
            chosen = self._free(used, service)
        spec["clusterIP"], spec["clusterIPs"] = chosen, [chosen]
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec["ipFamilies"] = [f"IPv{self.network.version}"]
        spec.setdefault("ipFamilyPolicy", "SingleStack")

    def _check(self, wanted: str, used: set[str], service: KubeObject) -> None:
        name = object_key(service)[1]
        try:
            address = ipaddress.ip_address(wanted)
        except ValueError as exc:
            raise ApiError(422, "Invalid", f'Service "{name}" is invalid: spec.clusterIP: '
                           f'Invalid value: "{wanted}": must be a valid IP address') from exc
        if address not in self.network:
            raise ApiError(422, "Invalid", f'Service "{name}" is invalid: spec.clusterIPs: '
                           f'Invalid value: "{wanted}": failed to allocate IP {wanted}: the '
                           f"provided IP ({wanted}) is not in the valid range. The range of "
                           f"valid IPs is {self.network}")
        if wanted in used:
            raise ApiError(422, "Invalid", f'Service "{name}" is invalid: spec.clusterIPs: '
                           f'Invalid value: "{wanted}": failed to allocate IP {wanted}: '
                           "provided IP is already allocated")

    def _free(self, used: set[str], service: KubeObject) -> str:
        first = int(self.network.network_address) + SERVICE_IP_OFFSET
        last = int(self.network.broadcast_address)
        for value in range(first, last):
            candidate = str(ipaddress.ip_address(value))
            if candidate not in used:
                return candidate
        raise ApiError(500, "InternalError", f'Service "{object_key(service)[1]}": '
                       f"the service range {self.network} is full")


def _cluster_ips(service: Mapping[str, Any]) -> list[str]:
    spec = service.get("spec") or {}
    found = [str(ip) for ip in spec.get("clusterIPs") or [] if ip and ip != "None"]
    single = spec.get("clusterIP")
    if single and single != "None" and single not in found:
        found.append(str(single))
    return found


def apply_defaults(resource: Resource, obj: KubeObject, state: ApiState) -> None:
    """What kube-apiserver's registries add to a new object (the lab's server only)."""
    metadata = obj["metadata"]
    if resource.kind == "Namespace":
        metadata.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = metadata["name"]
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif resource.kind == "Pod":
        obj.setdefault("spec", {}).setdefault("schedulerName", "default-scheduler")
        status = obj.get("status") or {}
        status.setdefault("phase", "Pending")
        obj["status"] = status
    elif resource.kind == "Service" and state.service_addresses is not None:
        with state.lock:
            stored = list(state.objects[resource].values())
        state.service_addresses.assign(obj, stored)
    elif resource.kind == "NetworkPolicy":
        spec = obj.setdefault("spec", {})
        if not spec.get("policyTypes"):  # as the API's defaulting sets it
            spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    elif resource.kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        if resource.kind != "ReplicaSet":
            spec.setdefault("revisionHistoryLimit", 10)
        if resource.kind == "StatefulSet":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                               "rollingUpdate": {"partition": 0}})
        if resource.kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
                "maxUnavailable": "25%", "maxSurge": "25%"}})


class ApiState:
    """Objects, history and open watches; every method is safe from any thread."""

    def __init__(self, resources: Iterable[Resource] = RESOURCES, history_limit: int = 1000,
                 *, defaults: bool = False, service_cidr: str | None = None) -> None:
        self.resources = tuple(resources)
        self.history_limit = history_limit
        self.defaults = defaults
        self.service_addresses = ServiceAddresses(service_cidr) if service_cidr else None
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
        self.changed = threading.Event()
        """Set by every commit; the state file writer clears it."""

    def resource(self, kind: str) -> Resource:
        for resource in self.resources:
            if kind in (resource.kind, resource.plural):
                return resource
        raise KeyError(f"the API server does not serve {kind!r}")

    def served(self, api_version: str, kind: str) -> Resource:
        """The resource of a manifest's apiVersion and kind, or a 404 naming them."""
        for resource in self.resources:
            if (resource.api_version, resource.kind) == (api_version, kind):
                return resource
        raise ApiError(404, "NotFound", f"the server does not serve {kind} of {api_version}")

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
        self.changed.set()
        return copy.deepcopy(obj)

    def _stored(self, resource: Resource, namespace: str, name: str) -> KubeObject:
        found = self.objects[resource].get((namespace, name))
        if found is None:
            where = f" in namespace {namespace}" if namespace else ""
            raise ApiError(404, "NotFound", f'{resource.key} "{name}" not found{where}')
        return found

    def get(self, resource: Resource, namespace: str, name: str) -> KubeObject:
        with self.lock:
            return copy.deepcopy(self._stored(resource, namespace, name))

    def find(self, resource: Resource, namespace: str, name: str) -> KubeObject | None:
        with self.lock:
            found = self.objects[resource].get((namespace, name))
            return copy.deepcopy(found) if found is not None else None

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

    def prepare(self, resource: Resource, obj: Any, namespace: str = "") -> KubeObject:
        """A create's object as admission sees it: its namespace set, nothing else yet."""
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body is not a JSON object")
        prepared: KubeObject = copy.deepcopy(obj)
        metadata = prepared.get("metadata")
        if not isinstance(metadata, dict):
            metadata = prepared["metadata"] = {}
        if resource.namespaced:
            namespace = namespace or str(metadata.get("namespace") or "default")
            if metadata.get("namespace", namespace) != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does "
                               "not match the namespace sent on the request")
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        prepared["kind"], prepared["apiVersion"] = resource.kind, resource.api_version
        return prepared

    def create(self, resource: Resource, obj: KubeObject, namespace: str = "",
               dry_run: bool = False) -> KubeObject:
        """Create with no admission: ``stamp``, then ``store``."""
        return self.store(resource, self.stamp(resource, obj, namespace), dry_run)

    def stamp(self, resource: Resource, obj: KubeObject, namespace: str = "") -> KubeObject:
        """What kube-apiserver's ``BeforeCreate`` does: the name generated from
        ``generateName``, the name validated, UID and timestamps set, defaults applied."""
        obj = self.prepare(resource, obj, namespace)
        metadata = obj["metadata"]
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = str(metadata["generateName"]) + uuid.uuid4().hex[:5]
        if not metadata.get("name"):
            raise ApiError(422, "Invalid", f"{resource.kind} is invalid: metadata.name: "
                           "Required value: name or generateName is required")
        problem = name_problem(resource, str(metadata["name"]))
        if problem:
            raise ApiError(422, "Invalid", f'{resource.kind} "{metadata["name"]}" is invalid: '
                           f"metadata.name: Invalid value: {metadata['name']!r}: {problem}")
        metadata.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=now_timestamp())
        metadata.pop("resourceVersion", None)
        check_lease(resource, obj)
        if self.defaults:
            apply_defaults(resource, obj, self)
        return obj

    def check_quota(self, resource: Resource, obj: KubeObject) -> None:
        """The ResourceQuota admission plugin, for the one resource the lab counts: the
        number of pods of a namespace (``spec.hard.pods``), finished pods not counted."""
        if resource.kind != "Pod":
            return
        namespace = str(obj["metadata"].get("namespace") or "")
        quotas = [q for (ns, _), q in self.objects[self.resource("ResourceQuota")].items()
                  if ns == namespace]
        if not quotas:
            return
        used = sum(1 for (ns, _), pod in self.objects[resource].items() if ns == namespace
                   and (pod.get("status") or {}).get("phase") not in POD_GONE_PHASES)
        for quota in quotas:
            hard = ((quota.get("spec") or {}).get("hard") or {}).get("pods")
            if hard is not None and used + 1 > int(hard):
                raise ApiError(403, "Forbidden", f'pods "{obj["metadata"]["name"]}" is '
                               f"forbidden: exceeded quota: {quota['metadata']['name']}, "
                               f"requested: pods=1, used: pods={used}, limited: pods={hard}")

    def store(self, resource: Resource, obj: KubeObject, dry_run: bool = False) -> KubeObject:
        """The storage write of a stamped object: AlreadyExists is found here."""
        with self.lock:
            key = object_key(obj)
            if key in self.objects[resource]:
                raise ApiError(409, "AlreadyExists",
                               f'{resource.key} "{key[1]}" already exists')
            if dry_run:
                return copy.deepcopy(obj)
            self.objects[resource][key] = obj
            return self._commit(resource, "ADDED", obj, None)

    def update(self, resource: Resource, namespace: str, name: str,
               change: Callable[[KubeObject], KubeObject], *, subresource: str = "",
               expect: str | None = None, dry_run: bool = False) -> KubeObject:
        """Replace an object by ``change(current)``, keeping what clients may not change.

        ``subresource="status"`` keeps everything but the status; ``expect`` is a
        resourceVersion the object must still have. An update that changes nothing
        commits nothing (no new resourceVersion, no event), as kube-apiserver does.
        """
        with self.lock:
            current = self._stored(resource, namespace, name)
            if expect is not None and expect != current["metadata"]["resourceVersion"]:
                raise conflict(resource, name)
            updated = change(copy.deepcopy(current))
            if not isinstance(updated, dict) or not isinstance(updated.get("metadata"), dict):
                raise ApiError(400, "BadRequest", "the result is not an object with metadata")
            if subresource == "status":
                updated = {**copy.deepcopy(current), "status": updated.get("status")}
            wanted = updated["metadata"].get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise conflict(resource, name)
            for key in ("uid", "name", "namespace", "creationTimestamp", "generation",
                        "deletionTimestamp", "deletionGracePeriodSeconds"):
                if key in current["metadata"]:
                    updated["metadata"][key] = current["metadata"][key]
                else:
                    updated["metadata"].pop(key, None)
            updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if updated.get("spec") != current.get("spec"):
                updated["metadata"]["generation"] = current["metadata"]["generation"] + 1
            updated["kind"], updated["apiVersion"] = resource.kind, resource.api_version
            check_lease(resource, updated)
            if updated == current or dry_run:
                return copy.deepcopy(updated)
            if _finished_deleting(resource, updated):
                del self.objects[resource][(namespace, name)]
                return self._commit(resource, "DELETED", updated, copy.deepcopy(current))
            self.objects[resource][(namespace, name)] = updated
            return self._commit(resource, "MODIFIED", updated, copy.deepcopy(current))

    def delete(self, resource: Resource, namespace: str, name: str,
               dry_run: bool = False, grace_s: int | None = None,
               propagation: str | None = None) -> KubeObject:
        """Delete as kube-apiserver does: an object with finalizers, or a pod with a grace
        period, only gets ``deletionTimestamp`` (the kubelet removes a pod once it has
        stopped, with grace 0; clearing the last finalizer removes the rest). A pod that
        is not on a node, or has finished, goes at once; ``grace_s=0`` forces.

        ``propagation`` is the DeleteOptions' ``propagationPolicy``: ``Background`` (the
        default; the garbage collector removes dependents once the owner is gone),
        ``Foreground`` (the owner waits, with the ``foregroundDeletion`` finalizer, until
        the collector has removed its dependents) or ``Orphan`` (dependents lose their
        owner reference and stay; the real collector does it behind an ``orphan``
        finalizer, the lab at once)."""
        if propagation not in PROPAGATION_POLICIES:
            raise ApiError(400, "BadRequest", f"propagationPolicy {propagation!r} is not one "
                           f"of {', '.join(p for p in PROPAGATION_POLICIES if p)}")
        with self.lock:
            current = self._stored(resource, namespace, name)
            if propagation == "Orphan" and not dry_run:
                self._orphan_dependents(current)
            if propagation == "Foreground":
                current = self._with_finalizer(resource, current, FOREGROUND_DELETION, dry_run)
            grace = deletion_grace(resource, current, grace_s)
            finalizers = current["metadata"].get("finalizers") or []
            if grace == 0 and not finalizers:
                if dry_run:
                    return copy.deepcopy(current)
                del self.objects[resource][(namespace, name)]
                return self._commit(resource, "DELETED", current, copy.deepcopy(current))
            before = current["metadata"].get("deletionGracePeriodSeconds")
            if before is not None and before <= grace:
                return copy.deepcopy(current)  # already terminating, no sooner
            updated = copy.deepcopy(current)
            updated["metadata"]["deletionTimestamp"] = now_timestamp(grace)
            updated["metadata"]["deletionGracePeriodSeconds"] = grace
            if dry_run:
                return updated
            self.objects[resource][(namespace, name)] = updated
            return self._commit(resource, "MODIFIED", updated, copy.deepcopy(current))

    def _orphan_dependents(self, owner: KubeObject) -> None:
        """Drop ``owner`` from the ownerReferences of everything it owns."""
        uid = owner["metadata"]["uid"]
        for resource, objects in self.objects.items():
            for key, obj in list(objects.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                kept = [ref for ref in refs if ref.get("uid") != uid]
                if len(kept) == len(refs):
                    continue
                updated = copy.deepcopy(obj)
                updated["metadata"]["ownerReferences"] = kept
                if not kept:
                    del updated["metadata"]["ownerReferences"]
                objects[key] = updated
                self._commit(resource, "MODIFIED", updated, obj)

    def _with_finalizer(self, resource: Resource, obj: KubeObject, finalizer: str,
                        dry_run: bool) -> KubeObject:
        finalizers = obj["metadata"].get("finalizers") or []
        if finalizer in finalizers:
            return obj
        updated = copy.deepcopy(obj)
        updated["metadata"]["finalizers"] = [*finalizers, finalizer]
        if dry_run:
            return updated
        self.objects[resource][object_key(obj)] = updated
        return self._commit(resource, "MODIFIED", updated, obj)

    def bind(self, namespace: str, name: str, binding: Any) -> None:
        """The ``pods/binding`` subresource: what the scheduler posts to place a pod."""
        target = binding.get("target") if isinstance(binding, dict) else None
        node = target.get("name") if isinstance(target, dict) else None
        if not node:
            raise ApiError(422, "Invalid", "Binding is invalid: target.name: Required value")

        def place(pod: KubeObject) -> KubeObject:
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise ApiError(409, "Conflict", f"pod {name} is already assigned to node "
                               f"\"{spec['nodeName']}\"")
            spec["nodeName"] = node
            conditions = [c for c in (pod.get("status") or {}).get("conditions") or []
                          if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True",
                               "lastTransitionTime": now_timestamp()})
            pod.setdefault("status", {})["conditions"] = conditions
            return pod

        self.update(self.resource("Pod"), namespace, name, place)

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

    # ------------------------------------------------------- persistence

    def snapshot(self) -> dict[str, Any]:
        """Every object and the current resourceVersion, as JSON values.

        The objects are the stored ones, not copies: a stored object is never changed
        after its commit (an update stores a new one), so the caller may serialise the
        snapshot without holding the lock."""
        with self.lock:
            self.changed.clear()
            return {
                "revision": self.revision,
                "objects": {r.key: [o for _, o in sorted(self.objects[r].items())]
                            for r in self.resources if self.objects[r]},
            }

    def restore(self, data: Mapping[str, Any]) -> int:
        """Load a ``snapshot``; returns how many objects it held.

        History starts empty and the resourceVersion jumps by ``RESTART_GAP``, so every
        watcher that resumes from before the restart is told to relist (410), as after an
        etcd compaction; one that saw a change the state file never kept (a SIGKILL
        between a commit and the next write) is corrected by that list.
        """
        by_key = {r.key: r for r in self.resources}
        loaded = 0
        with self.lock:
            for key, items in (data.get("objects") or {}).items():
                resource = by_key.get(key)
                if resource is None:
                    log.warning("state file: skipping %d objects of %s (not served)",
                                len(items), key)
                    continue
                for obj in items:
                    self.objects[resource][object_key(obj)] = obj
                    loaded += 1
            self.revision = max(self.revision, int(data.get("revision") or 1)) + RESTART_GAP
            self.compacted = self.revision
            self.history.clear()
        return loaded


PROPAGATION_POLICIES = (None, "Background", "Foreground", "Orphan")


def conflict(resource: Resource, name: str) -> ApiError:
    return ApiError(409, "Conflict", f"Operation cannot be fulfilled on {resource.key} "
                    f'"{name}": the object has been modified; please apply your changes to '
                    "the latest version and try again")


def _revision(text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"invalid resource version {text!r}") from exc


def write_state(state: ApiState, path: Path) -> None:
    """Write the state file atomically (a crash leaves the old one or the new one)."""
    data = json.dumps(state.snapshot(), separators=(",", ":"), default=str)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(data)
    os.replace(temporary, path)


def read_state(state: ApiState, path: Path) -> int:
    """Load the state file if there is one; returns how many objects it held."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as exc:
        raise ApiError(500, "InternalError", f"state file {path} is unreadable: {exc}") from exc
    return state.restore(data)


DEFAULT_TERMINATION_GRACE_S = 30
POD_GONE_PHASES = ("Succeeded", "Failed")


def deletion_grace(resource: Resource, obj: KubeObject, asked: int | None) -> int:
    """The grace period a DELETE gives ``obj``: only pods have one (kube-apiserver's
    pod strategy), taken from the request, else ``terminationGracePeriodSeconds``; zero
    for a pod on no node or one that has finished."""
    if resource.kind != "Pod":
        return 0
    spec = obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in POD_GONE_PHASES:
        return 0
    if asked is not None:
        return max(0, asked)
    configured = spec.get("terminationGracePeriodSeconds")
    return int(configured) if isinstance(configured, int) else DEFAULT_TERMINATION_GRACE_S


def _finished_deleting(resource: Resource, obj: KubeObject) -> bool:
    """A terminating object whose finalizers are all cleared (a pod: and whose grace was
    ended by the kubelet's grace-0 delete) is removed by the update that cleared them."""
    meta = obj["metadata"]
    if not meta.get("deletionTimestamp") or meta.get("finalizers"):
        return False
    return resource.kind != "Pod" or meta.get("deletionGracePeriodSeconds") == 0


MICRO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)")
"""A ``metav1.MicroTime`` as kube-apiserver decodes it (Go's layout
``2006-01-02T15:04:05.000000Z07:00``: exactly six fractional digits)."""


def check_lease(resource: Resource, obj: Mapping[str, Any]) -> None:
    """What kube-apiserver refuses in a ``coordination.k8s.io/v1`` Lease: a time that is
    not a MicroTime (400, at decoding), a ``leaseDurationSeconds`` that is not above 0 or
    a negative ``leaseTransitions`` (422, its validation)."""
    if resource.kind != "Lease":
        return
    spec = obj.get("spec") or {}
    name = object_key(obj)[1]
    for key in ("acquireTime", "renewTime"):
        value = spec.get(key)
        if value is not None and not (isinstance(value, str) and MICRO_TIME.fullmatch(value)):
            raise ApiError(400, "BadRequest", f'Lease in version "v1" cannot be handled as a '
                           f"Lease: spec.{key}: parsing time {json.dumps(value)} as "
                           '"2006-01-02T15:04:05.000000Z07:00": not a MicroTime')
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        raise ApiError(422, "Invalid", f'Lease.coordination.k8s.io "{name}" is invalid: '
                       f"spec.leaseDurationSeconds: Invalid value: {duration}: must be "
                       "greater than 0")
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
        raise ApiError(422, "Invalid", f'Lease.coordination.k8s.io "{name}" is invalid: '
                       f"spec.leaseTransitions: Invalid value: {transitions}: must be "
                       "greater than or equal to 0")


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAMED = frozenset({"Namespace", "Service"})


def name_problem(resource: Resource, name: str) -> str:
    """Why kube-apiserver would refuse ``name`` for this kind ('' when it is fine):
    a DNS-1123 label for Namespaces and Services, a DNS-1123 subdomain for the rest."""
    if resource.kind in _LABEL_NAMED:
        if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
            return ("a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', start and end with one, and be at most 63 characters")
        return ""
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric "
                "character")
    return ""

