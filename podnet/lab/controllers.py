"""The lab's controller manager: what kube-controller-manager and kube-scheduler do,
minimally, so that ordinary manifests become pods on the simulated nodes.

podnet decides a pod's address at admission; in a cluster the pods it admits are made
by Deployments, StatefulSets and the scheduler. The lab must make them the same way, so
podnet sees what it sees in a cluster (pods without names, ``generateName``,
ownerReferences, node affinity it injected itself). Everything goes through the API
server with the official client, so every pod is admitted by the real webhook:

- **Deployments** get a ReplicaSet ``<deployment>-<pod-template-hash>`` (the hash of
  the pod template, in Kubernetes' alphabet), older ReplicaSets are scaled to zero;
- **ReplicaSets** create pods with ``generateName: <replicaset>-`` and a controller
  ownerReference, in slow-start batches (1, 2, 4, ...) that stop at the first refusal,
  whose message lands in a ``ReplicaFailure`` condition on the owner; creation is
  retried with exponential backoff. Surplus pods go, unscheduled and unready first;
- **StatefulSets** create ``<statefulset>-<N>`` in order, each only once the previous
  one is ready (``OrderedReady``; ``Parallel`` creates them all), with ``hostname`` and
  ``subdomain`` set; ordinals past ``replicas`` go, highest first;
- **garbage collection**: ReplicaSets, pods and EndpointSlices whose controlling owner
  is gone are deleted;
- **the scheduler** places each unscheduled pod on a node that is ready, schedulable,
  matches its ``nodeSelector`` and its required node affinity (``podnet.lab.selectors``:
  In/NotIn/Exists/DoesNotExist/Gt/Lt, ``matchFields`` on ``metadata.name``) and, when
  one is configured, passes podnet's scheduler extender (``POST <prefix>/filter``); the
  least loaded such node wins, so pods spread. It binds through ``pods/binding``; a pod
  with no node gets ``PodScheduled=False`` with kube-scheduler's message;
- **the kubelet** (``podnet.lab.kubelet.Kubelet``) attaches pods bound to the nodes it
  serves and reports them ``Running`` with their IPs, or the reason they are not; with
  no kubelet, pods stay ``Pending`` once scheduled (the lab without node agents);
- **EndpointSlices**: for each Service with a selector, one slice per address family
  with the matching pods (ready when ``Running`` with an IP) and the Service's ports,
  target ports resolved (named ports through the pod's container ports).

Each controller reads local copies of the objects (``podnet_plumbing.kube.Watcher`` stores) and
works in passes: an event wakes the manager, a pass reconciles everything from the
copies. What a pass wrote is overlaid on the copies until the watch has delivered it
(``View``), so a pass never acts twice on a stale copy; every action is idempotent, so
a restart simply reconciles again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import aiohttp
from kubernetes import client

from ipam import names
from podnet.lab.kubelet import Attachment, Kubelet
from podnet.lab.objects import (
    FOREGROUND_DELETION,
    REPLICA_FAILURE,
    KubeObject,
    controlled_by,
    controller_ref,
    key_of,
    metadata,
    name_of,
    namespace_of,
    now_timestamp,
    owner_reference,
    pod_ips,
    pod_ready,
    replicas_of,
    revision_of,
    spec_of,
    status_of,
    terminal,
    terminating,
    timestamp_seconds,
    uid_of,
)
from podnet.lab.rest import Rest, RestError
from podnet.lab.selectors import equality_selector_matches, labels_of, misfit
from podnet_plumbing import kube, logs
from podnet_plumbing.signals import stop_on_signals
from podnet_plumbing.tasks import raise_if_cancelled

log = logging.getLogger(__name__)

T = TypeVar("T")
KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "Pod", "Node", "Service", "EndpointSlice")
TEMPLATE_HASH = "pod-template-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
ENDPOINTSLICE_CONTROLLER = "endpointslice-controller.k8s.io"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""Kubernetes' ``rand.SafeEncodeString`` alphabet (no vowels, no look-alikes)."""
OWNERS = {"ReplicaSet": ("Deployment",), "Pod": ("ReplicaSet", "StatefulSet"),
          "EndpointSlice": ("Service",)}
"""Which controlling owners the garbage collector follows, by dependent kind."""


# ----------------------------------------------------------------- helpers


def fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def template_hash(template: Mapping[str, Any], collisions: int = 0) -> str:
    """The ``pod-template-hash`` of a pod template, as Deployments name ReplicaSets."""
    text = json.dumps(template, sort_keys=True, default=str) + str(collisions)
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)]
                   for c in str(fnv32a(text.encode())))


