"""Benchmark of NetworkPolicy in the sync worker: how fast a policy or a pod reaches NB,
a cold start with a thousand policies, and (optionally) how soon the datapath agrees.

Run from the repository root: ``python bench/netpol.py`` (``--quick`` for a smoke run,
``--effective`` to add the end-to-end part, which needs root and a lab).

The workload is generated from ``--seed``: 100 namespaces (labelled by team and
environment, one of them the monitoring namespace) of 100 pods each (labelled by app
and tier, with named container ports), and 10 policies per namespace: one admitting the
monitoring namespace's scrapers on the named port ``metrics``, the others a mix of
podSelector, namespaceSelector and ipBlock peers, numbered, ranged and named ports,
ingress and egress. One run starts a redis-server and an OVN central (NB, SB,
ovn-northd) in a temporary directory and measures, with the real worker:

- cold start: the worker's first full step with every policy into an empty NB, its peak
  RSS, and the NB file size after compaction; the reference is the same cluster with no
  policies, cold-started into a second empty NB;
- policy events: a NetworkPolicy created or changed, from the event to the committed
  transaction holding its ACLs, with the compile and the NB transaction timed apart;
  the reference is compiling every policy over every pod (what a full step does);
- pod events: a scraper pod added to the monitoring namespace, which 100 policies
  admit, from the event to the committed address sets and port groups;
- with ``--effective``: a lab (``podnet up``, two nodes) and the truth table's probing
  agents; each policy created is timed until every probe agrees with the oracle.

It ends with one line ``RESULT name=netpol key=value ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Row, percentile, render_table
from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from podnet.daemons import RedisServer
from podnet.ovn import OvnCentral
from podnet_plumbing.kube import Store
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.nb import Northbound, Report, Scope
from podnet_sync.nb_model import DesiredState
from podnet_sync.netpol import PolicyView, add_network_policies, parse_namespace
from podnet_sync.worker import KINDS, StepReport, SyncSettings, SyncWorker

NODES = 10
SUBNETS = 20
MONITORING = "ns000"
TEAMS = 10
ENVS = ("prod", "staging", "dev")
TIERS = ("web", "api", "db")


@dataclass(frozen=True)
class Scale:
    namespaces: int
    pods_per_namespace: int
    policies_per_namespace: int
    policy_events: int
    pod_events: int


FULL = Scale(100, 100, 10, 100, 100)
QUICK = Scale(10, 20, 5, 20, 20)


# ------------------------------------------------------------------ the workload


def namespace_name(index: int) -> str:
    return f"ns{index:03d}"


def namespace_object(index: int) -> dict[str, Any]:
    labels = {"kubernetes.io/metadata.name": namespace_name(index),
              "team": f"t{index % TEAMS}", "env": ENVS[index % len(ENVS)]}
    if namespace_name(index) == MONITORING:
        labels["purpose"] = "monitoring"
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace_name(index), "uid": f"ns-{index}",
                         "labels": labels}}


def pod_labels(namespace: str, index: int) -> dict[str, str]:
    labels = {"app": f"a{index % 10}", "tier": TIERS[index % len(TIERS)]}
    if namespace == MONITORING and index % 20 == 0:
        labels["role"] = "scraper"
    return labels


def container_ports(index: int) -> list[dict[str, Any]]:
    """Named ports, with ``http`` on another number on every fourth pod, so that named
    ports resolve to more than one number."""
    return [{"name": "http", "containerPort": 8081 if index % 4 == 0 else 8080,
             "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
            {"name": "dns", "containerPort": 53, "protocol": "UDP"}]


def subnet_name(index: int) -> str:
    return f"net{index:03d}"


def subnet_object(index: int) -> dict[str, Any]:
    return {"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
            "metadata": {"name": subnet_name(index)},
            "spec": {"cidrBlock": f"10.{100 + index // 16}.{(index % 16) * 16}.0/20"}}


def pod_object(namespace: str, name: str, index: int, subnet: str,
               allocation: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}",
        "labels": pod_labels(namespace, index), "annotations": {
            "ovn.kubernetes.io/allocated": "true", "ovn.kubernetes.io/logical_switch": subnet,
            "ovn.kubernetes.io/ip_address": ",".join(allocation.ip_strings()),
            "ovn.kubernetes.io/mac_address": allocation.mac,
            "ovn.kubernetes.io/routed": "true", "podnet.io/reservation": allocation.token}},
        "spec": {"nodeName": f"node{index % NODES}", "containers": [
            {"name": "app", "image": "app", "ports": container_ports(index)}]},
        "status": {"phase": "Running"}}


def _selector(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.25:
        return {"matchExpressions": [{"key": "tier", "operator": "In",
                                      "values": rng.sample(TIERS, 2)}]}
    return {"matchLabels": {"app": f"a{rng.randrange(10)}"}}


def _peer(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.35:
        return {"podSelector": _selector(rng)}
    if roll < 0.6:
        return {"namespaceSelector": {"matchLabels": {"team": f"t{rng.randrange(TEAMS)}"}},
                "podSelector": {"matchLabels": {"tier": rng.choice(TIERS)}}}
    if roll < 0.75:
        return {"namespaceSelector": {"matchLabels": {"env": rng.choice(ENVS)}}}
    if roll < 0.9:
        return {"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": namespace_name(rng.randrange(100))}}}
    second, third = 16 + rng.randrange(16), rng.randrange(256)
    return {"ipBlock": {"cidr": f"172.{second}.0.0/16",
                        "except": [f"172.{second}.{third}.0/24"]} if rng.random() < 0.5 else
            {"cidr": f"192.168.{third}.0/24"}}


def _ports(rng: random.Random) -> list[dict[str, Any]]:
    roll = rng.random()
    if roll < 0.3:
        return [{"protocol": "TCP", "port": rng.choice((80, 443, 5432, 6379))}]
    if roll < 0.5:
        return [{"protocol": "TCP", "port": "http"}]
    if roll < 0.6:
        return [{"protocol": "UDP", "port": 5000, "endPort": 5010}]
    if roll < 0.7:
        return [{"protocol": "TCP", "port": 8080}, {"protocol": "UDP", "port": "dns"}]
    return []


def _rules(rng: random.Random, peers_field: str) -> list[dict[str, Any]]:
    rules = []
    for _ in range(rng.randint(1, 3)):
        rule: dict[str, Any] = {}
        peers = [_peer(rng) for _ in range(rng.randint(0, 2))]
        if peers:
            rule[peers_field] = peers
        ports = _ports(rng)
        if ports:
            rule["ports"] = ports
        rules.append(rule)
    return rules


def policy_object(namespace: str, name: str, seed: int) -> dict[str, Any]:
    """A policy drawn from ``seed``: the same seed gives the same policy."""
    rng = random.Random(seed)
    spec: dict[str, Any] = {"podSelector": _selector(rng) if rng.random() < 0.8 else {},
                            "ingress": _rules(rng, "from")}
    if rng.random() < 0.3:
        spec["egress"] = _rules(rng, "to")
        spec["policyTypes"] = ["Ingress", "Egress"]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": namespace, "name": name, "uid": f"np-{namespace}-{name}"},
            "spec": spec}


def monitoring_policy(namespace: str) -> dict[str, Any]:
    """Every namespace admits the monitoring namespace's scrapers on ``metrics``."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": namespace, "name": "allow-scrapers",
                         "uid": f"np-{namespace}-scrapers"},
            "spec": {"podSelector": {}, "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"purpose": "monitoring"}},
                          "podSelector": {"matchLabels": {"role": "scraper"}}}],
                "ports": [{"protocol": "TCP", "port": "metrics"}]}]}}


