"""Benchmark of the sync worker: cold start, event latency and memory at scale.

Run from the repository root: ``python bench/sync.py`` (``--quick`` for a smoke run).

One run starts a redis-server and an OVN central (NB, SB, ovn-northd) in a temporary
directory and measures, side by side:

- cold start: the worker's first full step mirroring N pods in M subnets plus S
  services (with their EndpointSlices) into an empty NB, IPAM binds included;
- pod events at a steady rate: time from the event reaching the worker to the
  transaction holding the pod's port being committed, p50/p99, in the steady state
  after the cold start (northd caught up with it);
- EndpointSlice changes: time from the event to the load balancer row committed;
- the worker's peak RSS and the NB database file size at that scale;
- the reference: the same kinds of rows written with ``ovn-nbctl``, one command per
  object (how early CNIs did it), timed on a sample and scaled to N + S objects.

It ends with one line ``RESULT name=sync key=value ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import resource
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
from podnet_sync.nb import Northbound
from podnet_sync.worker import KINDS, Dirty, StepReport, SyncSettings, SyncWorker

NODES = 10


@dataclass
class Scale:
    pods: int
    subnets: int
    services: int
    event_rate: float
    event_seconds: float
    reference_sample: int


class TimedWorker(SyncWorker):
    """A worker that notes when each dirty pod and service was committed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committed: dict[str, float] = {}
        self._services: set[str] = set()

    def _reread_services(self, dirty: Dirty) -> set[str]:
        services = super()._reread_services(dirty)
        self._services = services
        return services

    async def step(self) -> StepReport:
        pods = {f"pod:{ns}/{name}" for ns, name in self.dirty.pods}
        self._services = set()
        report = await super().step()
        done = time.perf_counter()
        for key in pods | {f"svc:{key}" for key in self._services}:
            self.committed[key] = done
        return report


def subnet_name(index: int) -> str:
    return f"net{index:03d}"


def subnet_object(index: int) -> dict[str, Any]:
    return {"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
            "metadata": {"name": subnet_name(index)},
            "spec": {"cidrBlock": f"10.{100 + index // 64}.{(index % 64) * 4}.0/22"}}


def pod_object(name: str, subnet: str, allocation: Any, node: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": "bench", "uid": f"uid-{name}", "annotations": {
            "ovn.kubernetes.io/allocated": "true", "ovn.kubernetes.io/logical_switch": subnet,
            "ovn.kubernetes.io/ip_address": ",".join(allocation.ip_strings()),
            "ovn.kubernetes.io/mac_address": allocation.mac,
            "ovn.kubernetes.io/routed": "true", "podnet.io/reservation": allocation.token}},
        "spec": {"nodeName": f"node{node}"}, "status": {"phase": "Running"}}