def pod_from_template(template: Mapping[str, Any], owner: Mapping[str, Any],
                      labels: Mapping[str, str], **identity: str) -> KubeObject:
    """A pod of ``owner`` from its template: ``name=...`` or ``generateName=...``."""
    template_meta = metadata(template)
    meta: dict[str, Any] = {
        "namespace": namespace_of(owner),
        "labels": {**dict(template_meta.get("labels") or {}), **labels},
        "ownerReferences": [owner_reference(owner)],
        **identity,
    }
    if template_meta.get("annotations"):
        meta["annotations"] = dict(template_meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": copy.deepcopy(dict(spec_of(template)))}


# ------------------------------------------------------------ local copies


class View:
    """A watcher's store overlaid with this manager's own writes.

    A write's answer carries its resourceVersion; once the store has seen that version
    (resourceVersions are global and increasing), the store holds the write or
    something newer, and the overlay entry goes.
    """

    def __init__(self, store: kube.Store) -> None:
        self.store = store
        self._written: dict[tuple[str, str], tuple[int, KubeObject | None]] = {}

    def note(self, obj: Mapping[str, Any], deleted: bool = False) -> None:
        self._written[key_of(obj)] = (revision_of(obj), None if deleted else dict(obj))

    def _settle(self) -> None:
        try:
            seen = int(self.store.resource_version or 0)
        except ValueError:
            seen = 0
        self._written = {k: v for k, v in self._written.items() if v[0] > seen}

    def list(self, namespace: str | None = None) -> list[KubeObject]:
        self._settle()
        merged = {key_of(obj): obj for obj in self.store.list(namespace)}
        for key, (_, obj) in self._written.items():
            if namespace is not None and key[0] != namespace:
                continue
            if obj is None:
                merged.pop(key, None)
            else:
                merged[key] = obj
        return [merged[key] for key in sorted(merged)]

    def get(self, name: str, namespace: str = "") -> KubeObject | None:
        self._settle()
        written = self._written.get((namespace, name))
        if written is not None:
            return written[1]
        return self.store.get(name, namespace)

    def uids(self) -> set[str]:
        return {uid_of(obj) for obj in self.list()}


# --------------------------------------------------------- scheduler extender


class Extender(Protocol):
    async def filter(self, pod: Mapping[str, Any],
                     nodes: Sequence[KubeObject]) -> tuple[list[KubeObject], dict[str, str]]:
        """The nodes that pass, and why the others failed."""
        ...

    async def close(self) -> None: ...


class HttpExtender:
    """A kube-scheduler extender over HTTPS (``filter`` verb), ignorable when unreachable."""

    def __init__(self, url_prefix: str, ca_file: Path | None = None,
                 timeout_s: float = 5.0) -> None:
        self.url = url_prefix.rstrip("/") + "/filter"
        self.context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def filter(self, pod: Mapping[str, Any],
                     nodes: Sequence[KubeObject]) -> tuple[list[KubeObject], dict[str, str]]:
        args = {"Pod": pod, "Nodes": {"items": list(nodes)}, "NodeNames": None}
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(self.url, json=args, ssl=self.context,
                                          timeout=self.timeout) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("scheduler extender %s unreachable, ignored: %s", self.url, exc)
            return list(nodes), {}
        return filter_answer(answer, nodes)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def filter_answer(answer: Any, nodes: Sequence[KubeObject]) -> tuple[list[KubeObject],
                                                                    dict[str, str]]:
    """The passing nodes and failure reasons of an ``ExtenderFilterResult``."""
    if not isinstance(answer, Mapping):
        return list(nodes), {}
    if answer.get("Error"):
        return [], {name_of(n): str(answer["Error"]) for n in nodes}
    failed = {str(k): str(v) for k, v in (answer.get("FailedNodes") or {}).items()}
    failed.update({str(k): str(v) for k, v in
                   (answer.get("FailedAndUnresolvableNodes") or {}).items()})
    listed = answer.get("Nodes")
    if isinstance(listed, Mapping) and listed.get("items") is not None:
        passing = {name_of(n) for n in listed["items"]}
    else:
        passing = {str(n) for n in answer.get("NodeNames") or []}
    return [n for n in nodes if name_of(n) in passing and name_of(n) not in failed], failed


# ------------------------------------------------------------ endpoint slices


def resolve_port(service_port: Mapping[str, Any], pod: Mapping[str, Any]) -> int | None:
    """The pod port a Service port sends to (a named ``targetPort`` through the pod)."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    protocol = service_port.get("protocol", "TCP")
    for container in spec_of(pod).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def _family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def desired_slices(service: Mapping[str, Any],
                   pods: Iterable[Mapping[str, Any]]) -> list[KubeObject]:
    """The EndpointSlices the Service should have: one per (address family, ports)."""
    ports = [p for p in spec_of(service).get("ports") or [] if isinstance(p, Mapping)]
    groups: dict[tuple[str, tuple[Any, ...]], list[KubeObject]] = {}
    for pod in pods:
        resolved = tuple((p.get("name") or "", p.get("protocol", "TCP"), resolve_port(p, pod))
                         for p in ports)
        for ip in pod_ips(pod):
            groups.setdefault((_family(ip), resolved), []).append(_endpoint(pod, ip))
    if not groups:
        families = spec_of(service).get("ipFamilies") or ["IPv4"]
        empty = tuple((p.get("name") or "", p.get("protocol", "TCP"), resolve_port(p, {}))
                      for p in ports)
        groups[(str(families[0]), empty)] = []
    return [_slice(service, family, resolved, endpoints)
            for (family, resolved), endpoints in sorted(groups.items(), key=lambda i: i[0][0])]


def _endpoint(pod: Mapping[str, Any], ip: str) -> KubeObject:
    serving = pod_ready(pod)
    ending = terminating(pod)
    endpoint: KubeObject = {
        "addresses": [ip],
        "conditions": {"ready": serving and not ending, "serving": serving,
                       "terminating": ending},
        "targetRef": {"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod),
                      "uid": uid_of(pod)},
    }
    if spec_of(pod).get("nodeName"):
        endpoint["nodeName"] = spec_of(pod)["nodeName"]
    return endpoint


def _slice(service: Mapping[str, Any], family: str, resolved: tuple[Any, ...],
           endpoints: list[KubeObject]) -> KubeObject:
    digest = hashlib.sha256(json.dumps([family, resolved]).encode()).hexdigest()[:5]
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name_of(service)[:50]}-{family[-2:].lower()}{digest}",
            "namespace": namespace_of(service),
            "labels": {SERVICE_NAME_LABEL: name_of(service),
                       MANAGED_BY_LABEL: ENDPOINTSLICE_CONTROLLER},
            "ownerReferences": [owner_reference(service)],
        },
        "addressType": family,
        "endpoints": sorted(endpoints, key=lambda e: (e["targetRef"]["name"], e["addresses"])),
        "ports": [{"name": name, "protocol": protocol, "port": port}
                  for name, protocol, port in resolved if port is not None],
    }


# --------------------------------------------------------------- settings


@dataclass(frozen=True)
class ControllerSettings:
    resync_s: float = 30.0
    """A full pass at least this often, events or not."""
    write_concurrency: int = 16
    attach_concurrency: int = 16
    retry_initial_s: float = 0.5
    retry_max_s: float = 5.0
    """Short, so that pods refused for a passing reason (a subnet fenced until the sync
    worker's resync) are made soon after it passes."""


@dataclass
class Retry:
    """Exponential backoff per owner or pod after a refused create or a failed attach."""

    initial_s: float
    max_s: float
    _until: dict[str, tuple[float, float]] = field(default_factory=dict)

    def waiting(self, key: str) -> bool:
        entry = self._until.get(key)
        return entry is not None and entry[0] > time.monotonic()

    def failed(self, key: str) -> float:
        """Record a failure; returns how long to wait."""
        _, previous = self._until.get(key, (0.0, 0.0))
        delay = min(self.max_s, previous * 2 if previous else self.initial_s)
        self._until[key] = (time.monotonic() + delay, delay)
        return delay

    def succeeded(self, key: str) -> None:
        self._until.pop(key, None)


# ---------------------------------------------------------------- manager


class ControllerManager:
    """Every lab controller over one client, in passes woken by watch events."""

    def __init__(self, api: client.ApiClient, *, kubelet: Kubelet | None = None,
                 extender: Extender | None = None,
                 settings: ControllerSettings | None = None,
                 watch: kube.WatchSettings | None = None) -> None:
        self.rest = Rest(api)
        self.core = client.CoreV1Api(api)
        self.kubelet = kubelet
        self.extender = extender
        self.settings = settings or ControllerSettings()
        self.retry = Retry(self.settings.retry_initial_s, self.settings.retry_max_s)
        self.watchers = {kind: kube.Watcher(kube.lister(api, kind), kind, self._on_event,
                                            settings=watch) for kind in KINDS}
        self.views = {kind: View(watcher.store) for kind, watcher in self.watchers.items()}
        self.passes = 0
        self._wake = asyncio.Event()
        self._writes = asyncio.Semaphore(self.settings.write_concurrency)
        self._attaches = asyncio.Semaphore(self.settings.attach_concurrency)
        self._binding: dict[str, str] = {}
        """Pods bound in a pass whose binding the pod store has not shown yet."""
        self._attached: dict[str, tuple[KubeObject, str]] = {}
        self._busy: set[str] = set()
        """Pods with an attach or detach running."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def _on_event(self, _: kube.WatchEvent) -> None:
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _wake_later(self, delay_s: float) -> None:
        asyncio.get_running_loop().call_later(delay_s, self._wake.set)

    # ------------------------------------------------------------ running

    async def run(self) -> None:
        """Run until cancelled."""
        for watcher in self.watchers.values():
            watcher.start()
        try:
            for watcher in self.watchers.values():
                await watcher.store.wait_synced()
            log.info("controllers: all kinds listed; reconciling")
            while True:
                raise_if_cancelled()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
                # cancellation that lands as the event is set, and this loop then ran on
                # after its task was cancelled, holding its owner's shutdown forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.resync_s):
                        await self._wake.wait()
                self._wake.clear()
                await self.reconcile()
        finally:
            await self.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self.watchers.values()))
        if self.extender is not None:
            await self.extender.close()

    async def reconcile(self) -> None:
        """One pass of every controller, in the order a cluster's would settle."""
        self.passes += 1
        for stage in (self.deployments, self.replicasets, self.statefulsets,
                      self.collect_garbage, self.node_lifecycle, self.schedule,
                      self.run_kubelet,
                      self.endpoint_slices, self.workload_status):
            try:
                await stage()
            except Exception:
                log.exception("controllers: %s failed; retrying on the next pass",
                              stage.__name__)
                self._wake_later(self.settings.retry_initial_s)

    async def _call(self, function: Callable[..., T], *args: Any, **options: Any) -> T:
        async with self._writes:
            return await asyncio.to_thread(function, *args, **options)

    async def _gather(self, calls: Iterable[Awaitable[Any]]) -> list[Any]:
        return list(await asyncio.gather(*calls, return_exceptions=True))

    async def _create(self, obj: KubeObject) -> KubeObject:
        created = await self._call(self.rest.create, obj)
        self.views[str(obj["kind"])].note(created)
        return created

    async def _delete(self, obj: Mapping[str, Any], grace_s: int | None = None) -> None:
        kind = str(obj.get("kind"))
        deleted = await self._call(self.rest.delete, kind, name_of(obj), namespace_of(obj),
                                   grace_s)
        if deleted is None:
            return
        answer = deleted if metadata(deleted).get("name") else obj
        still_there = terminating(answer) and grace_s != 0 and (
            metadata(answer).get("finalizers") or metadata(answer).get(
                "deletionGracePeriodSeconds"))
        self.views[kind].note({**answer, "kind": kind}, deleted=not still_there)

    async def _patch(self, obj: Mapping[str, Any], patch: Any,
                     subresource: str = "") -> KubeObject:
        kind = str(obj.get("kind"))
        patched = await self._call(self.rest.patch, kind, name_of(obj), patch,
                                   namespace_of(obj), subresource=subresource)
        patched.setdefault("kind", kind)
        self.views[kind].note(patched)
        return patched

    # --------------------------------------------------------- workloads

    async def deployments(self) -> None:
        replicasets = self.views["ReplicaSet"]
        for deployment in self.views["Deployment"].list():
            if terminating(deployment):
                continue  # being deleted: its ReplicaSets are the collector's now
            owned = [rs for rs in replicasets.list(namespace_of(deployment))
                     if controlled_by(rs, deployment)]
            template = spec_of(deployment).get("template") or {}
            wanted = template_hash(template, int(status_of(deployment).get("collisionCount")
                                                 or 0))
            current = next((rs for rs in owned if labels_of(rs).get(TEMPLATE_HASH) == wanted),
                           None)
            replicas = replicas_of(deployment)
            try:
                if current is None:
                    await self._create(replicaset_for(deployment, wanted))
                elif replicas_of(current) != replicas:
                    await self._patch(current, {"spec": {"replicas": replicas}})
                for old in owned:
                    if old is not current and replicas_of(old) != 0:
                        await self._patch(old, {"spec": {"replicas": 0}})
            except kube.KubeError as exc:
                log.warning("deployment %s/%s: %s", *key_of(deployment), exc)

    async def replicasets(self) -> None:
        pods = self.views["Pod"]
        for replicaset in self.views["ReplicaSet"].list():
            if terminating(replicaset):
                continue
            owned = [p for p in pods.list(namespace_of(replicaset))
                     if controlled_by(p, replicaset) and not terminal(p)
                     and not terminating(p)]
            missing = replicas_of(replicaset) - len(owned)
            if missing > 0 and not self.retry.waiting(uid_of(replicaset)):
                template = spec_of(replicaset).get("template") or {}
                extra = {TEMPLATE_HASH: labels_of(replicaset).get(TEMPLATE_HASH, "")}
                extra = {k: v for k, v in extra.items() if v}
                fresh = [pod_from_template(template, replicaset, extra,
                                           generateName=f"{name_of(replicaset)}-")
                         for _ in range(missing)]
                await self._created_for(replicaset, fresh)
            elif missing < 0:
                await self._gather(self._delete(p) for p in surplus(owned, -missing))

    async def statefulsets(self) -> None:
        for statefulset in self.views["StatefulSet"].list():
            if self.retry.waiting(uid_of(statefulset)) or terminating(statefulset):
                continue
            owned = {ordinal: pod for pod in self.views["Pod"].list(namespace_of(statefulset))
                     if controlled_by(pod, statefulset)
                     and (ordinal := ordinal_of(pod, statefulset)) is not None}
            fresh, stale = statefulset_plan(statefulset, owned)
            await self._gather(self._delete(p) for p in stale)
            await self._created_for(statefulset, fresh)

    async def _created_for(self, owner: Mapping[str, Any], pods: Sequence[KubeObject]) -> None:
        """Create ``pods`` in slow-start batches; record a refusal on the owner."""
        problem: str | None = None
        index, batch = 0, 1
        while index < len(pods) and problem is None:
            results = await self._gather(self._create(p) for p in pods[index:index + batch])
            failures = [r for r in results if isinstance(r, Exception)]
            if failures:
                problem = creation_problem(failures[0])
            index, batch = index + batch, batch * 2
        if problem is not None:
            delay = self.retry.failed(uid_of(owner))
            log.warning("%s %s/%s: %s (retrying in %.1fs)", owner.get("kind"),
                        *key_of(owner), problem, delay)
            self._wake_later(delay)
        elif pods:
            self.retry.succeeded(uid_of(owner))
        await self._set_failure(owner, problem)

    async def _set_failure(self, owner: Mapping[str, Any], problem: str | None) -> None:
        conditions = [c for c in status_of(owner).get("conditions") or []
                      if c.get("type") != REPLICA_FAILURE]
        current = next((c for c in status_of(owner).get("conditions") or []
                        if c.get("type") == REPLICA_FAILURE), None)
        if problem is None and current is None:
            return
        if problem is not None and current is not None and current.get("message") == problem:
            return
        if problem is not None:
            conditions.append({"type": REPLICA_FAILURE, "status": "True",
                               "reason": "FailedCreate", "message": problem,
                               "lastTransitionTime": now_timestamp()})
        with contextlib.suppress(kube.KubeError):
            await self._patch(owner, {"status": {"conditions": conditions}}, "status")

    async def node_lifecycle(self) -> None:
        """As kube-controller-manager's node lifecycle controller: a node that is not
        Ready gets the ``NoExecute`` taint, and its pods are deleted (gracefully) once
        they have tolerated it for their ``tolerationSeconds`` (300 by default, which the
        DefaultTolerationSeconds admission plugin would add). Nobody stops them there:
        they stay Terminating, as on a lost node."""
        now = time.time()
        for node in self.views["Node"].list():
            since = not_ready_since(node)
            taints = [t for t in spec_of(node).get("taints") or []
                      if t.get("key") != NOT_READY_TAINT]
            if since is None:
                if len(taints) != len(spec_of(node).get("taints") or []):
                    await self._patch({**node, "kind": "Node"}, {"spec": {"taints": taints}})
                continue
            if len(taints) == len(spec_of(node).get("taints") or []):
                taint = {"key": NOT_READY_TAINT, "effect": "NoExecute",
                         "timeAdded": now_timestamp()}
                await self._patch({**node, "kind": "Node"},
                                  {"spec": {"taints": [*taints, taint]}})
            for pod in self.views["Pod"].list():
                if spec_of(pod).get("nodeName") != name_of(node) or terminating(pod):
                    continue
                tolerated = toleration_seconds(pod)
                if tolerated is not None and now >= since + tolerated:
                    log.info("pod %s/%s: evicted, node %s not ready for %.0f s",
                             *key_of(pod), name_of(node), now - since)
                    with contextlib.suppress(kube.KubeError):
                        await self._delete({**pod, "kind": "Pod"})
                elif tolerated is not None:
                    self._wake_later(since + tolerated - now)

    async def collect_garbage(self) -> None:
        """Delete what a gone owner (or one deleted in the foreground) controlled; let a
        foreground deletion finish once nothing it owns is left."""
        doomed, owned = [], set()
        for kind, owner_kinds in OWNERS.items():
            live = {k: self.views[k].uids() for k in owner_kinds}
            ending = {uid_of(o) for k in owner_kinds for o in self.views[k].list()
                      if FOREGROUND_DELETION in (metadata(o).get("finalizers") or [])}
            for obj in self.views[kind].list():
                ref = controller_ref(obj)
                if ref is None or ref.get("kind") not in live:
                    continue
                owned.add(str(ref.get("uid")))
                if ref.get("uid") not in live[str(ref.get("kind"))] or ref.get("uid") in ending:
                    doomed.append({**obj, "kind": kind})
        finished = [self._finish_foreground(owner) for owner in self._foreground_owners()
                    if uid_of(owner) not in owned]
        for result in await self._gather([*(self._delete(obj) for obj in doomed
                                            if not terminating(obj)), *finished]):
            if isinstance(result, Exception):
                log.warning("garbage collection: %s", result)

    def _foreground_owners(self) -> list[KubeObject]:
        kinds = {kind for owner_kinds in OWNERS.values() for kind in owner_kinds}
        return [{**owner, "kind": kind} for kind in sorted(kinds)
                for owner in self.views[kind].list()
                if FOREGROUND_DELETION in (metadata(owner).get("finalizers") or [])]

    async def _finish_foreground(self, owner: KubeObject) -> None:
        kept = [f for f in metadata(owner).get("finalizers") or [] if f != FOREGROUND_DELETION]
        await self._patch(owner, {"metadata": {
            "finalizers": kept, "resourceVersion": metadata(owner).get("resourceVersion")}})

    # --------------------------------------------------------- scheduler

    async def schedule(self) -> None:
        pods = self.views["Pod"].list()
        live = {uid_of(p): p for p in pods}
        self._binding = {uid: node for uid, node in self._binding.items()
                         if uid in live and not spec_of(live[uid]).get("nodeName")}
        waiting = sorted((p for p in pods if needs_scheduling(p) and uid_of(p) not in
                          self._binding),
                         key=lambda p: (str(metadata(p).get("creationTimestamp")), key_of(p)))
        if not waiting:
            return
        nodes = self.views["Node"].list()
        load = Counter(str(spec_of(p).get("nodeName")) for p in pods
                       if spec_of(p).get("nodeName") and not terminal(p))
        load.update(self._binding.values())
        choices = await self._gather(self._candidates(pod, nodes) for pod in waiting)
        binds: list[Awaitable[None]] = []
        for pod, choice in zip(waiting, choices, strict=True):
            if isinstance(choice, BaseException):
                log.warning("scheduling %s/%s: %s", *key_of(pod), choice)
                continue
            fits, message = choice
            if not fits:
                binds.append(self._unschedulable(pod, message))
                continue
            chosen = min(fits, key=lambda n: (load[name_of(n)], name_of(n)))
            load[name_of(chosen)] += 1
            self._binding[uid_of(pod)] = name_of(chosen)
            binds.append(self._bind(pod, name_of(chosen)))
        await self._gather(binds)

    async def _candidates(self, pod: Mapping[str, Any],
                          nodes: Sequence[KubeObject]) -> tuple[list[KubeObject], str]:
        reasons: Counter[str] = Counter()
        fits = []
        for node in nodes:
            why = misfit(pod, node)
            if why is None:
                fits.append(node)
            else:
                reasons[why] += 1
        if fits and self.extender is not None:
            fits, failed = await self.extender.filter(pod, fits)
            reasons.update(failed.values())
        return fits, unschedulable_message(len(nodes), reasons)

    async def _event(self, pod: Mapping[str, Any], reason: str, message: str,
                     component: str) -> None:
        """A Warning Event on the pod, as kube-scheduler and the kubelet record them, so
        ``kubectl describe pod`` says why it is not running (never fails the caller)."""
        involved = {"kind": "Pod", "namespace": namespace_of(pod), "name": name_of(pod),
                    "uid": uid_of(pod)}
        try:
            await kube.record_event(self.core, involved, reason, message, component=component)
        except kube.KubeError as exc:
            log.warning("pod %s/%s: event %s not recorded: %s", *key_of(pod), reason, exc)

    async def _bind(self, pod: Mapping[str, Any], node: str) -> None:
        try:
            await self._call(self.rest.bind, namespace_of(pod), name_of(pod), node)
        except kube.KubeError as exc:
            self._binding.pop(uid_of(pod), None)
            log.warning("binding %s/%s to %s: %s", *key_of(pod), node, exc)

    async def _unschedulable(self, pod: Mapping[str, Any], message: str) -> None:
        conditions = status_of(pod).get("conditions") or []
        current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if current is not None and current.get("message") == message:
            return
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": message, "lastTransitionTime": now_timestamp()}
        others = [c for c in conditions if c.get("type") != "PodScheduled"]
        with contextlib.suppress(kube.KubeError):
            await self._patch({**pod, "kind": "Pod"},
                              {"status": {"conditions": [*others, condition]}}, "status")
        await self._event(pod, "FailedScheduling", message, "default-scheduler")

    # ----------------------------------------------------------- kubelet

    async def run_kubelet(self) -> None:
        if self.kubelet is None:
            return
        kubelet = self.kubelet
        pods = self.views["Pod"].list()
        live = {uid_of(p) for p in pods if not terminal(p)}
        for uid, (gone, on_node) in list(self._attached.items()):
            if uid not in live and uid not in self._busy and not self.retry.waiting(uid):
                del self._attached[uid]
                self._spawn(uid, self._detach(gone, on_node))
        for gone, on_node in kubelet.leftovers(live | set(self._attached)):
            uid = uid_of(gone)
            if uid not in self._busy and not self.retry.waiting(uid):
                log.info("pod %s/%s: tearing down the sandbox of a pod deleted meanwhile",
                         *key_of(gone))
                self._spawn(uid, self._detach(gone, on_node))
        for pod in pods:
            node_name = str(spec_of(pod).get("nodeName") or "")
            uid = uid_of(pod)
            if terminating(pod) and node_name and kubelet.serves(node_name) \
                    and uid not in self._busy and not self.retry.waiting(uid):
                self._spawn(uid, self._terminate(pod, node_name))
                continue
            if not node_name or not kubelet.serves(node_name) or terminal(pod) \
                    or terminating(pod) or uid in self._attached or uid in self._busy:
                continue
            if pod_ready(pod):
                self._attached[uid] = (pod, node_name)  # attached before a restart
                continue
            node = self.views["Node"].get(node_name)
            if node is not None and not self.retry.waiting(uid):
                self._spawn(uid, self._attach(pod, node))

    def _spawn(self, uid: str, work: Awaitable[object]) -> None:
        self._busy.add(uid)

        async def tracked() -> None:
            try:
                await work
            finally:
                self._busy.discard(uid)
                self._wake.set()

        task = asyncio.create_task(tracked())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attach(self, pod: KubeObject, node: Mapping[str, Any]) -> None:
        assert self.kubelet is not None
        uid = uid_of(pod)
        try:
            async with self._attaches:
                attachment = await self.kubelet.attach(pod, node)
        except Exception as exc:
            delay = self.retry.failed(uid)
            log.warning("pod %s/%s on %s: %s (retrying in %.1fs)", *key_of(pod),
                        name_of(node), exc, delay)
            self._wake_later(delay)
            with contextlib.suppress(kube.KubeError):
                await self._patch({**pod, "kind": "Pod"}, sandbox_failed(pod, str(exc)),
                                  "status")
            await self._event(pod, "FailedCreatePodSandBox",
                              f"Failed to create pod sandbox: {exc}", "kubelet")
            return
        self.retry.succeeded(uid)
        self._attached[uid] = (pod, name_of(node))
        log.info("pod %s/%s attached on %s: CNI ADD %.1f ms", *key_of(pod), name_of(node),
                 1000 * attachment.add_s)
        try:
            await self._patch({**pod, "kind": "Pod"}, running_status(pod, node, attachment),
                              "status")
        except kube.NotFound:
            log.info("pod %s/%s went away while attaching", *key_of(pod))

    async def _detach(self, pod: KubeObject, node: str) -> bool:
        """CNI DEL of a pod's sandbox; a failure is retried with backoff, as a kubelet
        retries until the sandbox is gone."""
        assert self.kubelet is not None
        uid = uid_of(pod)
        try:
            await self.kubelet.detach(pod, node)
        except Exception as exc:
            delay = self.retry.failed(uid)
            log.warning("pod %s/%s on %s: detach failed (retrying in %.1fs): %s",
                        *key_of(pod), node, delay, exc)
            self._attached[uid] = (pod, node)
            self._wake_later(delay)
            return False
        self.retry.succeeded(uid)
        return True

    async def _terminate(self, pod: KubeObject, node: str) -> None:
        """A deleted pod on this node: run out its preStop time (the lab's containers
        have no process, so only a preStop hook keeps one running, until the grace period
        ends), tear down its sandbox, then remove the pod with grace 0, as a kubelet does."""
        if any((c.get("lifecycle") or {}).get("preStop")
               for c in spec_of(pod).get("containers") or []):
            ends = timestamp_seconds(str(metadata(pod).get("deletionTimestamp") or ""))
            await asyncio.sleep(max(0.0, ends - time.time()))
        self._attached.pop(uid_of(pod), None)
        if not await self._detach(pod, node):
            return
        try:
            await self._delete({**pod, "kind": "Pod"}, grace_s=0)
        except kube.KubeError as exc:
            delay = self.retry.failed(uid_of(pod))
            log.warning("pod %s/%s: removing it after teardown failed: %s", *key_of(pod), exc)
            self._wake_later(delay)

    # ---------------------------------------------------- endpoint slices

    async def endpoint_slices(self) -> None:
        slices = self.views["EndpointSlice"]
        pods = self.views["Pod"]
        for service in self.views["Service"].list():
            selector = spec_of(service).get("selector")
            if not selector:
                continue
            service = {**service, "kind": "Service", "apiVersion": "v1"}
            members = [p for p in pods.list(namespace_of(service)) if not terminal(p)
                       and equality_selector_matches(selector, labels_of(p))]
            wanted = {name_of(s): s for s in desired_slices(service, members)}
            existing = {name_of(s): s for s in slices.list(namespace_of(service))
                        if labels_of(s).get(SERVICE_NAME_LABEL) == name_of(service)
                        and labels_of(s).get(MANAGED_BY_LABEL) == ENDPOINTSLICE_CONTROLLER}
            await self._gather(self._converge_slice(wanted.get(n), existing.get(n))
                               for n in sorted(set(wanted) | set(existing)))

    async def _converge_slice(self, wanted: KubeObject | None,
                              existing: KubeObject | None) -> None:
        try:
            if existing is None and wanted is not None:
                await self._create(wanted)
            elif wanted is None and existing is not None:
                await self._delete({**existing, "kind": "EndpointSlice"})
            elif wanted is not None and existing is not None and any(
                    existing.get(k) != wanted[k] for k in ("addressType", "endpoints", "ports")):
                await self._patch({**existing, "kind": "EndpointSlice"},
                                  {k: wanted[k] for k in ("endpoints", "ports")})
        except kube.KubeError as exc:
            log.warning("endpointslice %s: %s", name_of(wanted or existing or {}), exc)

    # ------------------------------------------------------------ status

    async def workload_status(self) -> None:
        pods = self.views["Pod"]
        updates = []
        for kind in ("ReplicaSet", "StatefulSet", "Deployment"):
            for owner in self.views[kind].list():
                if kind == "Deployment":
                    members = [p for rs in self.views["ReplicaSet"].list(namespace_of(owner))
                               if controlled_by(rs, owner)
                               for p in pods.list(namespace_of(owner)) if controlled_by(p, rs)]
                else:
                    members = [p for p in pods.list(namespace_of(owner))
                               if controlled_by(p, owner)]
                wanted = workload_counts(owner, [p for p in members if not terminal(p)])
                if any(status_of(owner).get(k) != v for k, v in wanted.items()):
                    updates.append(self._patch({**owner, "kind": kind}, {"status": wanted},
                                               "status"))
        for result in await self._gather(updates):
            if isinstance(result, Exception):
                log.info("workload status: %s", result)


NOT_READY_TAINT = "node.kubernetes.io/not-ready"
DEFAULT_TOLERATION_S = 300


def not_ready_since(node: Mapping[str, Any]) -> float | None:
    """When the node stopped being Ready (None while it is Ready)."""
    for condition in status_of(node).get("conditions") or []:
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return None
            return timestamp_seconds(str(condition.get("lastTransitionTime") or "")) or 0.0
    return None  # a node that reports no condition at all is taken as it is


def toleration_seconds(pod: Mapping[str, Any]) -> float | None:
    """How long the pod tolerates a not-ready node (None: for ever)."""
    for toleration in spec_of(pod).get("tolerations") or []:
        if toleration.get("key") in (NOT_READY_TAINT, None, "") and toleration.get(
                "effect") in ("NoExecute", None, "") and toleration.get(
                "operator", "Equal") in ("Exists", "Equal"):
            seconds = toleration.get("tolerationSeconds")
            return None if seconds is None else float(seconds)
    return DEFAULT_TOLERATION_S


def creation_problem(error: Exception) -> str:
    """A refused create as kube-controller-manager words it in ``FailedCreate``."""
    return f"Error creating: {error.detail if isinstance(error, RestError) else error}"


def replicaset_for(deployment: Mapping[str, Any], template_hash_: str) -> KubeObject:
    spec = spec_of(deployment)
    template = copy.deepcopy(dict(spec.get("template") or {}))
    template.setdefault("metadata", {}).setdefault("labels", {})[TEMPLATE_HASH] = template_hash_
    selector = copy.deepcopy(dict(spec.get("selector") or {}))
    selector.setdefault("matchLabels", {})[TEMPLATE_HASH] = template_hash_
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name_of(deployment)}-{template_hash_}",
            "namespace": namespace_of(deployment),
            "labels": {**dict(metadata(template).get("labels") or {})},
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": {"replicas": replicas_of(deployment), "selector": selector,
                 "template": template},
    }


