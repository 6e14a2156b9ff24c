"""The sync worker: keeps the IPAM true to the live pods and mirrors everything into OVN.

It follows Subnets, IPPools, Nodes, Pods, Services, EndpointSlices, StatefulSets,
Namespaces and NetworkPolicies (from the Kubernetes API, or from a manifests folder
when standalone) in ``Store``s and works in steps, one at a time:

- an event marks what it touches as dirty; the next step re-reads only those objects
  into the worker's index (``podnet_sync.index``), binds or releases those pods'
  addresses and writes their OVN rows in one scoped transaction, so the event path
  costs what the event touches, and a burst of events is coalesced into one step;
- a full resync (at start, after every relist and periodically) registers subnets and
  pools, gives every node its join address, binds what is live, releases what is dead
  (after a grace period: an address is never freed on a timeout alone), lets stale
  reservations expire, and reconciles the whole NB state, which repairs any drift.

NetworkPolicies are compiled (``podnet_sync.netpol``) into the same transaction as the
pods' ports: a new pod is in its policies' port groups before it is marked routed.

Each step also notes the subnets whose usage it may have changed; with a cluster, a task
beside the steps writes their Subnets' status from the IPAM (``podnet_sync.status``).

Everything a step does is idempotent, so a crash at any point is repaired by the next
start's full resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from ipam import annotations as keys
from ipam import errors, names
from ipam.records import Allocation, allocation_annotations
from ipam.register import register_ipam_objects
from ipam.requests import ReserveRequest
from ipam.store import Ipam
from ipam.subnet import DEFAULT_SUBNET, JOIN_CIDR, JOIN_SUBNET, SubnetSpec, build_subnet
from podnet_plumbing.heap import settle_heap
from podnet_plumbing.manifests import Manifest
from podnet_plumbing.tasks import raise_if_cancelled
from podnet_sync.admin_netpol import (
    ANP_KIND,
    BANP_KIND,
    AdminNode,
    AdminPolicy,
    AdminView,
    add_admin_network_policies,
    parse_admin_network_policy,
    parse_baseline_admin_network_policy,
)
from podnet_sync.cluster import (
    PodView,
    ServiceView,
    Unusable,
    node_ready,
    parse_endpoint_slice,
    parse_node,
    parse_pod,
    parse_service,
)
from podnet_sync.index import ClusterIndex, ObjectKey, pair_of
from podnet_sync.nb import Northbound, NorthboundError, Report, Scope
from podnet_sync.nb_model import DesiredState
from podnet_sync.netpol import (
    NamespaceView,
    NetworkPolicy,
    PolicyError,
    parse_namespace,
    parse_network_policy,
)
from podnet_sync.netpol_cache import PolicyCache
from podnet_sync.status import StatusSettings, SubnetStatusPatcher, SubnetStatusWriter
from podnet_sync.topology import (
    ClusterView,
    NodeJoin,
    desired_state,
    distributed_keys,
    load_balancer_name,
)

log = logging.getLogger(__name__)

KINDS = ("Subnet", "IPPool", "Node", "Pod", "Service", "EndpointSlice", "StatefulSet",
         "Namespace", "NetworkPolicy", ANP_KIND, BANP_KIND)
POLICY_KINDS = ("NetworkPolicy", ANP_KIND, BANP_KIND)
ROUTED_PATCHES_AT_ONCE = 4
"""API calls marking pods routed in flight at once (each takes one of the default
executor's threads, which the NB transactions also use)."""

PodPatcher = Callable[[str, str, Mapping[str, str]], Awaitable[object]]
PodReporter = Callable[[PodView, str, str], Awaitable[object]]
PolicyReporter = Callable[[Mapping[str, str], str, str], Awaitable[object]]
"""Tells a policy's owner about a problem with it: (its kind, namespace (empty for the
cluster-scoped admin policies), name and uid, reason, message), as an Event."""
PodLister = Callable[[], Awaitable[list[dict[str, Any]]]]
"""A fresh (consistent) list of every pod, read from the API server, not a cache."""
"""Tells a pod's owner about a problem with it: (pod, reason, message), as an Event."""

RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 60.0


class ObjectStore(Protocol):
    """What the worker reads of a kind (``podnet_plumbing.kube.Store`` fits)."""

    def objects(self) -> list[dict[str, Any]]: ...

    def get(self, name: str, namespace: str = "") -> dict[str, Any] | None: ...


V = TypeVar("V")


class ParseCache(Generic[V]):
    """Typed views of one kind's objects, each parsed once per object version.

    Stores replace an object when it changes, so an object's identity stands for its
    version; the cache holds the object itself, which pins its ``id``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._views: dict[int, tuple[object, V]] = {}

    def views(self, objects: Iterable[dict[str, Any]],
              parse: Callable[[dict[str, Any]], V]) -> list[V]:
        views: list[V] = []
        fresh: dict[int, tuple[object, V]] = {}
        for obj in objects:
            cached = self._views.get(id(obj))
            if cached is not None and cached[0] is obj:
                view = cached[1]
            else:
                try:
                    view = parse(obj)
                except Unusable as exc:
                    log.debug("%s skipped: %s", self.kind, exc)
                    continue
            fresh[id(obj)] = (obj, view)
            views.append(view)
        self._views = fresh
        return views


@dataclass(frozen=True)
class SyncSettings:
    resync_interval_s: float = 60.0
    """Seconds between full resyncs (drift repair, garbage collection)."""
    primary_check_s: float = 1.0
    """How often the Redis serving the index is asked its replication ID: a new one (a
    restart, a Sentinel failover) means allocation is fenced there until a full resync
    has rebuilt the index, so one is started at once rather than at the next interval."""
    release_grace_s: float = 30.0
    """A bound address whose pod is gone is freed only this long after it was made."""
    orphan_margin_s: float = 15.0
    """A reservation no stored pod carries is freed once a list of the pods, started
    this long after it was made, shows none with its token: longer than a create takes
    from mutating admission to storage (later webhooks, quota), shorter than any
    retry loop a controller would notice. The wall-clock TTL stays as the fallback."""
    orphan_sweep_s: float = 5.0
    """How often the worker looks for such reservations."""
    ensure_builtin_subnets: bool = True
    """Create ``join`` (and ``ovn-default`` when no subnet is default) if missing."""
    status: StatusSettings = field(default_factory=StatusSettings)
    """How the Subnets' status is written (when the worker has a cluster to write to)."""
    settle_heap: bool = False
    """After every full step, collect garbage once and freeze the heap (``podnet_plumbing.heap``):
    what a worker process wants, and ``podnet sync`` turns on. It acts on the whole
    process, so a worker embedded in another program (a test) leaves it off."""


@dataclass
class Dirty:
    """What events touched since the last step."""

    pods: set[ObjectKey] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    slices: set[ObjectKey] = field(default_factory=set)
    full: bool = True
    policies: bool = False
    """A NetworkPolicy, an admin policy or a Namespace (its labels) changed."""

    def take(self) -> Dirty:
        taken = Dirty(self.pods, self.services, self.slices, self.full, self.policies)
        self.pods, self.services, self.slices, self.full = set(), set(), set(), False
        self.policies = False
        return taken


@dataclass
class StepReport:
    full: bool
    ovn: Report
    bound: int = 0
    released: int = 0
    expired: int = 0
    routed: int = 0
    failed: int = 0
    """Pods whose step failed (each reported on the pod and retried with backoff)."""
    seconds: float = 0.0


class StepObserver(Protocol):
    """Told of every step's outcome (metrics, readiness); runs inline, so it must be cheap."""

    def step_done(self, report: StepReport) -> None: ...

    def step_failed(self, error: Exception) -> None: ...

    def orphans_freed(self, count: int) -> None: ...


class SyncWorker:
    def __init__(
        self,
        ipam: Ipam,
        northbound: Northbound,
        stores: Mapping[str, ObjectStore],
        settings: SyncSettings | None = None,
        patch_pod: PodPatcher | None = None,
        report_pod: PodReporter | None = None,
        list_pods: PodLister | None = None,
        patch_subnet_status: SubnetStatusPatcher | None = None,
        report_policy: PolicyReporter | None = None,
    ) -> None:
        self.ipam = ipam
        self.northbound = northbound
        self.stores = stores
        self.settings = settings or SyncSettings()
        self.patch_pod = patch_pod
        self.report_pod = report_pod
        self.list_pods = list_pods
        self.report_policy = report_policy
        self._policy_problems: dict[str, str] = {}  # policy uid or key -> last message
        self._policy_rows = False
        """Whether the last step that reconciled NetworkPolicy rows left any."""
        self._policy_cache = PolicyCache()
        self._policy_parses: dict[int, tuple[object, NetworkPolicy | PolicyError]] = {}
        self._derivations: dict[str, tuple[list[dict[str, Any]], Any]] = {}
        self._admin_rows = True
        """Whether the last full policy compile had admin policies: until one without,
        every policy step compiles and reconciles all policy rows."""
        self.orphans_freed = 0
        self.dirty = Dirty()
        self._wake = asyncio.Event()
        self._bound: dict[str, Allocation] = {}
        """Pod uid -> the IPAM record bound to it: the truth its OVN port is built from.
        Event steps trust it; every full step checks it against the store."""
        self._failures: dict[str, int] = {}  # pod uid -> consecutive failed attempts
        self._reported: dict[tuple[str, str], str] = {}  # (uid, reason) -> last message
        self._reports: set[asyncio.Task[None]] = set()
        self._routed: set[str] = set()  # pod uids patched routed=true
        self._parse: dict[str, ParseCache[Any]] = {
            kind: ParseCache(kind) for kind in ("Pod", "Service", "EndpointSlice")}
        self.index = ClusterIndex()
        self._subnets: list[SubnetSpec] = []
        self._left_out: set[str] = set()
        self._deleted: dict[str, set[str]] = {"IPPool": set(), "Subnet": set()}
        """IPPools and Subnets deleted in the API and maybe still in the IPAM: a full
        step takes them out itself (the webhook does too; neither waits for the other),
        unless addresses of them are still held."""
        """What the last full step's desired state left out (logged when new)."""
        self._nodes: list[NodeJoin] = []
        self._gate = asyncio.Semaphore(64)
        self._patches = asyncio.Semaphore(ROUTED_PATCHES_AT_ONCE)
        self.last_report: StepReport | None = None
        self.last_full_at = -math.inf
        """When the last full step ended (``time.monotonic``): the next is due an
        interval later, whoever took this one."""
        self.steps = 0
        self.observer: StepObserver | None = None
        self.status = None if patch_subnet_status is None else SubnetStatusWriter(
            self.ipam.usage, patch_subnet_status, self._subnet_object, self.settings.status)
        """Writes the Subnets' status; None without a cluster to write to."""

    # ------------------------------------------------------------------ events

    def mark(self, kind: str, obj: Mapping[str, Any] | None = None, full: bool = False) -> None:
        """Note a change; ``full`` (or a kind the skeleton depends on) asks a full resync."""
        metadata = (obj or {}).get("metadata") or {}
        if full or obj is None or kind in ("Subnet", "IPPool", "Node", "StatefulSet"):
            self.dirty.full = True
        elif kind == "Pod":
            self.dirty.pods.add((str(metadata.get("namespace", "")), str(metadata["name"])))
        elif kind == "Service":
            self.dirty.services.add(f"{metadata.get('namespace')}/{metadata.get('name')}")
        elif kind == "EndpointSlice":  # its services are found when the step reads it
            self.dirty.slices.add((str(metadata.get("namespace", "")), str(metadata["name"])))
        elif kind in (*POLICY_KINDS, "Namespace"):
            self.dirty.policies = True
        self._wake.set()

    def deleted(self, kind: str, name: str) -> None:
        """An IPPool or Subnet was deleted in the API (a full step follows)."""
        if kind in self._deleted:
            self._deleted[kind].add(name)

    async def run(self) -> None:
        """Steps until cancelled: on events, and a full resync every interval; the
        Subnets' status is written beside them."""
        writer = None if self.status is None else asyncio.create_task(
            self.status.run(), name="podnet-subnet-status")
        watcher = asyncio.create_task(self._watch_primary(), name="podnet-redis-primary")
        try:
            await self._steps()
        finally:
            for task in (writer, watcher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _watch_primary(self) -> None:
        """Ask for a full resync as soon as the Redis serving the index changes."""
        known = ""
        while True:
            await asyncio.sleep(self.settings.primary_check_s)
            try:
                current = await self.ipam.replication_id()
            except errors.IpamError:
                continue  # unreachable: the steps report it
            if known and current != known:
                log.warning("the Redis serving the index changed (replication ID %s, was "
                            "%s): rebuilding the index from the live pods", current, known)
                self.mark("Redis", full=True)
            known = current

    async def _steps(self) -> None:
        while True:
            raise_if_cancelled()
            due = self.last_full_at + self.settings.resync_interval_s
            timeout = max(0.0, due - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                self.dirty.full = True
            self._wake.clear()
            try:
                await self.step()
            except (errors.IpamError, NorthboundError) as exc:
                log.warning("sync step failed, retrying: %s", exc)
                if self.observer is not None:
                    self.observer.step_failed(exc)
                self.dirty.full = True
                await asyncio.sleep(1.0)
                self._wake.set()

    # ------------------------------------------------------------------- steps

    async def step(self) -> StepReport:
        started = time.perf_counter()
        dirty = self.dirty.take()
        report = await (self._full() if dirty.full else self._incremental(dirty))
        if dirty.full:
            if self.settings.settle_heap:  # the long-lived heap was rebuilt
                settle_heap()
            self.last_full_at = time.monotonic()
        report.seconds = time.perf_counter() - started
        self.last_report = report
        self.steps += 1
        if self.observer is not None:
            self.observer.step_done(report)
        log.debug("sync step: %s", report)
        return report

    async def _full(self) -> StepReport:
        await self._register_subnets()
        self._subnets = await self.ipam.subnets()
        self._nodes = await self._node_joins()
        pods = self._reindex()
        report = StepReport(full=True, ovn=Report())
        records = await self._records_by_token()
        claims = await asyncio.gather(
            *(self._claim_gated(pod, records.get(pod.reservation)) for pod in pods))
        report.bound = sum(claim for claim in claims if claim > 0)
        report.failed = sum(1 for claim in claims if claim < 0)
        report.released += await self._collect_garbage(pods)
        report.expired = await self.ipam.expire_all()
        replication_ids = {await self.ipam.mark_rebuilt(s.name) for s in self._subnets}
        if replication_ids:  # one per shard the subnets are on (one Redis: one)
            await self.ipam.set_epoch(" ".join(sorted(replication_ids)))
        view = ClusterView(self._subnets, self._as_recorded(pods),
                           self._nodes, list(self.index.services.values()),
                           list(self.index.slices.values()))
        desired = desired_state(view)
        self._log_left_out(desired.skipped)
        self._add_policies(desired, view.pods)
        report.ovn = await self.northbound.reconcile_async(desired)
        report.routed = await self._mark_routed(pods, view)
        if self.status is not None:
            self.status.touch_all(subnet.name for subnet in self._subnets)
        return report

    def _log_left_out(self, reasons: list[str]) -> None:
        """Log what a full step's desired state left out (a subnet ACL whose stored
        match the worker's check refuses, say), once while it stays left out."""
        current = set(reasons)
        for reason in sorted(current - self._left_out):
            log.warning("left out of the OVN state: %s", reason)
        self._left_out = current

    async def _claim_gated(self, pod: PodView, record: Allocation | None) -> int:
        async with self._gate:
            return await self._claim_confined(pod, record, checked=True)

    async def _incremental(self, dirty: Dirty) -> StepReport:
        report = StepReport(full=False, ovn=Report())
        before = {key: self.index.put_pod(key, self._read("Pod", key, parse_pod))
                  for key in dirty.pods}
        live = self.index.pods
        for key in dirty.pods:
            pod = live.get(key)
            if pod is not None:
                claim = await self._claim_confined(pod, None, checked=False)
                report.bound += max(claim, 0)
                report.failed += int(claim < 0)
        report.released += await self._release_gone(dirty.pods, before)
        services = self._reread_services(dirty)
        pairs = {pair_of(pod) for key in dirty.pods
                 for pod in (live.get(key), before[key]) if pod is not None}
        view = ClusterView(self._subnets, self._as_recorded(self.index.stored_pods_in(pairs)),
                           self._nodes,
                           [self.index.services[key] for key in services
                            if key in self.index.services],
                           self.index.slices_of(services))
        desired = desired_state(
            view, ports_for=frozenset(f"{ns}/{name}" for ns, name in dirty.pods),
            services_for=frozenset(services), gateways_for=frozenset(pairs), skeleton=False,
        )
        set_names: set[str] = set()
        policy_keys: set[str] = set()
        for subnet, node in pairs:
            address_sets, policy = distributed_keys(subnet, node)
            set_names |= address_sets
            policy_keys |= policy
        # A pod's policy rows go in the same transaction as its port, before the pod is
        # marked routed: it is isolated from its first packet.
        policy_step = dirty.policies or (bool(dirty.pods) and self._policies_matter())
        policy_rows = self._update_policies(desired, dirty.pods) if policy_step else None
        scope = Scope(
            switch_ports=frozenset(names.pod_port(name, ns) for ns, name in dirty.pods)
            - self._node_ports(),  # never a node's, whatever the pod is named
            load_balancers=frozenset(self._balancer_names(services)),
            address_sets=frozenset(set_names),
            policies=frozenset(policy_keys),
            structure=False,
            network_policy=policy_step,
            policy_rows=policy_rows,
        )
        report.ovn = await self.northbound.reconcile_async(desired, scope)
        touched = [live[key] for key in dirty.pods if key in live]
        report.routed = await self._mark_routed(touched, view)
        if self.status is not None:
            self.status.touch({subnet for subnet, _ in pairs} | {
                record.subnet for pod in touched
                if (record := self._bound.get(pod.uid)) is not None})
        return report

    # ------------------------------------------------------------ network policy

    def _policies_matter(self) -> bool:
        """Whether a pod's change can change policy rows: some policy exists, or rows of
        one are still to be removed."""
        return self._policy_rows or any(self._objects(kind) for kind in POLICY_KINDS)

    def _add_policies(self, desired: DesiredState, pods: Iterable[PodView]) -> None:
        """The NetworkPolicy rows for ``pods`` (those with a port), from every policy
        that compiles; a bad one is skipped, logged and reported on the policy."""
        subnets = {subnet.name for subnet in self._subnets}
        placed = [pod for pod in pods if pod.subnet in subnets and pod.ips]
        namespaces = self._namespace_views()
        node_ips = [ip for node in self._nodes for ip in node.ips]
        self._policy_cache.rebuild(desired, self._network_policies(), placed, namespaces,
                                   node_ips)
        self._admin_rows = any(self._objects(kind) for kind in POLICY_KINDS[1:])
        self._add_admin_policies(desired, placed, namespaces)
        self._policy_rows = bool(desired.port_groups)

    def _update_policies(self, desired: DesiredState,
                         pods: Iterable[ObjectKey]) -> frozenset[str] | None:
        """An event step's policy rows: those of the policies the changed pods,
        namespaces and policies reach, and the names of the rows to reconcile. Admin
        policies are compiled whole with every policy (``None``: reconcile them all)."""
        if (self._admin_rows or any(self._objects(kind) for kind in POLICY_KINDS[1:])
                or not self._policy_cache.policies):
            # Admin policies are compiled whole; and with no policy compiled yet the
            # cache's pod index has not followed the pods (no step asked it to while no
            # policy mattered), so the first policy is compiled from every pod.
            self._add_policies(desired, self._as_recorded(self.index.pods.values()))
            return None
        subnets = {subnet.name for subnet in self._subnets}
        changed: dict[str, PodView | None] = {
            names.pod_port(name, namespace): None for namespace, name in pods}
        live = [pod for key in pods if (pod := self.index.pods.get(key)) is not None]
        for pod in self._as_recorded(live):
            if pod.subnet in subnets and pod.ips:
                changed[pod.port_name] = pod
        node_ips = [ip for node in self._nodes for ip in node.ips]
        change = self._policy_cache.update(self._network_policies(), changed,
                                           self._namespace_views(), node_ips)
        if change is None:  # the nodes changed: compile everything
            self._add_policies(desired, self._as_recorded(self.index.pods.values()))
            return None
        desired.port_groups.update(change.state.port_groups)
        desired.policy_address_sets.update(change.state.policy_address_sets)
        desired.meters.update(change.state.meters)
        desired.policy_set_changes.update(change.state.policy_set_changes)
        desired.policy_group_changes.update(change.state.policy_group_changes)
        self._policy_rows = bool(self._policy_cache.policies)
        return change.names

    def _namespace_views(self) -> dict[str, NamespaceView]:
        views: dict[str, NamespaceView] = self._derived("Namespace", _parse_namespaces)
        return views

    def _network_policies(self) -> list[NetworkPolicy]:
        """The policies that parse (each bad one reported)."""
        policies: list[NetworkPolicy] = self._derived("NetworkPolicy", self._parse_policies)
        return policies

    def _derived(self, kind: str, build: Callable[[list[dict[str, Any]]], Any]) -> Any:
        """``build`` of the store's objects of ``kind``; the last result again while the
        store holds the same objects, as on most pod events (a changed object is a new
        one in the store)."""
        objects = self._objects(kind)
        seen = self._derivations.get(kind)
        if seen is not None and len(seen[0]) == len(objects) and \
                all(map(operator.is_, objects, seen[0])):
            return seen[1]
        value = build(objects)
        self._derivations[kind] = (objects, value)
        return value

    def _parse_policies(self, objects: list[dict[str, Any]]) -> list[NetworkPolicy]:
        policies = []
        for obj in objects:
            metadata = obj.get("metadata") or {}
            identity = {"kind": "NetworkPolicy",
                        "namespace": str(metadata.get("namespace") or ""),
                        "name": str(metadata.get("name") or ""),
                        "uid": str(metadata.get("uid") or "")}
            parsed = self._parse_policy(obj)
            if isinstance(parsed, PolicyError):
                self._policy_skipped(identity, str(parsed))
                continue
            policies.append(parsed)
            self._policy_problems.pop(identity["uid"] or
                                      f"{identity['namespace']}/{identity['name']}", None)
        return policies

    def _parse_policy(self, obj: dict[str, Any]) -> NetworkPolicy | PolicyError:
        """A policy parsed once per object version (stores replace a changed object,
        so its identity stands for its version)."""
        cached = self._policy_parses.get(id(obj))
        if cached is not None and cached[0] is obj:
            return cached[1]
        try:
            parsed: NetworkPolicy | PolicyError = parse_network_policy(obj)
        except PolicyError as exc:
            parsed = exc
        if len(self._policy_parses) > 2 * len(self._objects("NetworkPolicy")) + 100:
            self._policy_parses.clear()
        self._policy_parses[id(obj)] = (obj, parsed)
        return parsed

    def _add_admin_policies(self, desired: DesiredState, pods: list[PodView],
                            namespaces: Mapping[str, NamespaceView]) -> None:
        """The AdminNetworkPolicy and BaselineAdminNetworkPolicy rows; a bad object is
        skipped, logged and reported on it, as are ANPs sharing a priority."""
        admins = self._admin_policies(ANP_KIND, parse_admin_network_policy)
        baselines = self._admin_policies(BANP_KIND, parse_baseline_admin_network_policy)
        if not admins and not baselines:
            return
        labels: dict[str, tuple[tuple[str, str], ...]] = {}
        for obj in self._objects("Node"):
            with contextlib.suppress(Unusable):
                node = parse_node(obj)
                labels[node.name] = tuple(sorted(node.labels.items()))
        nodes = [AdminNode(node.name, labels.get(node.name, ()), (*node.internal_ips,
                                                                  *node.ips))
                 for node in self._nodes]
        view = AdminView(admins, baselines[0] if baselines else None, pods, namespaces,
                         nodes)
        troubled = set()
        for problem in add_admin_network_policies(desired, view):
            identity = {"kind": problem.kind, "namespace": "", "name": problem.name,
                        "uid": problem.uid}
            troubled.add(problem.uid or f"/{problem.name}")
            self._policy_report(identity, problem.reason, problem.message)
        for policy in (*admins, *baselines):
            if (policy.uid or f"/{policy.name}") not in troubled:
                self._policy_problems.pop(policy.uid or f"/{policy.name}", None)

    def _admin_policies(self, kind: str, parse: Callable[[dict[str, Any]], AdminPolicy]
                        ) -> list[AdminPolicy]:
        policies = []
        for obj in self._objects(kind):
            metadata = obj.get("metadata") or {}
            identity = {"kind": kind, "namespace": "", "name": str(metadata.get("name") or ""),
                        "uid": str(metadata.get("uid") or "")}
            try:
                policies.append(parse(obj))
            except PolicyError as exc:
                self._policy_skipped(identity, str(exc))
        return policies

    def _policy_skipped(self, identity: Mapping[str, str], problem: str) -> None:
        """Log and report (once per message) a policy that does not compile."""
        self._policy_report(identity, "PolicySkipped",
                            f"{identity['kind']} skipped, it enforces nothing: {problem}")

    def _policy_report(self, identity: Mapping[str, str], reason: str, message: str) -> None:
        """Log and report (once per message) a problem with a policy."""
        key = identity["uid"] or f"{identity['namespace']}/{identity['name']}"
        if self._policy_problems.get(key) == message:
            return
        self._policy_problems[key] = message
        log.warning("%s %s/%s: %s", identity["kind"].lower(), identity["namespace"],
                    identity["name"], message)
        if self.report_policy is not None:
            task = asyncio.get_running_loop().create_task(
                self._send_policy_report(identity, reason, message))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    async def _send_policy_report(self, identity: Mapping[str, str], reason: str,
                                  message: str) -> None:
        assert self.report_policy is not None
        try:
            await self.report_policy(identity, reason, message)
        except Exception as exc:  # best effort, as for pods
            log.info("%s %s/%s: could not record event: %s", identity["kind"].lower(),
                     identity["namespace"], identity["name"], exc)

    def _reread_services(self, dirty: Dirty) -> set[str]:
        """Re-read the step's slices and services; returns every service they touch
        (a slice that moved to another service touches both)."""
        services = set(dirty.services)
        for slice_key in dirty.slices:
            fresh = self._read("EndpointSlice", slice_key, parse_endpoint_slice)
            old = self.index.put_slice(slice_key, fresh)
            services.update(view.service_key for view in (old, fresh) if view is not None)
        for service in services:
            namespace, _, name = service.partition("/")
            self.index.put_service(service, self._read("Service", (namespace, name),
                                                       parse_service))
        return services

    def _balancer_names(self, services: Iterable[str]) -> list[str]:
        names = []
        for key in services:
            namespace, _, name = key.partition("/")
            for protocol in ("tcp", "udp", "sctp"):
                names.append(load_balancer_name(
                    ServiceView(namespace, name, (), (), (), 0, False), protocol))
        return names

    # ------------------------------------------------------------- the views

    def _subnet_object(self, name: str) -> Mapping[str, Any] | None:
        store = self.stores.get("Subnet")
        return store.get(name) if store is not None else None

    def _objects(self, kind: str) -> list[dict[str, Any]]:
        store = self.stores.get(kind)
        return store.objects() if store is not None else []

    def _read(self, kind: str, key: ObjectKey,
              parse: Callable[[dict[str, Any]], V]) -> V | None:
        """One object's view as the store holds it now (``None``: gone or unusable)."""
        store = self.stores.get(kind)
        obj = store.get(key[1], key[0]) if store is not None else None
        if obj is None:
            return None
        try:
            return parse(obj)
        except Unusable as exc:
            log.debug("%s %s/%s skipped: %s", kind, *key, exc)
            return None

    def _reindex(self) -> list[PodView]:
        """Every pod, service and slice parsed anew into the index (a full step).
        Subnets and node joins are re-read by full steps only: any change to them asks
        for one."""
        pods = self._parse["Pod"].views(self._objects("Pod"), parse_pod)
        self.index = ClusterIndex.of(
            pods,
            self._parse["Service"].views(self._objects("Service"), parse_service),
            self._parse["EndpointSlice"].views(
                self._objects("EndpointSlice"), parse_endpoint_slice),
        )
        return pods

    # ------------------------------------------------------------- subnets, nodes

    async def _register_subnets(self) -> None:
        await self._remove_deleted()
        manifests = [
            Manifest(f"{kind} {obj.get('metadata', {}).get('name')}", obj)
            for kind in ("Subnet", "IPPool") for obj in self._objects(kind)
        ]
        outcome = await register_ipam_objects(
            self.ipam, manifests, ensure_default=self.settings.ensure_builtin_subnets
        )
        for problem in outcome.problems:
            log.warning("not registered: %s", problem)
        builtin = self.settings.ensure_builtin_subnets
        if builtin and JOIN_SUBNET not in await self.ipam.subnet_names():
            await self.ipam.ensure_subnet(build_subnet(JOIN_SUBNET, JOIN_CIDR))

    async def _remove_deleted(self) -> None:
        """Take deleted pools, then deleted subnets, out of the IPAM: a switch must not
        outlive its Subnet by a resync interval. One still holding addresses stays (its
        pods keep their network) until they are released."""
        for kind, remove in (("IPPool", self.ipam.delete_pool),
                             ("Subnet", self.ipam.delete_subnet)):
            store = self.stores.get(kind)
            for name in sorted(self._deleted[kind]):
                if store is not None and store.get(name) is not None:
                    self._deleted[kind].discard(name)  # made again meanwhile
                    continue
                try:
                    await remove(name)
                except (errors.UnknownPool, errors.UnknownSubnet):
                    pass
                except errors.StoreUnavailable:
                    raise
                except errors.IpamError as exc:
                    log.info("%s %s was deleted but is kept: %s", kind, name, exc)
                    continue
                self._deleted[kind].discard(name)

    async def _node_joins(self, create: bool = True) -> list[NodeJoin]:
        """Every node's join address: kept for the node under ``node/<name>``."""
        joins = []
        for obj in self._objects("Node"):
            node = parse_node(obj)
            token = f"node:{node.name}"
            allocation = await self.ipam.lookup_token(token, JOIN_SUBNET)
            if allocation is None and create:
                allocation = await self.ipam.reserve(
                    JOIN_SUBNET, token, ReserveRequest(sticky_key=names.node_sticky_key(node.name))
                )
                await self.ipam.release(JOIN_SUBNET, "token", token, keep_sticky=True)
            if allocation is not None:
                joins.append(NodeJoin(node.name, allocation.ips, allocation.mac,
                                      node.internal_ips))
        return joins

    # ------------------------------------------------------------------ IPAM

    async def _records_by_token(self) -> dict[str, Allocation]:
        """Every allocation in the store, by token: what a full step checks claims
        against, so that it never trusts its own memory of what it bound."""
        records: dict[str, Allocation] = {}
        for subnet in await self.ipam.subnet_names():
            async for allocation in self.ipam.all_allocations(subnet):
                records[allocation.token] = allocation
        return records

    async def _claim_confined(
        self, pod: PodView, record: Allocation | None, *, checked: bool
    ) -> int:
        """``_claim`` with a failure confined to the pod: reported on it and retried
        with backoff, while the step goes on for every other pod. -1 when it failed."""
        try:
            claimed = await self._claim(pod, record, checked=checked)
        except errors.StoreUnavailable:
            raise  # not about this pod: the whole step is retried
        except errors.IpamError as exc:
            self._pod_failed(pod, "AddressNotBound", str(exc))
            return -1
        self._failures.pop(pod.uid, None)
        return claimed

    async def _claim(self, pod: PodView, record: Allocation | None, *, checked: bool) -> int:
        """Bind a live pod's reservation (rebuilding it from the pod if the index lost it);
        release a finished one. Returns 1 when it bound.

        ``checked``: ``record`` is what the store holds for the pod's token now (a full
        step); otherwise (an event step) what this worker bound before is trusted.
        """
        if pod.host_network:
            return 0
        if not pod.reservation and not pod.allocated:
            return await self._adopt(pod)
        if not pod.subnet or not pod.reservation:
            return 0
        if pod.terminal or self._lost(pod):
            if await self._release_pod(pod) and not pod.terminal:
                log.info("pod %s: address released: its grace period is over and its node "
                         "%s is NotReady or gone", pod.key, pod.node or "-")
            return 0
        if checked:
            if record is not None and record.state == "bound" and record.uid == pod.uid:
                self._bound[pod.uid] = record
                return 0
        else:
            known = self._bound.get(pod.uid)
            if known is not None and known.token == pod.reservation:
                return 0
        try:
            allocation = await self.ipam.bind(pod.subnet, pod.reservation, uid=pod.uid,
                                              namespace=pod.namespace, name=pod.name)
        except errors.UnknownReservation:
            allocation = await self._restore(pod)
        self._bound[pod.uid] = allocation
        return 1

    async def _adopt(self, pod: PodView) -> int:
        """Give an address to a pod stored without podnet's admission (kube-system pods
        such as CoreDNS, pods from before podnet, pods admitted while the webhook was
        bypassed): reserve it under a token of its UID, write the annotations the
        webhook would have written, and bind. Every step is idempotent per UID."""
        if pod.terminal or pod.deleting or not pod.uid or self.patch_pod is None:
            return 0
        known = self._bound.get(pod.uid)
        if known is not None:
            return 0
        subnet = self._subnet_for(pod)
        token = f"adopted:{pod.uid}"
        request = ReserveRequest(static_ips=pod.wanted_ips)
        allocation = await self.ipam.reserve(subnet, token, request,
                                             namespace=pod.namespace, name=pod.name)
        try:
            await self.patch_pod(pod.namespace, pod.name,
                                 allocation_annotations(allocation, subnet))
        except Exception as exc:  # gone meanwhile: the orphan sweep frees the reservation
            raise errors.IpamError(f"could not write its address into the pod: {exc}") from exc
        self._bound[pod.uid] = await self.ipam.bind(
            subnet.name, token, uid=pod.uid, namespace=pod.namespace, name=pod.name)
        log.info("pod %s: adopted with address %s in subnet %s", pod.key,
                 ",".join(allocation.ip_strings()), subnet.name)
        return 1

    def _subnet_for(self, pod: PodView) -> SubnetSpec:
        """An adopted pod's subnet: the one it asks for, else its namespace's, else the
        default, as at admission."""
        by_name = {spec.name: spec for spec in self._subnets}
        if pod.wanted_subnet:
            if pod.wanted_subnet not in by_name:
                raise errors.UnknownSubnet(pod.wanted_subnet)
            return by_name[pod.wanted_subnet]
        bound = next((s for s in self._subnets if pod.namespace in s.namespaces), None)
        default = next((s for s in self._subnets if s.default), by_name.get(DEFAULT_SUBNET))
        chosen = bound or default
        if chosen is None:
            raise errors.UnknownSubnet(DEFAULT_SUBNET)
        return chosen

    async def _restore(self, pod: PodView) -> Allocation:
        """The pod is the durable record: put its address back under its token."""
        sticky = (names.sticky_key(pod.namespace, pod.statefulset, pod.ordinal)
                  if pod.statefulset else "")
        request = ReserveRequest(static_ips=pod.ips, mac=pod.mac or None, sticky_key=sticky)
        await self.ipam.reserve(pod.subnet, pod.reservation, request,
                                namespace=pod.namespace, name=pod.name)
        allocation = await self.ipam.bind(pod.subnet, pod.reservation, uid=pod.uid,
                                          namespace=pod.namespace, name=pod.name)
        log.info("pod %s: address %s restored from the pod", pod.key,
                 ",".join(map(str, pod.ips)))
        return allocation

    def _as_recorded(self, pods: Iterable[PodView]) -> list[PodView]:
        """The pods as OVN must see them: with the addresses, MAC and subnet of the IPAM
        record bound to their UID, never those of their (editable) annotations. A pod
        the IPAM has not bound gets no port."""
        views = []
        node_ports = self._node_ports()
        for pod in pods:
            record = self._bound.get(pod.uid)
            if record is None or pod.terminal or pod.host_network or self._lost(pod):
                continue
            if pod.port_name in node_ports:  # "node-x.y" of pod node-x in namespace y
                self._report(pod, "PortNameTaken", (
                    f"the pod's OVN port name {pod.port_name} is node {pod.port_name[5:]}'s "
                    "join port; the pod gets no port (rename it)"))
                continue
            if record.mac == pod.mac and record.ips == pod.ips and record.subnet == pod.subnet:
                views.append(pod)  # the common case, and an event step's hot loop
                continue
            recorded = replace(pod, subnet=record.subnet, ips=record.ips, mac=record.mac)
            if pod.allocated and (pod.subnet, pod.ips, pod.mac.lower()) != (
                    record.subnet, record.ips, record.mac.lower()):
                self._report(pod, "AnnotationsIgnored", (
                    f"the pod's annotations say subnet {pod.subnet or '-'}, address "
                    f"{','.join(map(str, pod.ips)) or '-'}, MAC {pod.mac or '-'}; podnet keeps "
                    f"what its IPAM holds for the pod: subnet {record.subnet}, address "
                    f"{','.join(record.ip_strings())}, MAC {record.mac}"))
            views.append(recorded)
        return views

    # ------------------------------------------------------- orphaned reservations

    async def sweep_orphans(self) -> int:
        """Free the reservations of pods that were refused after admission (quota, a later
        webhook, AlreadyExists, an invalid name): those older than the margin that no pod
        carries in a list started after the margin had passed. A StatefulSet ordinal's
        or a node's goes back to kept. Returns how many were freed."""
        if self.list_pods is None:
            return 0  # no evidence to judge by: the TTL decides
        cutoff_ms = time.time() * 1000 - self.settings.orphan_margin_s * 1000
        candidates = [reservation for subnet in await self.ipam.subnet_names()
                      for reservation in await self.ipam.reservations(subnet)
                      if reservation.since_ms < cutoff_ms]
        if not candidates:
            return 0
        carried = {str(((pod.get("metadata") or {}).get("annotations") or {}).get(
            keys.RESERVATION, "")) for pod in await self.list_pods()}
        freed = 0
        for reservation in candidates:
            if reservation.token in carried:
                continue
            gone = await self.ipam.release(reservation.subnet, "token", reservation.token,
                                           keep_sticky=True, only_reserved=True)
            if gone is not None:
                freed += 1
                if self.status is not None:
                    self.status.touch([reservation.subnet])
                log.info("reservation %s of %s (%s) freed: no pod carries it %.0f s after "
                         "admission", reservation.token, reservation.owner,
                         ",".join(reservation.ip_strings()),
                         (time.time() * 1000 - reservation.since_ms) / 1000)
        self.orphans_freed += freed
        if freed and self.observer is not None:
            self.observer.orphans_freed(freed)
        return freed

    async def sweep_orphans_forever(self) -> None:
        """``sweep_orphans`` every ``orphan_sweep_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.settings.orphan_sweep_s)
            try:
                await self.sweep_orphans()
            except Exception as exc:  # the next sweep retries; the TTL is the backstop
                raise_if_cancelled()
                log.warning("sweep of orphaned reservations failed: %s", exc)

    def _node_ports(self) -> set[str]:
        return {join.port_name for join in self._nodes}

    def _lost(self, pod: PodView) -> bool:
        """A deleted pod past its grace period on a node that is gone or NotReady: it no
        longer runs anywhere (the node lifecycle would force-delete it), so its address is
        released. A pod that may still run (its node Ready, or its grace not over) never
        loses its address."""
        if not pod.deleting or not pod.deletion_deadline_s or time.time() < pod.deletion_deadline_s:
            return False
        store = self.stores.get("Node")
        node = store.get(pod.node) if store is not None and pod.node else None
        return node is None or not node_ready(node)

    # ---------------------------------------------------------- per-pod problems

    def _pod_failed(self, pod: PodView, reason: str, message: str) -> None:
        """Report a failed attempt on the pod and mark it for a retry after a backoff."""
        attempts = self._failures.get(pod.uid, 0) + 1
        self._failures[pod.uid] = attempts
        delay = min(RETRY_INITIAL_S * 2 ** (attempts - 1), RETRY_MAX_S)
        log.warning("pod %s: %s (attempt %d; retrying in %.0f s)", pod.key, message,
                    attempts, delay)
        self._report(pod, reason, message, logged=True)
        asyncio.get_running_loop().call_later(delay, self._retry, (pod.namespace, pod.name))

    def _retry(self, key: ObjectKey) -> None:
        self.dirty.pods.add(key)
        self._wake.set()

    def _report(self, pod: PodView, reason: str, message: str, logged: bool = False) -> None:
        """A log line (unless the caller ``logged`` one) and a Warning Event on the pod,
        once per reason and message."""
        if self._reported.get((pod.uid, reason)) == message:
            return
        self._reported[(pod.uid, reason)] = message
        if not logged:
            log.warning("pod %s: %s", pod.key, message)
        if self.report_pod is not None:
            task = asyncio.get_running_loop().create_task(
                self._send_report(pod, reason, message))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    async def _send_report(self, pod: PodView, reason: str, message: str) -> None:
        assert self.report_pod is not None
        try:
            await self.report_pod(pod, reason, message)
        except Exception as exc:  # an Event is best effort; the log line above stays
            log.info("pod %s: could not record event %s: %s", pod.key, reason, exc)

    def _statefulset(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        store = self.stores.get("StatefulSet")
        return store.get(name, namespace) if store is not None else None

    def _ordinal_wanted(self, namespace: str, statefulset: str, ordinal: int,
                        owner_uid: str = "", subnet: str = "") -> bool:
        """Whether the StatefulSet still has ``ordinal`` (as Kube-OVN judges it): the
        same set (``owner_uid``, when known), the ordinal within ``spec.ordinals.start``
        + ``replicas``, and the set's pod template not moved to another subnet."""
        obj = self._statefulset(namespace, statefulset)
        if obj is None:
            return False
        metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        if owner_uid and metadata.get("uid") and metadata.get("uid") != owner_uid:
            return False
        replicas = spec.get("replicas", 1)
        start = (spec.get("ordinals") or {}).get("start") or 0
        if not isinstance(start, int) or not start <= ordinal < start + int(
                replicas if replicas is not None else 1):
            return False
        template = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
        wanted = str(template.get(keys.LOGICAL_SWITCH) or "").strip()
        return not (subnet and wanted and wanted != subnet)

    async def _release_pod(self, pod: PodView) -> int:
        """Release what the pod's UID holds (keeping a wanted StatefulSet ordinal's)."""
        record = self._bound.pop(pod.uid, None)
        subnet = record.subnet if record is not None else pod.subnet
        keep = bool(pod.statefulset) and self._ordinal_wanted(
            pod.namespace, pod.statefulset, pod.ordinal, pod.statefulset_uid, subnet)
        released = await self.ipam.release(subnet, "uid", pod.uid, keep_sticky=keep)
        self._routed.discard(pod.uid)
        self._failures.pop(pod.uid, None)
        for key in [key for key in self._reported if key[0] == pod.uid]:
            del self._reported[key]
        return int(released is not None)

    async def _release_gone(
        self, keys_: Iterable[ObjectKey], before: Mapping[ObjectKey, PodView | None]
    ) -> int:
        """Release pods of the step that are gone from the store (deleted), by UID: a
        pod re-created under the same name meanwhile keeps its own address. A pod this
        worker never saw is left to the next full step's garbage collection."""
        released = 0
        for key in keys_:
            seen = before.get(key)
            current = self.index.pods.get(key)
            if seen is None or not seen.uid or (current is not None and current.uid == seen.uid):
                continue
            released += await self._release_pod(seen)
        return released

    async def _collect_garbage(self, pods: list[PodView]) -> int:
        """Free what no live pod holds: bound to a vanished pod (after the grace period),
        or kept for a StatefulSet ordinal or node that is no longer wanted."""
        live_uids = {pod.uid for pod in pods if not pod.terminal}
        nodes = {obj.get("metadata", {}).get("name") for obj in self._objects("Node")}
        now_ms = time.time() * 1000
        grace_ms = self.settings.release_grace_s * 1000
        released = 0
        for subnet in await self.ipam.subnet_names():
            async for allocation in self.ipam.all_allocations(subnet):
                if self._is_garbage(allocation, live_uids, nodes, now_ms - grace_ms):
                    by = "sticky" if allocation.state == "kept" else "token"
                    value = allocation.sticky_key if by == "sticky" else allocation.token
                    await self.ipam.release(subnet, by, value)  # type: ignore[arg-type]
                    self._bound.pop(allocation.uid, None)
                    released += 1
        return released

    def _is_garbage(
        self, allocation: Allocation, live_uids: set[str], nodes: set[Any], cutoff_ms: float
    ) -> bool:
        if allocation.state == "bound":
            return allocation.uid not in live_uids and allocation.since_ms < cutoff_ms
        if allocation.state != "kept":
            return False  # reservations expire by their TTL
        owner = names.parse_sticky_key(allocation.sticky_key)
        if isinstance(owner, names.NodeKey):
            return owner.node not in nodes
        return owner is None or not self._ordinal_wanted(
            owner.namespace, owner.statefulset, owner.ordinal, subnet=allocation.subnet)

    # ------------------------------------------------------------ routed mark

    async def _mark_routed(self, pods: Iterable[PodView], view: ClusterView) -> int:
        """Annotate ``routed=true`` on pods whose port now exists. The patches of a step
        go out a few at a time: a burst of new pods must not wait in line for one API
        round trip each."""
        if self.patch_pod is None:
            return 0
        subnets = {subnet.name for subnet in view.subnets}
        due = [pod for pod in pods
               if not (pod.routed or pod.uid in self._routed or not pod.ips or pod.terminal
                       or pod.deleting or pod.subnet not in subnets)]
        return sum(await asyncio.gather(*(self._patch_routed(pod) for pod in due)))

    async def _patch_routed(self, pod: PodView) -> int:
        assert self.patch_pod is not None
        async with self._patches:
            try:
                await self.patch_pod(pod.namespace, pod.name, {keys.ROUTED: "true"})
            except Exception as exc:  # the pod may be gone meanwhile; the next step retries
                log.info("pod %s: could not mark routed: %s", pod.key, exc)
                return 0
        self._routed.add(pod.uid)
        return 1


def _parse_namespaces(objects: list[dict[str, Any]]) -> dict[str, NamespaceView]:
    views: dict[str, NamespaceView] = {}
    for obj in objects:
        namespace = parse_namespace(obj)
        views[namespace.name] = namespace
    return views