def service_objects(index: int, backends: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    ip = ipaddress.ip_address("10.96.0.0") + index + 1
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": f"svc{index}", "namespace": "bench"},
               "spec": {"clusterIP": str(ip), "clusterIPs": [str(ip)],
                        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
    return service, endpoint_slice(index, backends)


def endpoint_slice(index: int, backends: list[str]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"svc{index}-x", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": f"svc{index}"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in backends],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


async def reserve_pods(ipam: Ipam, names: list[tuple[str, str]]) -> list[Any]:
    """What admission did for these pods: one reservation each (not timed)."""
    gate = asyncio.Semaphore(64)

    async def one(name: str, subnet: str) -> Any:
        async with gate:
            return await ipam.reserve(subnet, f"tok-{name}", namespace="bench", name=name)

    return list(await asyncio.gather(*(one(n, s) for n, s in names)))


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def populate(ipam: Ipam, stores: dict[str, Store], scale: Scale) -> list[str]:
    for index in range(scale.subnets):
        await ipam.ensure_subnet(subnet_object(index))
    stores["Subnet"].replace([subnet_object(i) for i in range(scale.subnets)], "1")
    stores["Node"].replace([
        {"metadata": {"name": f"node{n}", "uid": f"node-{n}"}, "status": {"addresses": [
            {"type": "InternalIP", "address": f"192.168.50.{n + 10}"}]}}
        for n in range(NODES)], "1")
    names = [(f"pod{i:05d}", subnet_name(i % scale.subnets)) for i in range(scale.pods)]
    allocations = await reserve_pods(ipam, names)
    stores["Pod"].replace([
        pod_object(name, subnet, allocation, i % NODES)
        for i, ((name, subnet), allocation) in enumerate(zip(names, allocations, strict=True))
    ], "1")
    ips = [allocation.ip_strings()[0] for allocation in allocations]
    services, slices = [], []
    for index in range(scale.services):
        service, endpoints = service_objects(index, ips[index * 3 % len(ips):][:3])
        services.append(service)
        slices.append(endpoints)
    stores["Service"].replace(services, "1")
    stores["EndpointSlice"].replace(slices, "1")
    return ips


async def pod_events(worker: TimedWorker, ipam: Ipam, stores: dict[str, Store],
                     scale: Scale) -> list[float]:
    """New pods at a steady rate; latency from the event to the committed port."""
    count = int(scale.event_rate * scale.event_seconds)
    names = [(f"evt{i:05d}", subnet_name(i % scale.subnets)) for i in range(count)]
    allocations = await reserve_pods(ipam, names)
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i, ((name, subnet), allocation) in enumerate(zip(names, allocations, strict=True)):
        await _until(start + i / scale.event_rate)
        obj = pod_object(name, subnet, allocation, i % NODES)
        stores["Pod"].apply("ADDED", obj)
        sent[f"pod:bench/{name}"] = time.perf_counter()
        worker.mark("Pod", obj)
    return await _latencies(worker, sent)


async def slice_events(worker: TimedWorker, stores: dict[str, Store], ips: list[str],
                       scale: Scale) -> list[float]:
    """EndpointSlice changes at a steady rate; latency to the committed load balancer."""
    count = int(scale.event_rate * scale.event_seconds)
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(count):
        await _until(start + i / scale.event_rate)
        index = i % scale.services
        obj = endpoint_slice(index, ips[(index * 3 + i + 1) % len(ips):][:3])
        stores["EndpointSlice"].apply("MODIFIED", obj)
        key = f"svc:bench/svc{index}"
        sent[key] = time.perf_counter()
        worker.committed.pop(key, None)
        worker.mark("EndpointSlice", obj)
    return await _latencies(worker, sent)


async def _until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


async def _latencies(worker: TimedWorker, sent: dict[str, float]) -> list[float]:
    """Each event's latency, once every event is committed (at most 30 s more)."""
    deadline = time.perf_counter() + 30
    for _ in range(3000):
        if all(key in worker.committed for key in sent) or time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.01)
    return sorted(worker.committed.get(key, deadline) - at for key, at in sent.items())


async def settle(central: OvnCentral) -> float:
    """Wait for the steady state the event figures are about: northd has caught up
    with the cold start (``--wait=sb``), and the worker's replica with northd's writes
    back to NB (port status), which arrive for every new port."""
    started = time.perf_counter()
    await asyncio.to_thread(central.nbctl, "--wait=sb", "sync", timeout_s=120.0)
    await asyncio.sleep(1.0)
    return time.perf_counter() - started


def reference_nbctl(central: OvnCentral, sample: int) -> float:
    """Seconds per object writing ports and load balancers with one ovn-nbctl each."""
    central.nbctl("ls-add", "ref-switch")
    started = time.perf_counter()
    for i in range(sample):
        if i % 10 == 9:
            central.nbctl("lb-add", f"ref-lb{i}", f"10.97.{i // 250}.{i % 250}:80",
                          "10.200.0.5:8080,10.200.0.6:8080", "tcp")
        else:
            address = f"0a:00:00:{i // 65536:02x}:{i // 256 % 256:02x}:{i % 256:02x} " \
                      f"10.200.{i // 250}.{i % 250 + 2}"
            central.nbctl("lsp-add", "ref-switch", f"ref-pod{i}", "--", "lsp-set-addresses",
                          f"ref-pod{i}", address, "--", "lsp-set-port-security",
                          f"ref-pod{i}", address)
    return (time.perf_counter() - started) / sample


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(scale: Scale, workdir: Path) -> dict[str, float]:
    with RedisServer(workdir / "redis", appendonly=False) as redis_server, \
            OvnCentral(workdir / "ovn") as central:
        ipam = Ipam.connect(RedisSettings(url=redis_server.url, prefix="bench:"))
        await ipam.ensure_subnet(build_subnet("join", "100.64.0.0/16"))
        stores = {kind: Store() for kind in KINDS}
        print(f"populating {scale.pods} pods, {scale.subnets} subnets, "
              f"{scale.services} services ...", flush=True)
        ips = await populate(ipam, stores, scale)
        api = await asyncio.to_thread(nb_api, central.nb_remote)
        worker = TimedWorker(ipam, Northbound(api), stores,
                             SyncSettings(resync_interval_s=3600, release_grace_s=3600,
                                          settle_heap=True))
        rss_before = peak_rss_mb()
        started = time.perf_counter()
        cold = await worker.step()
        cold_s = time.perf_counter() - started
        print(f"cold start: {cold_s:.2f} s, {cold.ovn.created} rows created, "
              f"{cold.bound} pods bound", flush=True)
        runner = asyncio.create_task(worker.run())
        settle_s = await settle(central)
        print(f"settled in {settle_s:.2f} s (northd caught up with the cold start)", flush=True)
        pod_latencies = await pod_events(worker, ipam, stores, scale)
        lb_latencies = await slice_events(worker, stores, ips, scale)
        runner.cancel()
        db_size = sum(p.stat().st_size for p in (workdir / "ovn").glob("ovnnb_db*.db"))
        rss = peak_rss_mb()
        await asyncio.to_thread(close_api, api)
        await ipam.close()
        print(f"reference: ovn-nbctl, {scale.reference_sample} objects ...", flush=True)
        per_object = reference_nbctl(central, scale.reference_sample)
    objects = scale.pods + scale.services
    reference_s = per_object * objects
    rows = [
        Row("podnet cold start", objects / cold_s, 0, 0,
            f"{scale.pods} pods + {scale.services} services in {cold_s:.2f} s"),
        Row("ovn-nbctl per object", 1 / per_object, 1000 * per_object, 1000 * per_object,
            f"sample of {scale.reference_sample}; {reference_s:.1f} s scaled to {objects}"),
        Row(f"pod event -> port ({scale.event_rate:.0f}/s)", len(pod_latencies) /
            scale.event_seconds, 1000 * percentile(pod_latencies, 0.5),
            1000 * percentile(pod_latencies, 0.99), f"{len(pod_latencies)} events"),
        Row(f"endpoint change -> LB ({scale.event_rate:.0f}/s)", len(lb_latencies) /
            scale.event_seconds, 1000 * percentile(lb_latencies, 0.5),
            1000 * percentile(lb_latencies, 0.99), f"{len(lb_latencies)} events"),
    ]
    print()
    print(render_table(rows))
    return {
        "cold_start_s": cold_s,
        "reference_cold_start_s": reference_s,
        "ratio_vs_nbctl": reference_s / cold_s,
        "pod_p50_ms": 1000 * percentile(pod_latencies, 0.5),
        "pod_p99_ms": 1000 * percentile(pod_latencies, 0.99),
        "lb_p50_ms": 1000 * percentile(lb_latencies, 0.5),
        "lb_p99_ms": 1000 * percentile(lb_latencies, 0.99),
        "peak_rss_mb": rss,
        "rss_before_sync_mb": rss_before,
        "nb_db_mb": db_size / 2**20,
        "pods": scale.pods,
        "services": scale.services,
    }


TARGETS = {"cold_start_s": 15.0, "pod_p99_ms": 50.0, "lb_p99_ms": 50.0, "peak_rss_mb": 300.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--subnets", type=int, default=50)
    parser.add_argument("--services", type=int, default=1_000)
    parser.add_argument("--event-rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--event-seconds", type=float, default=10.0)
    parser.add_argument("--reference-sample", type=int, default=500,
                        help="objects written with ovn-nbctl for the reference")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    scale = Scale(args.pods, args.subnets, args.services, args.event_rate,
                  args.event_seconds, args.reference_sample)
    if args.quick:
        scale = Scale(500, 5, 50, 50.0, 2.0, 50)
    with tempfile.TemporaryDirectory(prefix="podnet-bench-sync-") as workdir:
        figures = asyncio.run(run(scale, Path(workdir)))
    print()
    for key, target in TARGETS.items():
        verdict = "pass" if figures[key] <= target else "FAIL"
        print(f"target {key} <= {target:g}: {figures[key]:.2f} {verdict}")
    print("RESULT name=sync " + " ".join(
        f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}"
        for key, value in figures.items()))


if __name__ == "__main__":
    main()