def surplus(pods: Sequence[KubeObject], count: int) -> list[KubeObject]:
    """Which ``count`` pods a scale-down removes: unscheduled, then unready, then newest."""
    def rank(pod: Mapping[str, Any]) -> tuple[bool, bool, str]:
        created = str(metadata(pod).get("creationTimestamp") or "")
        inverted = "".join(chr(0x10FFFF - ord(c)) for c in created)
        return bool(spec_of(pod).get("nodeName")), pod_ready(pod), inverted

    return [{**p, "kind": "Pod"} for p in sorted(pods, key=rank)[:count]]


def ordinal_of(pod: Mapping[str, Any], statefulset: Mapping[str, Any]) -> int | None:
    return names.statefulset_ordinal(name_of(pod), name_of(statefulset))


def statefulset_pod(statefulset: Mapping[str, Any], ordinal: int) -> KubeObject:
    spec = spec_of(statefulset)
    template = spec.get("template") or {}
    name = f"{name_of(statefulset)}-{ordinal}"
    labels = {POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal),
              REVISION_LABEL: f"{name_of(statefulset)}-{template_hash(template)}"}
    pod = pod_from_template(template, statefulset, labels, name=name)
    pod["spec"]["hostname"] = name
    if spec.get("serviceName"):
        pod["spec"]["subdomain"] = spec["serviceName"]
    return pod


