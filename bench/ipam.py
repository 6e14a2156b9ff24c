"""How fast podnet's IPAM hands out addresses, next to what bounds it.

podnet reserves a pod's addresses at admission time with an atomic Lua script against
Redis (``ipam/store.py``, ``ipam/lua/reserve.lua``); the reservations a process makes in
one event-loop turn share one script call, each still made as if on its own
(``ipam/batching.py``). The bench calls ``Ipam.reserve`` as the webhook does. This benchmark
puts that figure beside two reference points, all in one run against one redis-server
it starts itself (in a temporary directory, AOF and RDB snapshots off: it measures
allocation, not the disk) and stops by the PID it started:

* the ceiling of this Redis: a one-line bitmap allocation script
  (``BITPOS`` + ``SETBIT``), driven by ``redis-benchmark`` (C client, 50 connections,
  unpipelined) and by the same Python harness as podnet, to separate what the Python
  client costs from what the script costs;
* the reference CNI IPAM plugin ``/usr/lib/cni/host-local``, exec'd once per
  allocation exactly as a main plugin delegates to it (environment ``CNI_COMMAND=ADD``
  etc., netconf on stdin), one exec at a time as a container runtime does.

The podnet scenarios:

* closed loop, one process with N reservations in flight (asyncio tasks), and the
  same split over several processes (``multiprocessing``) reserving in the same
  subnet; every reservation is fresh, in a /12 so that no run exhausts it (the
  dynamic allocator walks a cursor, so the subnet's size does not change the cost).
  After each run the store is read back: distinct addresses must equal live
  reservations and reservations made;
* open loop at a fixed offered load (one request per millisecond): arrivals come from
  a pacing thread through ``call_soon_threadsafe``, the way a request arriving on a
  socket wakes the event loop, and latency is measured from the scheduled send time,
  so a stall delays every request behind it instead of hiding them. Finished requests
  are not kept (only their timings), so the generator's own garbage does not add
  collector pauses to the figure;
* an IPv6 /64 against an IPv4 /24 under the same reserve+release churn (at most
  ``hold`` reservations live, the oldest released after each new one), so the /24
  never exhausts and both families do the same work. One process takes turns on the
  two subnets (half a second each), so that whatever else the machine is doing weighs
  on both alike.

Closed-loop latency is mostly queueing (in flight / throughput); the open-loop figure
is the one to read as "how long does admission wait for an address".

Every worker process, once warmed up, takes the garbage-collector policy of the webhook
that calls the IPAM in production (``podnet_plumbing.heap.settle_heap``: start-up garbage
collected, the start-up heap frozen, rarer young collections), so that the first full
collections of a fresh interpreter, which a long-running server has long behind it, do
not land in the measured run; the collector stays on throughout.

Every scenario has a key prefix of its own. Figures from a shared machine are noisy:
the run prints the load average and how much CPU other processes took meanwhile.
Nothing is asserted about timings: the run reports, and prints each target with
pass/fail. ``python bench/ipam.py --help`` lists the knobs; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import ipaddress
import itertools
import json
import multiprocessing
import os
import platform
import queue
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Literal

import redis
import redis.asyncio as aioredis

if __package__ in (None, ""):
    # Run as ``python bench/ipam.py``: bench/ would come first on sys.path and this
    # file would shadow the ``ipam`` package; put the project root there instead.
    _BENCH_DIR = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _BENCH_DIR]
    sys.path.insert(0, str(_BENCH_DIR.parent))

from bench._common import (
    Mode,
    Row,
    WorkerResult,
    WorkerSpec,
    percentile,
    render_table,
    summarize,
)
from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from podnet.daemons import RedisServer, require_binary
from podnet_plumbing.heap import settle_heap
from webhook.server import YOUNG_GC_THRESHOLD

RAW_LUA = (
    "local p = redis.call('BITPOS', KEYS[1], 0); redis.call('SETBIT', KEYS[1], p, 1); return p"
)
HOST_LOCAL = Path("/usr/lib/cni/host-local")
HOST_LOCAL_SUBNET = "10.200.0.0/16"
BIG_V4 = "10.64.0.0/12"
CHURN_V4 = "10.30.0.0/24"
CHURN_V6 = "fd00:30::/64"
REDIS_BENCHMARK_CLIENTS = 50
PACER_SWITCH_INTERVAL_S = 0.0002
STARTUP_TIMEOUT_S = 60.0

TARGET_RATIO_VS_RAW = 0.30
TARGET_RATIO_VS_HOST_LOCAL = 20.0
TARGET_P99_MS_AT_1000 = 2.0
TARGET_V6_V4_BAND = (0.85, 1.15)


class BenchError(RuntimeError):
    """A scenario could not run or produced a wrong answer."""


@dataclass(frozen=True)
class Plan:
    """How much of each scenario to run."""

    duration_s: float
    open_duration_s: float
    churn_duration_s: float
    churn_slice_s: float
    rate_per_s: float
    concurrency: int
    procs: int
    proc_concurrency: int
    hold: int
    benchmark_requests: int
    host_local_count: int
    unix: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        quick: bool = args.quick
        duration: float = args.duration or (1.0 if quick else 6.0)
        return cls(
            duration_s=duration,
            open_duration_s=args.open_duration or (1.0 if quick else 5.0),
            churn_duration_s=args.churn_duration or (0.5 if quick else 4.0),
            churn_slice_s=0.25 if quick else 0.5,
            rate_per_s=args.rate,
            concurrency=args.concurrency,
            procs=args.procs,
            proc_concurrency=args.proc_concurrency or max(1, args.concurrency // args.procs),
            hold=args.hold,
            benchmark_requests=args.requests or (20_000 if quick else 200_000),
            host_local_count=args.host_local_count or (30 if quick else 300),
            unix=args.unix,
        )


@dataclass
class Check:
    """A correctness check printed with the results."""

    text: str
    ok: bool


# ------------------------------------------------------------------ load generators

Op = Callable[[int], Awaitable[str]]
"""One operation, given a sequence number unique in its process; returns what it got."""


async def closed_loop(
    op: Op, concurrency: int, duration_s: float, sequence: Iterator[int] | None = None
) -> WorkerResult:
    """``concurrency`` tasks, each sending its next request when the last one answers.

    ``sequence`` numbers the operations; pass the same one to successive runs of a
    process so that their numbers (and so their tokens) never repeat.
    """
    clock = time.perf_counter
    result = WorkerResult()
    sequence = sequence if sequence is not None else itertools.count()
    result.started = clock()
    deadline = result.started + duration_s

    async def task() -> None:
        while clock() < deadline:
            seq = next(sequence)
            sent = clock()
            value = await op(seq)
            result.latencies_s.append(clock() - sent)
            result.values.append(value)

    await asyncio.gather(*(task() for _ in range(concurrency)))
    result.ended = clock()
    result.count = len(result.latencies_s)
    return result


async def open_loop(op: Op, rate_per_s: float, duration_s: float, limit: int) -> WorkerResult:
    """Requests at fixed intervals whatever the answers do; latency from the schedule.

    A thread keeps the schedule (``time.sleep`` is precise to tens of microseconds,
    the event loop's timers only to a millisecond) and hands each arrival to the loop
    with ``call_soon_threadsafe``, which wakes it as an incoming request would. At most
    ``limit`` requests are sent at once, as a server bounds its work in progress; the
    others wait their turn, and the wait counts in their latency.
    """
    clock = time.perf_counter
    loop = asyncio.get_running_loop()
    result = WorkerResult()
    total = max(1, round(rate_per_s * duration_s))
    interval = 1.0 / rate_per_s
    pending: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(limit)
    waiting = 0

    async def request(seq: int, scheduled: float) -> None:
        nonlocal waiting
        began = clock()
        result.lags_s.append(began - scheduled)
        waiting += 1
        result.peak_pending = max(result.peak_pending, waiting)
        try:
            async with gate:
                value = await op(seq)
        finally:
            waiting -= 1
        answered = clock()
        result.latencies_s.append(answered - scheduled)
        result.service_s.append(answered - began)
        result.values.append(value)

    def arrive(seq: int, scheduled: float) -> None:
        # Finished requests are dropped, as a server drops them: thousands of done
        # tasks kept to the end would be the generator's garbage, and collecting it
        # (a full GC pass of tens of milliseconds) would stall the requests behind it.
        task = loop.create_task(request(seq, scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)

    def pace(start: float) -> None:
        for seq in range(total):
            scheduled = start + seq * interval
            delay = scheduled - clock()
            if delay > 0:
                time.sleep(delay)
            loop.call_soon_threadsafe(arrive, seq, scheduled)

    # The pacing thread stands in for a socket, which wakes the loop without a GIL to
    # win: with the default 5 ms switch interval, a busy loop would hold the thread
    # (and every arrival) back for up to that long, a delay of the generator's making.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(PACER_SWITCH_INTERVAL_S)
    result.started = clock() + 0.005
    try:
        await asyncio.to_thread(pace, result.started)
    finally:
        sys.setswitchinterval(switch_interval)
    await asyncio.gather(*pending)
    result.ended = clock()
    result.count = len(result.latencies_s)
    return result


# ------------------------------------------------------------------ worker processes


def _settings(spec: WorkerSpec) -> RedisSettings:
    # Every run keeps at most ``concurrency`` requests in flight; the pool has room for
    # all of them, so none waits for a connection.
    return RedisSettings(
        url=spec.url, prefix=spec.prefix, max_connections=spec.concurrency + 8
    )


async def _run_worker(
    spec: WorkerSpec, ready: Callable[[], Awaitable[None]]
) -> list[WorkerResult]:
    """Connect and warm up (connections opened, scripts loaded), report ready and wait
    for the parent's go, so that every process starts loading at once."""
    if spec.mode == "raw":
        client = aioredis.Redis.from_url(spec.url, max_connections=spec.concurrency + 8)
        try:
            await asyncio.gather(*(client.ping() for _ in range(spec.concurrency)))

            async def allocate_bit(seq: int) -> str:
                del seq
                return str(await client.evalsha(spec.raw_sha, 1, spec.raw_key))

            await ready()
            return [await closed_loop(allocate_bit, spec.concurrency, spec.duration_s)]
        finally:
            await client.aclose()

    ipam = Ipam.connect(_settings(spec))
    try:
        await asyncio.gather(*(ipam.ping() for _ in range(spec.concurrency)))
        for subnet in spec.subnets:
            for i in range(20):
                token = f"{spec.tag}-warm-{subnet}-{i}"
                await ipam.reserve(subnet, token)
                await ipam.release(subnet, "token", token)

        def reserver(subnet: str) -> Op:
            async def reserve(seq: int) -> str:
                allocation = await ipam.reserve(subnet, f"{spec.tag}-{seq}")
                return str(allocation.ips[0])

            return reserve

        def churner(subnet: str) -> Op:
            live: deque[str] = deque()

            async def churn(seq: int) -> str:
                token = f"{spec.tag}-{seq}"
                allocation = await ipam.reserve(subnet, token)
                live.append(token)
                if len(live) > spec.hold:
                    await ipam.release(subnet, "token", live.popleft())
                return str(allocation.ips[0])

            return churn

        settle_heap(YOUNG_GC_THRESHOLD)  # the GC policy of the webhook, which calls the IPAM
        await ready()
        if spec.mode == "open":
            return [await open_loop(
                reserver(spec.subnets[0]), spec.rate_per_s, spec.duration_s, spec.concurrency
            )]
        if spec.mode == "reserve":
            return [await closed_loop(reserver(spec.subnets[0]), spec.concurrency, spec.duration_s)]
        ops = {subnet: churner(subnet) for subnet in spec.subnets}
        sequence = itertools.count()
        turns = max(1, round(spec.duration_s / spec.slice_s))
        results: list[WorkerResult] = []
        for _ in range(turns):
            for subnet, op in ops.items():
                turn = await closed_loop(op, spec.concurrency, spec.slice_s, sequence)
                turn.label = subnet
                results.append(turn)
        return results
    finally:
        await ipam.close()


Message = tuple[Literal["ready", "result", "error"], list[WorkerResult] | str]
"""What a worker process sends the parent: ready, its result, or a traceback."""


def _process_main(spec: WorkerSpec, go: EventType, messages: Queue[Message]) -> None:
    async def ready() -> None:
        messages.put(("ready", spec.tag))
        if not await asyncio.to_thread(go.wait, STARTUP_TIMEOUT_S):
            raise BenchError("the parent never said go")

    try:
        messages.put(("result", asyncio.run(_run_worker(spec, ready))))
    except BaseException:
        messages.put(("error", traceback.format_exc()))


class _Workers:
    """The parent's side of a set of worker processes."""

    def __init__(self, specs: Sequence[WorkerSpec]) -> None:
        context = multiprocessing.get_context("spawn")
        self.go = context.Event()
        self.messages: Queue[Message] = context.Queue()
        self.processes = [
            context.Process(target=_process_main, args=(spec, self.go, self.messages))
            for spec in specs
        ]
        self.reported = 0

    def receive(self, kind: str, timeout_s: float) -> list[list[WorkerResult] | str]:
        """One message of ``kind`` from every process; a worker's error (or a worker
        dead without a word) raises."""
        deadline = time.monotonic() + timeout_s
        received: list[list[WorkerResult] | str] = []
        while len(received) < len(self.processes):
            try:
                got, payload = self.messages.get(timeout=0.2)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise BenchError(f"workers did not report {kind} in {timeout_s:g}s") from None
                exited = sum(process.exitcode is not None for process in self.processes)
                if exited > self.reported:
                    try:
                        got, payload = self.messages.get(timeout=2)
                    except queue.Empty:
                        raise BenchError("a worker process died without a report") from None
                else:
                    continue
            if got == "error":
                raise BenchError(f"a worker failed:\n{payload}")
            if got != kind:
                raise BenchError(f"a worker sent {got} where {kind} was expected")
            if kind == "result":
                self.reported += 1
            received.append(payload)
        return received

    def run(self, budget_s: float) -> list[WorkerResult]:
        for process in self.processes:
            process.start()
        try:
            self.receive("ready", STARTUP_TIMEOUT_S)
            self.go.set()
            results = self.receive("result", budget_s + STARTUP_TIMEOUT_S)
        except BaseException:
            for process in self.processes:
                process.terminate()
            raise
        finally:
            for process in self.processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
                    process.join()
        return [result for batch in results if isinstance(batch, list) for result in batch]


def run_processes(specs: Sequence[WorkerSpec]) -> list[WorkerResult]:
    """Run one worker process per spec, started together once all are warmed up."""
    return _Workers(specs).run(max(spec.duration_s for spec in specs))


# ------------------------------------------------------------------ scenarios


def fresh_prefix(label: str) -> str:
    return f"bench:{label}:{uuid.uuid4().hex[:8]}:"


async def _create_subnets(url: str, prefix: str, subnets: dict[str, str]) -> None:
    ipam = Ipam.connect(RedisSettings(url=url, prefix=prefix))
    try:
        for name, cidr in subnets.items():
            await ipam.ensure_subnet(build_subnet(name, cidr))
    finally:
        await ipam.close()


async def _stored_addresses(url: str, prefix: str, subnet: str) -> tuple[int, int]:
    """(live reservations, distinct addresses among them), read back through the API."""
    ipam = Ipam.connect(RedisSettings(url=url, prefix=prefix))
    try:
        allocations = [a async for a in ipam.all_allocations(subnet)]
    finally:
        await ipam.close()
    return len(allocations), len({ip for a in allocations for ip in a.ips})


class Bench:
    """The scenarios, against one redis-server."""

    def __init__(self, server: RedisServer, plan: Plan, workdir: Path) -> None:
        self.server = server
        self.plan = plan
        self.workdir = workdir
        self.url = server.unix_url if plan.unix else server.url
        self.sync = redis.Redis.from_url(self.url)
        self.checks: list[Check] = []

    def podnet(
        self, name: str, label: str, mode: Mode, cidr: str, *, procs: int, concurrency: int,
        duration_s: float,
    ) -> tuple[Row, list[WorkerResult]]:
        """Reserve in a fresh /cidr subnet from ``procs`` processes, then read the store
        back: distinct addresses must equal live reservations and reservations made."""
        prefix = fresh_prefix(label)
        subnet = f"bench-{label}"
        asyncio.run(_create_subnets(self.url, prefix, {subnet: cidr}))
        specs = [
            WorkerSpec(
                url=self.url, prefix=prefix, subnets=(subnet,), mode=mode,
                tag=f"{label}-p{i}", concurrency=concurrency, duration_s=duration_s,
                rate_per_s=self.plan.rate_per_s, hold=self.plan.hold,
            )
            for i in range(procs)
        ]
        results = run_processes(specs)
        made = sum(r.count for r in results)
        answers = len({v for r in results for v in r.values})
        live, distinct = asyncio.run(_stored_addresses(self.url, prefix, subnet))
        self.checks.append(Check(
            f"{name}: no duplicate addresses: {distinct} distinct IPs in the store == "
            f"{live} live reservations == {made} made ({answers} distinct answers to the "
            "clients)", answers == made == live == distinct,
        ))
        self.sync.flushdb()
        return summarize(name, results), results

    def churn(self) -> tuple[Row, Row]:
        """IPv4 /24 against IPv6 /64 under the same reserve+release churn, taking turns
        in one process."""
        plan = self.plan
        prefix = fresh_prefix("churn")
        subnets = {"bench-churn-v4": CHURN_V4, "bench-churn-v6": CHURN_V6}
        asyncio.run(_create_subnets(self.url, prefix, subnets))
        spec = WorkerSpec(
            url=self.url, prefix=prefix, subnets=tuple(subnets), mode="churn", tag="churn",
            concurrency=plan.concurrency, duration_s=plan.churn_duration_s,
            slice_s=plan.churn_slice_s, hold=plan.hold,
        )
        results = run_processes([spec])
        turns = sum(r.label == "bench-churn-v4" for r in results)
        notes = (
            f"reserve+release churn, <= {plan.hold} live, {plan.concurrency} in flight, "
            f"{turns} turns of {plan.churn_slice_s:g}s; latency of reserve+release"
        )
        rows: list[Row] = []
        for subnet, cidr in subnets.items():
            mine = [r for r in results if r.label == subnet]
            live, distinct = asyncio.run(_stored_addresses(self.url, prefix, subnet))
            self.checks.append(Check(
                f"churn {cidr}: {distinct} distinct IPs == {live} live reservations "
                f"<= {plan.hold} + {plan.concurrency} in flight",
                distinct == live <= plan.hold + plan.concurrency,
            ))
            family = "IPv4" if ":" not in cidr else "IPv6"
            rows.append(summarize(
                f"podnet churn, {family} {cidr}", mine, notes, concurrent=False
            ))
        self.sync.flushdb()
        return rows[0], rows[1]

    def raw_redis_benchmark(self, sha: str) -> Row:
        key = f"{fresh_prefix('raw-c')}bm"
        requests = self.plan.benchmark_requests
        target = (
            ["-s", str(self.server.socket_path)] if self.plan.unix
            else ["-h", "127.0.0.1", "-p", str(self.server.port)]
        )
        command = [
            require_binary("redis-benchmark"), *target, "-n", str(requests),
            "-c", str(REDIS_BENCHMARK_CLIENTS), "--csv", "EVALSHA", sha, "1", key,
        ]
        self.sync.delete(key)
        answer = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
        if answer.returncode != 0:
            raise BenchError(f"redis-benchmark failed: {answer.stderr.strip()}")
        rows = list(csv.DictReader(io.StringIO(answer.stdout)))
        if not rows or "rps" not in rows[-1]:
            raise BenchError(f"unexpected redis-benchmark output: {answer.stdout!r}")
        stats = rows[-1]
        bits = int(self.sync.bitcount(key))
        self.checks.append(Check(
            f"raw Lua (redis-benchmark): {bits} bits set == {requests} requests", bits == requests,
        ))
        self.sync.delete(key)
        return Row(
            "raw Lua bitmap, redis-benchmark", float(stats["rps"]),
            float(stats["p50_latency_ms"]), float(stats["p99_latency_ms"]),
            f"C client, {REDIS_BENCHMARK_CLIENTS} conns, unpipelined, n={requests}: the ceiling",
        )

    def raw_python(self, sha: str) -> Row:
        prefix = fresh_prefix("raw-py")
        key = f"{prefix}bm"
        self.sync.delete(key)
        plan = self.plan
        specs = [
            WorkerSpec(
                url=self.url, prefix=prefix, subnets=(), mode="raw", tag=f"raw-p{i}",
                concurrency=plan.proc_concurrency, duration_s=plan.duration_s,
                raw_sha=sha, raw_key=key,
            )
            for i in range(plan.procs)
        ]
        results = run_processes(specs)
        made = sum(r.count for r in results)
        bits = int(self.sync.bitcount(key))
        distinct = len({v for r in results for v in r.values})
        self.checks.append(Check(
            f"raw Lua (Python): {bits} bits set == {distinct} distinct positions == {made} calls",
            bits == distinct == made,
        ))
        self.sync.delete(key)
        return summarize(
            f"raw Lua bitmap, Python {plan.procs} procs", results,
            f"same harness as podnet, {plan.procs}x{plan.proc_concurrency} in flight",
        )

    def host_local(self) -> Row:
        data_dir = self.workdir / "host-local"
        netconf = json.dumps({
            "cniVersion": "1.0.0", "name": "benchnet", "type": "bridge",
            "ipam": {
                "type": "host-local", "ranges": [[{"subnet": HOST_LOCAL_SUBNET}]],
                "dataDir": str(data_dir),
            },
        }).encode()
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CNI_COMMAND": "ADD",
            "CNI_NETNS": "/proc/self/ns/net",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(HOST_LOCAL.parent),
        }
        network = ipaddress.ip_network(HOST_LOCAL_SUBNET)

        def add(container_id: str) -> str:
            answer = subprocess.run(
                [str(HOST_LOCAL)], input=netconf, capture_output=True, check=False,
                env={**environment, "CNI_CONTAINERID": container_id},
            )
            if answer.returncode != 0:
                raise BenchError(
                    f"host-local ADD exited {answer.returncode}: "
                    f"{answer.stdout.decode()} {answer.stderr.decode()}".strip()
                )
            address = str(json.loads(answer.stdout)["ips"][0]["address"]).split("/")[0]
            if ipaddress.ip_address(address) not in network:
                raise BenchError(f"host-local answered {address}, outside {network}")
            return address

        clock = time.perf_counter
        for i in range(3):
            add(f"bench-warm-{i}")
        result = WorkerResult(started=clock())
        for i in range(self.plan.host_local_count):
            sent = clock()
            result.values.append(add(f"bench-{i:06d}"))
            result.latencies_s.append(clock() - sent)
        result.ended = clock()
        result.count = len(result.values)
        distinct = len(set(result.values))
        self.checks.append(Check(
            f"host-local: exit 0 and an address of {network} every time, "
            f"{distinct} distinct == {result.count} allocations", distinct == result.count,
        ))
        # Each ADD reads every reservation file already held (to refuse a duplicate
        # container ID), so its cost grows with the addresses held on the node.
        tenth = max(1, result.count // 10)
        first = 1000 * percentile(sorted(result.latencies_s[:tenth]), 0.5)
        last = 1000 * percentile(sorted(result.latencies_s[-tenth:]), 0.5)
        return summarize(
            "host-local CNI IPAM, exec", [result],
            f"{result.count} sequential ADD execs; p50 {first:.1f} ms over the first "
            f"{tenth}, {last:.1f} ms over the last {tenth}",
        )


# ------------------------------------------------------------------ report


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _redis_version(client: redis.Redis) -> str:
    info = client.info("server")
    return str(info.get("redis_version", "?"))


def _cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, CPU seconds of this process and
    its reaped children: workers, redis-benchmark, host-local, the redis-server)."""
    own = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF),
                      resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, own
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), own


def run(plan: Plan) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="podnet-bench-"))
    server = RedisServer(workdir / "redis", appendonly=False).start()
    bench = Bench(server, plan, workdir)
    load_start = os.getloadavg()
    busy_start, own_start = _cpu_seconds()
    clock = time.perf_counter
    began = clock()
    try:
        print(f"podnet IPAM benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
        print(
            f"machine: {os.cpu_count()} CPUs, {platform.platform()}, "
            f"Python {platform.python_version()}"
        )
        print(
            f"redis-server {_redis_version(bench.sync)} (pid {server.pid}), "
            f"{'unix socket' if plan.unix else 'TCP loopback'}, AOF off, RDB snapshots off"
        )
        print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
        print()

        def step(text: str) -> None:
            print(f"[{clock() - began:5.1f}s] {text}", flush=True)

        rows: list[Row] = []
        step(f"podnet, 1 process, {plan.concurrency} in flight, {plan.duration_s:g}s")
        one, _ = bench.podnet(
            "podnet reserve, 1 proc", "one", "reserve", BIG_V4, procs=1,
            concurrency=plan.concurrency, duration_s=plan.duration_s,
        )
        rows.append(replace_notes(one, f"closed loop, {plan.concurrency} in flight, /12"))

        step(f"podnet, {plan.procs} processes x {plan.proc_concurrency} in flight")
        multi, _ = bench.podnet(
            f"podnet reserve, {plan.procs} procs", "multi", "reserve", BIG_V4,
            procs=plan.procs, concurrency=plan.proc_concurrency, duration_s=plan.duration_s,
        )
        rows.append(replace_notes(
            multi, f"closed loop, {plan.procs}x{plan.proc_concurrency} in flight, one /12",
        ))

        sha = str(bench.sync.script_load(RAW_LUA))
        step(f"raw Lua bitmap, redis-benchmark, n={plan.benchmark_requests}")
        raw_c = bench.raw_redis_benchmark(sha)
        rows.append(raw_c)
        step(f"raw Lua bitmap, Python harness, {plan.procs} processes")
        raw_py = bench.raw_python(sha)
        rows.append(raw_py)

        step(f"host-local, {plan.host_local_count} sequential execs")
        host = bench.host_local()
        rows.append(host)

        step(f"podnet, open loop at {plan.rate_per_s:g}/s for {plan.open_duration_s:g}s")
        paced, paced_results = bench.podnet(
            f"podnet reserve, {plan.rate_per_s:g}/s offered", "open", "open", BIG_V4,
            procs=1, concurrency=plan.concurrency, duration_s=plan.open_duration_s,
        )
        lags = sorted(x for r in paced_results for x in r.lags_s)
        service = sorted(x for r in paced_results for x in r.service_s)
        service_p99_ms = 1000 * percentile(service, 0.99)
        peak = max(r.peak_pending for r in paced_results)
        rows.append(replace_notes(
            paced, f"open loop, 1 proc, latency from scheduled send; send lag p99 "
            f"{1000 * percentile(lags, 0.99):.3f} ms, from send p99 {service_p99_ms:.3f} "
            f"ms; peak {peak} pending (<= {plan.concurrency} in flight)",
        ))

        step(
            f"podnet churn, {CHURN_V4} and {CHURN_V6} taking turns, "
            f"{plan.churn_duration_s:g}s each"
        )
        v4, v6 = bench.churn()
        rows += [v4, v6]
        step("done")
    finally:
        bench.sync.close()
        pid = server.pid
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"redis-server pid {pid} stopped, {workdir} removed")
    wall = clock() - began
    busy_end, own_end = _cpu_seconds()
    others = max(0.0, (busy_end - busy_start) - (own_end - own_start))
    capacity = wall * (os.cpu_count() or 1)

    best = max(one, multi, key=lambda row: row.ops_per_s)
    ratio_raw = best.ops_per_s / raw_c.ops_per_s
    ratio_raw_py = best.ops_per_s / raw_py.ops_per_s
    ratio_host = best.ops_per_s / host.ops_per_s
    ratio_v6 = v6.ops_per_s / v4.ops_per_s
    load_end = os.getloadavg()

    rows = [
        replace_notes(row, f"{row.notes}; best podnet = {best.ops_per_s / row.ops_per_s:.3f} x")
        if row in (raw_c, raw_py) else row
        for row in rows
    ]
    print()
    print(render_table(rows))
    print()
    print(
        f"best podnet: {best.name} ({best.ops_per_s:,.0f}/s); vs raw Lua: "
        f"{ratio_raw:.3f} of redis-benchmark, {ratio_raw_py:.3f} of the Python harness"
    )
    print(
        f"load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}; "
        f"other processes used {others:.1f} CPU-s of the {capacity:.1f} the run had "
        f"({100 * others / capacity:.0f}%): the more, the noisier the figures"
    )
    print()
    print("checks:")
    for check in bench.checks:
        print(f"  [{'ok' if check.ok else 'FAILED'}] {check.text}")
    print()
    low, high = TARGET_V6_V4_BAND
    print("targets:")
    print(
        f"  ratio_vs_raw          {ratio_raw:8.3f}  >= {TARGET_RATIO_VS_RAW}  "
        f"{_verdict(ratio_raw >= TARGET_RATIO_VS_RAW)}"
    )
    print(
        f"  ratio_vs_host_local   {ratio_host:8.1f}  >= {TARGET_RATIO_VS_HOST_LOCAL:g}  "
        f"{_verdict(ratio_host >= TARGET_RATIO_VS_HOST_LOCAL)}"
    )
    print(
        f"  p99_ms_at_1000        {paced.p99_ms:8.3f}  <= {TARGET_P99_MS_AT_1000:g}  "
        f"{_verdict(paced.p99_ms <= TARGET_P99_MS_AT_1000)}"
    )
    print(
        f"  ratio_v6_64_vs_v4_24  {ratio_v6:8.3f}  ~= 1 ({low}-{high})  "
        f"{_verdict(low <= ratio_v6 <= high)}"
    )
    print()
    print(
        f"RESULT name=ipam podnet_1proc_rps={one.ops_per_s:.0f} "
        f"podnet_4proc_rps={multi.ops_per_s:.0f} raw_lua_rps={raw_c.ops_per_s:.0f} "
        f"raw_lua_python_rps={raw_py.ops_per_s:.0f} host_local_rps={host.ops_per_s:.1f} "
        f"ratio_vs_raw={ratio_raw:.3f} ratio_vs_host_local={ratio_host:.1f} "
        f"p99_ms_at_1000={paced.p99_ms:.3f} service_p99_ms_at_1000={service_p99_ms:.3f} "
        f"ratio_v6_64_vs_v4_24={ratio_v6:.3f} "
        f"p50_ms={best.p50_ms:.3f} p99_ms={best.p99_ms:.3f}"
    )
    return 0 if all(check.ok for check in bench.checks) else 1


def replace_notes(row: Row, notes: str) -> Row:
    return Row(row.name, row.ops_per_s, row.p50_ms, row.p99_ms, notes)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/ipam.py",
        description="Benchmark podnet's Redis IPAM against the raw Redis ceiling and the "
        "host-local CNI plugin. Starts (and stops) its own redis-server.",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--duration", type=float, help="seconds per closed-loop run "
                        "(default 6, quick 1)")
    parser.add_argument("--open-duration", type=float, help="seconds of open-loop load "
                        "(default 5, quick 1)")
    parser.add_argument("--churn-duration", type=float, help="seconds of churn per subnet, "
                        "in turns of 0.5s (default 4; quick 0.5, turns of 0.25s)")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="offered load of the open-loop run, per second (default 1000)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="requests in flight in single-process runs (default 64)")
    parser.add_argument("--procs", type=int, default=4,
                        help="processes of the multi-process runs (default 4)")
    parser.add_argument("--proc-concurrency", type=int,
                        help="requests in flight per process there (default: "
                        "concurrency / procs, so the total in flight matches)")
    parser.add_argument("--hold", type=int, default=100,
                        help="most live reservations during churn (default 100)")
    parser.add_argument("--requests", type=int,
                        help="redis-benchmark requests (default 200000, quick 20000)")
    parser.add_argument("--host-local-count", type=int,
                        help="host-local execs (default 300, quick 30)")
    parser.add_argument("--unix", action="store_true",
                        help="talk to Redis over its unix socket instead of TCP loopback")
    args = parser.parse_args(argv)
    if args.procs < 1 or args.concurrency < 1 or args.hold < 1 or args.rate <= 0:
        parser.error("--procs, --concurrency, --hold and --rate must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not HOST_LOCAL.exists():
        print(f"{HOST_LOCAL} is not installed", file=sys.stderr)
        return 2
    return run(Plan.from_args(args))


if __name__ == "__main__":
    sys.exit(main())