def policies(scale: Scale, seed: int) -> list[dict[str, Any]]:
    found = []
    for ns in range(scale.namespaces):
        namespace = namespace_name(ns)
        found.append(monitoring_policy(namespace))
        for k in range(1, scale.policies_per_namespace):
            found.append(policy_object(namespace, f"np{k}", seed * 100_000 + ns * 100 + k))
    return found


# ------------------------------------------------------------------ the worker, timed


class TimedNorthbound(Northbound):
    """Notes how long each reconcile (its NB transactions) took."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_s = 0.0

    def reconcile(self, desired: DesiredState, scope: Scope | None = None) -> Report:
        started = time.perf_counter()
        try:
            return super().reconcile(desired) if scope is None else \
                super().reconcile(desired, scope)
        finally:
            self.last_s = time.perf_counter() - started


class TimedWorker(SyncWorker):
    """Notes how long each step's NetworkPolicy compile took."""

    compile_s = 0.0

    def _add_policies(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return super()._add_policies(*args, **kwargs)
        finally:
            self.compile_s += time.perf_counter() - started

    def _update_policies(self, *args: Any, **kwargs: Any) -> Any:
        if not hasattr(SyncWorker, "_update_policies"):  # a tree without the cache
            return None
        started = time.perf_counter()
        try:
            return super()._update_policies(*args, **kwargs)
        finally:
            self.compile_s += time.perf_counter() - started

    async def step(self) -> StepReport:
        self.compile_s = 0.0
        return await super().step()


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def reserve(ipam: Ipam, wanted: list[tuple[str, str, str]]) -> list[Any]:
    """What admission did for these pods (namespace, name, subnet): not timed."""
    gate = asyncio.Semaphore(64)

    async def one(namespace: str, name: str, subnet: str) -> Any:
        async with gate:
            return await ipam.reserve(subnet, f"tok-{namespace}-{name}", namespace=namespace,
                                      name=name)

    return list(await asyncio.gather(*(one(*w) for w in wanted)))


async def populate(ipam: Ipam, stores: dict[str, Store], scale: Scale) -> None:
    for index in range(SUBNETS):
        await ipam.ensure_subnet(subnet_object(index))
    stores["Subnet"].replace([subnet_object(i) for i in range(SUBNETS)], "1")
    stores["Node"].replace([
        {"metadata": {"name": f"node{n}", "uid": f"node-{n}"}, "status": {"addresses": [
            {"type": "InternalIP", "address": f"192.168.50.{n + 10}"}]}}
        for n in range(NODES)], "1")
    stores["Namespace"].replace([namespace_object(i) for i in range(scale.namespaces)], "1")
    wanted = [(namespace_name(ns), f"pod{j:03d}", subnet_name((ns * 7 + j) % SUBNETS))
              for ns in range(scale.namespaces) for j in range(scale.pods_per_namespace)]
    allocations = await reserve(ipam, wanted)
    stores["Pod"].replace([
        pod_object(ns, name, int(name[3:]), subnet, allocation)
        for (ns, name, subnet), allocation in zip(wanted, allocations, strict=True)], "1")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def settle(central: OvnCentral) -> None:
    """northd caught up with the cold start, and the replica with its writes back."""
    await asyncio.to_thread(central.nbctl, "--wait=sb", "sync", timeout_s=300.0)
    await asyncio.sleep(1.0)


def compacted_mb(central: OvnCentral, workdir: Path) -> float:
    central.nb.appctl("ovsdb-server/compact", timeout_s=120.0)
    return sum(p.stat().st_size for p in workdir.glob("ovnnb_db*.db")) / 2**20


@dataclass
class Event:
    total_s: float
    compile_s: float
    nb_s: float


async def timed_step(worker: TimedWorker, northbound: TimedNorthbound,
                     kind: str, obj: dict[str, Any]) -> Event:
    started = time.perf_counter()
    worker.mark(kind, obj)
    await worker.step()
    return Event(time.perf_counter() - started, worker.compile_s, northbound.last_s)


async def policy_events(worker: TimedWorker, northbound: TimedNorthbound,
                        stores: dict[str, Store], scale: Scale, seed: int) -> list[Event]:
    """Alternately a new policy and a change to an existing one, in seeded namespaces."""
    rng = random.Random(seed + 1)
    events = []
    for i in range(scale.policy_events):
        namespace = namespace_name(rng.randrange(scale.namespaces))
        if i % 2 == 0:
            obj = policy_object(namespace, f"evt{i:03d}", seed * 7 + i)
            action = "ADDED"
        else:
            k = rng.randrange(1, scale.policies_per_namespace)
            obj = policy_object(namespace, f"np{k}", seed * 13 + i)
            action = "MODIFIED"
        stores["NetworkPolicy"].apply(action, obj)
        events.append(await timed_step(worker, northbound, "NetworkPolicy", obj))
        await asyncio.sleep(0.02)
    return events


async def pod_events(worker: TimedWorker, northbound: TimedNorthbound, ipam: Ipam,
                     stores: dict[str, Store], scale: Scale) -> list[Event]:
    """Scrapers added to the monitoring namespace: every allow-scrapers policy's address
    set gains each one's address."""
    wanted = [(MONITORING, f"scraper{i:03d}", subnet_name(i % SUBNETS))
              for i in range(scale.pod_events)]
    allocations = await reserve(ipam, wanted)
    events = []
    for (namespace, name, subnet), allocation in zip(wanted, allocations, strict=True):
        obj = pod_object(namespace, name, 0, subnet, allocation)  # index 0: a scraper
        stores["Pod"].apply("ADDED", obj)
        events.append(await timed_step(worker, northbound, "Pod", obj))
        await asyncio.sleep(0.02)
    return events


def naive_compile_s(worker: TimedWorker, stores: dict[str, Store], rounds: int = 1) -> float:
    """Every policy over every pod, as a full step compiles them (median of rounds)."""
    from podnet_sync.netpol import parse_network_policy

    parsed = [parse_network_policy(obj) for obj in stores["NetworkPolicy"].objects()]
    namespaces = {view.name: view for view in
                  (parse_namespace(obj) for obj in stores["Namespace"].objects())}
    pods = worker._as_recorded(worker.index.pods.values())
    node_ips = [ip for node in worker._nodes for ip in node.ips]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        add_network_policies(DesiredState(), PolicyView(parsed, pods, namespaces, node_ips))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def cold_start(scale: Scale, seed: int, workdir: Path, with_policies: bool
                     ) -> tuple[float, dict[str, Any]]:
    """One cluster, cold-started into an empty NB; the rest of the run when asked."""
    with RedisServer(workdir / "redis", appendonly=False) as redis_server, \
            OvnCentral(workdir / "ovn") as central:
        ipam = Ipam.connect(RedisSettings(url=redis_server.url, prefix="bench:"))
        await ipam.ensure_subnet(build_subnet("join", "100.64.0.0/16"))
        stores = {kind: Store() for kind in KINDS}
        await populate(ipam, stores, scale)
        if with_policies:
            stores["NetworkPolicy"].replace(policies(scale, seed), "1")
        api = await asyncio.to_thread(nb_api, central.nb_remote)
        northbound = TimedNorthbound(api)
        worker = TimedWorker(ipam, northbound, stores,
                             SyncSettings(resync_interval_s=3600, release_grace_s=3600,
                                          settle_heap=True))
        figures: dict[str, Any] = {"rss_before_mb": peak_rss_mb()}
        started = time.perf_counter()
        cold = await worker.step()
        cold_s = time.perf_counter() - started
        figures["peak_rss_mb"] = peak_rss_mb()
        figures["cold_compile_s"] = worker.compile_s
        figures["cold_rows"] = cold.ovn.created
        print(f"cold start {'with' if with_policies else 'without'} policies: {cold_s:.2f} s "
              f"(compile {worker.compile_s:.2f} s), {cold.ovn.created} rows", flush=True)
        if with_policies:
            await settle(central)
            figures["naive_s"] = naive_compile_s(worker, stores)
            figures["policy"] = await policy_events(worker, northbound, stores, scale, seed)
            figures["pod"] = await pod_events(worker, northbound, ipam, stores, scale)
            figures["nb_db_mb"] = await asyncio.to_thread(compacted_mb, central,
                                                          workdir / "ovn")
        await asyncio.to_thread(close_api, api)
        await ipam.close()
    return cold_s, figures


# ------------------------------------------------------------------ end to end


def effective(rounds: int, seed: int) -> list[float]:
    """Seconds from creating a policy to the last probe sent in the first round in which
    every probe of the truth table agrees with the oracle, in a two-node lab (the policy
    removed, and agreement awaited, between rounds): each verdict is the datapath's when
    its probe left. Rounds follow each other about a second apart (a denied probe waits
    its timeout), so the figure is an upper bound within that second."""
    from bench._lab import bench_lab
    from podnet.lab.rest import Rest
    from podnet_plumbing import kube
    from tests.netpol_matrix import differences
    from tests.test_netpol_truth_table import NAMESPACES, PODS, TruthTable, manifests

    text = "\n---\n".join(json.dumps(obj) for obj in manifests())
    latencies = []
    with bench_lab("netpol", text, nodes=2) as (settings, up_s):
        print(f"lab up in {up_s:.1f} s", flush=True)
        table = TruthTable(settings, Rest(kube.kube_client(settings.kubeconfig("admin"))))
        service = table.rest.get("Service", "web", "y")
        assert service is not None
        table.vip = str(service["spec"]["clusterIP"])
        table.start_agents()
        try:
            table.expect("before any policy")
            rng = random.Random(seed)
            for index in range(rounds):
                policy = lab_policy(rng, index, NAMESPACES, PODS)
                cluster_after = None
                started = time.monotonic()
                table.apply(policy)
                cluster_after = table.cluster()
                wanted, want = table.want(cluster_after)
                while True:
                    # a round sends every probe at once and sees the datapath as it is
                    # when they leave; a denied probe then waits out its timeout
                    seen = table.observe(wanted, cluster_after)
                    sampled = seen.last_sent or time.monotonic()
                    if not differences(want, seen.seen):
                        break
                    if time.monotonic() - started > 30:
                        print(f"round {index}: no agreement after 30 s", flush=True)
                        sampled = time.monotonic()
                        break
                latencies.append(sampled - started)
                print(f"round {index}: {latencies[-1]:.2f} s, the round seeing it ended at "
                      f"{time.monotonic() - started:.2f} s "
                      f"({policy['metadata']['namespace']}/{policy['metadata']['name']})",
                      flush=True)
                table.reset()
        finally:
            table.stop_agents()
    return sorted(latencies)


def lab_policy(rng: random.Random, index: int, namespaces: tuple[str, ...],
               pods: tuple[str, ...]) -> dict[str, Any]:
    """A policy over the truth table's pods (labels ``pod``, namespaces ``ns``)."""
    namespace = rng.choice(namespaces)
    peer = rng.choice([
        {"podSelector": {"matchLabels": {"pod": rng.choice(pods)}}},
        {"namespaceSelector": {"matchLabels": {"ns": rng.choice(namespaces)}}},
        {"namespaceSelector": {"matchLabels": {"ns": rng.choice(namespaces)}},
         "podSelector": {"matchLabels": {"pod": rng.choice(pods)}}},
    ])
    rule: dict[str, Any] = {"from": [peer]}
    roll = rng.random()
    if roll < 0.3:
        rule["ports"] = [{"protocol": "TCP", "port": 80}]
    elif roll < 0.5:
        rule["ports"] = [{"protocol": "TCP", "port": "web"}]
    spec = {"podSelector": {"matchLabels": {"pod": rng.choice(pods)}}, "ingress": [rule]}
    return copy.deepcopy({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                          "metadata": {"name": f"bench{index}", "namespace": namespace},
                          "spec": spec})


# ------------------------------------------------------------------ the report


def _ms(values: list[float], q: float) -> float:
    return 1000 * percentile(sorted(values), q)


TARGETS = {"apply_p99_ms": 50.0, "cold_start_s": 20.0, "peak_rss_mb": 400.0,
           "pod_p99_ms": 50.0, "effective_p99_ms": 2000.0}


def report(cold_s: float, figures: dict[str, Any], reference_s: float,
           effective_s: list[float]) -> dict[str, float]:
    policy: list[Event] = figures["policy"]
    pod: list[Event] = figures["pod"]
    rows = []
    for label, events in (("policy event -> ACLs", policy), ("pod event -> sets", pod)):
        total = [e.total_s for e in events]
        rows.append(Row(label, len(events) / sum(total), _ms(total, 0.5), _ms(total, 0.99),
                        f"{len(events)} events"))
        rows.append(Row("  compile", 0, _ms([e.compile_s for e in events], 0.5),
                        _ms([e.compile_s for e in events], 0.99), ""))
        rows.append(Row("  NB transaction", 0, _ms([e.nb_s for e in events], 0.5),
                        _ms([e.nb_s for e in events], 0.99), ""))
    naive = figures["naive_s"]
    rows.append(Row("reference: compile everything", 1 / naive, 1000 * naive, 1000 * naive,
                    "every policy over every pod"))
    rows.append(Row("cold start, policies", 0, 1000 * cold_s, 1000 * cold_s,
                    f"compile {figures['cold_compile_s']:.2f} s"))
    rows.append(Row("reference: cold start, none", 0, 1000 * reference_s,
                    1000 * reference_s, "the same pods, no policy"))
    if effective_s:
        rows.append(Row("policy -> datapath agrees", 0, _ms(effective_s, 0.5),
                        _ms(effective_s, 0.99), f"{len(effective_s)} rounds"))
    print()
    print(render_table(rows))
    apply_p50 = _ms([e.total_s for e in policy], 0.5)
    return {
        "apply_p99_ms": _ms([e.total_s for e in policy], 0.99),
        "apply_p50_ms": apply_p50,
        "apply_compile_p99_ms": _ms([e.compile_s for e in policy], 0.99),
        "apply_nb_p99_ms": _ms([e.nb_s for e in policy], 0.99),
        "effective_p99_ms": _ms(effective_s, 0.99) if effective_s else -1.0,
        "cold_start_s": cold_s,
        "reference_cold_start_s": reference_s,
        "cold_ratio": cold_s / reference_s,
        "peak_rss_mb": figures["peak_rss_mb"],
        "nb_db_mb": figures["nb_db_mb"],
        "pod_p99_ms": _ms([e.total_s for e in pod], 0.99),
        "pod_compile_p99_ms": _ms([e.compile_s for e in pod], 0.99),
        "pod_nb_p99_ms": _ms([e.nb_s for e in pod], 0.99),
        "naive_compile_ms": 1000 * naive,
        "naive_ratio": 1000 * naive / apply_p50,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--effective", action="store_true",
                        help="also time policies end to end in a lab (root, ~2 min)")
    parser.add_argument("--effective-rounds", type=int, default=10)
    parser.add_argument("--namespaces", type=int, default=FULL.namespaces)
    parser.add_argument("--pods-per-namespace", type=int, default=FULL.pods_per_namespace)
    args = parser.parse_args()
    scale = QUICK if args.quick else Scale(args.namespaces, args.pods_per_namespace,
                                           FULL.policies_per_namespace, FULL.policy_events,
                                           FULL.pod_events)
    print(f"{scale.namespaces} namespaces x {scale.pods_per_namespace} pods, "
          f"{scale.namespaces * scale.policies_per_namespace} policies, seed {args.seed}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="podnet-bench-netpol-") as workdir:
        cold_s, figures = asyncio.run(cold_start(scale, args.seed, Path(workdir) / "a", True))
    with tempfile.TemporaryDirectory(prefix="podnet-bench-netpol-") as workdir:
        reference_s, _ = asyncio.run(cold_start(scale, args.seed, Path(workdir) / "b", False))
    effective_s = effective(args.effective_rounds, args.seed) if args.effective else []
    results = report(cold_s, figures, reference_s, effective_s)
    print()
    for key, target in TARGETS.items():
        if results[key] < 0:
            continue
        verdict = "pass" if results[key] <= target else "FAIL"
        print(f"target {key} <= {target:g}: {results[key]:.2f} {verdict}")
    print("RESULT name=netpol " + " ".join(f"{key}={value:.2f}"
                                          for key, value in results.items()))


if __name__ == "__main__":
    main()