def statefulset_plan(statefulset: Mapping[str, Any], owned: Mapping[int, KubeObject]
                     ) -> tuple[list[KubeObject], list[KubeObject]]:
    """(pods to create, pods to delete) for one pass of a StatefulSet."""
    replicas = replicas_of(statefulset)
    parallel = spec_of(statefulset).get("podManagementPolicy") == "Parallel"
    create: list[KubeObject] = []
    delete = [{**owned[i], "kind": "Pod"} for i in sorted(owned, reverse=True) if i >= replicas]
    for ordinal in range(replicas):
        pod = owned.get(ordinal)
        if pod is None:
            create.append(statefulset_pod(statefulset, ordinal))
        elif terminal(pod):
            delete.append({**pod, "kind": "Pod"})  # made again on a later pass
        if not parallel and (pod is None or not pod_ready(pod)):
            break
    return create, delete


def needs_scheduling(pod: Mapping[str, Any]) -> bool:
    spec = spec_of(pod)
    return not spec.get("nodeName") and not terminal(pod) and \
        spec.get("schedulerName", "default-scheduler") == "default-scheduler"


def unschedulable_message(total: int, reasons: Counter[str]) -> str:
    """kube-scheduler's wording: ``0/2 nodes are available: 2 node(s) didn't match ...``."""
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{total} nodes are available: {', '.join(parts)}." if parts else \
        f"0/{total} nodes are available."


def running_status(pod: Mapping[str, Any], node: Mapping[str, Any],
                   attachment: Attachment) -> KubeObject:
    """The status a kubelet reports once the pod's sandbox is up and it runs."""
    started = now_timestamp()
    host_ips = [a["address"] for a in status_of(node).get("addresses") or []
                if a.get("type") == "InternalIP"]
    conditions = [{"type": kind, "status": "True", "lastTransitionTime": started}
                  for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady",
                               "Ready", "PodScheduled")]
    containers = [{"name": c.get("name"), "image": c.get("image", ""), "imageID": "",
                   "ready": True, "started": True, "restartCount": 0,
                   "state": {"running": {"startedAt": started}}}
                  for c in spec_of(pod).get("containers") or []]
    status: KubeObject = {
        "phase": "Running", "startTime": started, "conditions": conditions,
        "podIP": attachment.ips[0], "podIPs": [{"ip": ip} for ip in attachment.ips],
        "containerStatuses": containers,
    }
    if host_ips:
        status["hostIP"] = host_ips[0]
        status["hostIPs"] = [{"ip": ip} for ip in host_ips]
    return {"status": status}


def sandbox_failed(pod: Mapping[str, Any], message: str) -> KubeObject:
    """The status of a pod whose sandbox network could not be set up (it stays Pending)."""
    conditions = [c for c in status_of(pod).get("conditions") or []
                  if c.get("type") != "PodReadyToStartContainers"]
    conditions.append({"type": "PodReadyToStartContainers", "status": "False",
                       "reason": "FailedCreatePodSandBox", "message": message,
                       "lastTransitionTime": now_timestamp()})
    return {"status": {"conditions": conditions}}


def workload_counts(owner: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> KubeObject:
    ready = sum(1 for p in pods if pod_ready(p))
    counts: KubeObject = {"replicas": len(pods), "readyReplicas": ready,
                          "availableReplicas": ready,
                          "observedGeneration": metadata(owner).get("generation", 1)}
    if owner.get("kind") == "StatefulSet":
        counts.update(currentReplicas=len(pods), updatedReplicas=len(pods))
    elif owner.get("kind") == "Deployment":
        counts["updatedReplicas"] = len(pods)
    else:
        counts["fullyLabeledReplicas"] = len(pods)
    return counts


# ---------------------------------------------------------------- process


async def run_process(args: argparse.Namespace) -> None:
    """The controllers process of ``podnet up``."""
    from podnet.lab.kubelet import cni_kubelet, kubelet_config
    from podnet.lab.ledger import Ledger

    api = kube.kube_client(args.kubeconfig)
    kubelet = None
    if args.kubelet is not None:
        config = kubelet_config(args.kubelet)
        kubelet = cni_kubelet(config, Ledger(Path(config["ledger"])))
    extender = HttpExtender(args.extender, args.extender_ca) if args.extender else None
    manager = ControllerManager(api, kubelet=kubelet, extender=extender)
    tasks = [asyncio.create_task(manager.run())]
    stop = stop_on_signals()
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    for task in [*tasks, stopper]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result
    cast(Any, api).close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m podnet.lab.controllers",
        description="The lab's controller manager, scheduler and kubelet network side.",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--kubelet", type=Path,
                        help="JSON: nodes whose pods to attach with the CNI plugin")
    parser.add_argument("--extender", help="scheduler extender URL prefix (.../scheduler)")
    parser.add_argument("--extender-ca", type=Path, help="CA certificate of the extender")
    args = parser.parse_args(argv)
    logs.configure(logging.INFO)
    try:
        asyncio.run(run_process(args))
    except (kube.KubeError, OSError, ValueError) as exc:
        print(f"podnet lab controllers: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the main of the module as imported by its name, not of ``__main__``: the
    # classes other modules import (errors caught by type) must be the same objects.
    import importlib

    sys.exit(importlib.import_module("podnet.lab.controllers").main())
