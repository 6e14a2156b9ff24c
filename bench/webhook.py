"""How fast podnet's admission webhook answers, next to a webhook that does nothing.

kube-apiserver waits for the webhook on every pod creation, so its latency is added to
every ``kubectl apply`` and its throughput bounds how fast a cluster can create pods.
This benchmark runs the real thing, over HTTPS, against a redis-server it starts:

* the webhook is ``python -m webhook`` in its own process, with a manifests folder
  holding one big default subnet (a /10), so no run exhausts it;
* the reference is a no-op webhook in its own process: the same aiohttp server and
  TLS certificate, it parses each AdmissionReview and answers "allowed" for its uid,
  and nothing else. ``ratio_vs_noop`` (noop max / webhook max) is what podnet's work
  per admission costs relative to merely being a webhook;
* every request is a fresh AdmissionReview of a Deployment's pod (``generateName``,
  owned by a ReplicaSet, a unique request uid), so every admission reserves an address
  and writes its answer to the review memo, as in a cluster.

Load comes from aiohttp clients over a fixed pool of keep-alive connections (several
processes, so the client is less of a bottleneck; connections opened before timing
starts, so no TLS handshake is timed):

* open loop at offered loads (default 200, 500 and 1000 per second): requests leave at
  their scheduled times whatever the server does, and latency is measured from the
  scheduled time, so a stall delays everything behind it instead of hiding it;
* closed loop (a fixed number of requests in flight) for the maximum throughput.

Both servers and the clients run on the same event loop (uvloop when installed, as the
webhook does). The closed loops of the two servers alternate (``--repeats``, median
reported), so that whatever else the machine is doing weighs on both alike.

The run prints a table with the CPU time the server process and the load generator
spent per admission, the targets with pass/fail, and a ``RESULT`` line. Nothing is
asserted: figures from a shared two-core machine are noisy, and the load generator
shares the CPU with the servers (it does for the no-op reference too, whose maximum is
bounded by the clients rather than by the server). ``--help`` lists the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import queue
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):
    # Run as ``python bench/webhook.py``: bench/ would come first on sys.path and this
    # file would shadow the ``webhook`` package; put the project root there instead.
    _BENCH_DIR = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _BENCH_DIR]
    sys.path.insert(0, str(_BENCH_DIR.parent))

import aiohttp
from aiohttp import web

from bench._common import percentile
from podnet.daemons import RedisServer, free_port
from webhook.cli import event_loop_factory

ROOT = Path(__file__).resolve().parent.parent
SUBNET = """\
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: bench
spec:
  cidrBlock: 10.64.0.0/10
  default: true
"""
UID_PLACEHOLDER = "U" * 36
STARTUP_TIMEOUT_S = 30.0
TARGET_MAX_RPS = 1000.0
TARGET_P99_MS_AT_500 = 20.0
TARGET_RATIO = 3.0
Mode = Literal["open", "closed"]


class BenchError(RuntimeError):
    """The benchmark itself could not run (a server did not start, a worker died)."""


# ----------------------------------------------------------------- requests


def review_template(tag: str) -> bytes:
    """An AdmissionReview of a ReplicaSet's pod, as kube-apiserver sends it, with the
    request uid left as a placeholder of fixed length."""
    template_hash = "7d4b9c8f5d"
    pod = {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "generateName": f"bench-{tag}-{template_hash}-", "namespace": "default",
            "creationTimestamp": None,
            "labels": {"app": f"bench-{tag}", "pod-template-hash": template_hash},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": f"bench-{tag}-{template_hash}",
                "uid": "2f0b7c3e-1a2b-4c5d-8e9f-000000000001",
                "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "containers": [{
                "name": "app", "image": "nginx:1.27", "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
            }],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
            "securityContext": {}, "schedulerName": "default-scheduler",
            "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {},
    }
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    review = {
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": UID_PLACEHOLDER, "kind": gvk, "resource": gvr, "requestKind": gvk,
            "requestResource": gvr, "namespace": "default", "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": pod, "oldObject": None, "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }
    return json.dumps(review, separators=(",", ":")).encode()


def request_uid(tag: str, number: int) -> str:
    """A uid unique across processes and runs, exactly as long as the placeholder."""
    text = f"{tag}-{number}"
    return text.rjust(len(UID_PLACEHOLDER), "0")[-len(UID_PLACEHOLDER):]


# -------------------------------------------------------------- load workers


@dataclass(frozen=True)
class LoadSpec:
    """What one load process does; plain data, so it pickles."""

    url: str
    cafile: str
    tag: str
    mode: Mode
    duration_s: float
    rate_per_s: float = 0.0
    """Open loop: this process's share of the offered load."""
    concurrency: int = 32
    """Requests in flight (closed loop) and keep-alive connections (both loops)."""


@dataclass
class LoadResult:
    """What one load process measured (``time.perf_counter``, CLOCK_MONOTONIC on Linux,
    so starts and ends compare across processes)."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    first_failure: str = ""
    cpu_s: float = 0.0
    """CPU seconds this load process spent while sending."""


def _accepted(status: int, body: bytes) -> bool:
    """An allowed answer that carries a patch (the webhook) or the no-op's mark."""
    allowed = b'"allowed": true' in body or b'"allowed":true' in body
    return status == 200 and allowed and (b'"patch"' in body or b'"noop"' in body)


class _Client:
    def __init__(self, spec: LoadSpec, session: aiohttp.ClientSession) -> None:
        self.spec = spec
        self.session = session
        self.template = review_template(spec.tag)
        self.result = LoadResult()
        self.counter = 0
        self.url = spec.url + "/mutate-pods"
        self.headers = {"Content-Type": "application/json"}

    async def send(self, since: float) -> None:
        """One admission; latency counted from ``since`` (scheduled or actual start)."""
        self.counter += 1
        uid = request_uid(self.spec.tag, self.counter)
        body = self.template.replace(UID_PLACEHOLDER.encode(), uid.encode(), 1)
        self.result.sent += 1
        try:
            async with self.session.post(self.url, data=body, headers=self.headers) as answer:
                payload = await answer.read()
                good = _accepted(answer.status, payload)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            good, payload = False, repr(exc).encode()
        if good:
            self.result.ok += 1
            self.result.latencies_s.append(time.perf_counter() - since)
        else:
            self.result.failed += 1
            self.result.first_failure = self.result.first_failure or payload[:300].decode(
                errors="replace"
            )

    async def warm(self, connections: int) -> None:
        """Open ``connections`` keep-alive connections (TLS handshakes) before timing."""

        async def probe() -> None:
            async with self.session.get(self.spec.url + "/healthz") as answer:
                await answer.read()

        await asyncio.gather(*(probe() for _ in range(connections)))

    async def open_loop(self) -> None:
        interval = 1.0 / self.spec.rate_per_s
        total = max(1, int(self.spec.rate_per_s * self.spec.duration_s))
        start = time.perf_counter() + 0.05
        tasks: list[asyncio.Task[None]] = []
        for number in range(total):
            scheduled = start + number * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.send(scheduled)))
        self.result.started = start
        await asyncio.gather(*tasks)
        self.result.ended = time.perf_counter()

    async def closed_loop(self) -> None:
        deadline = time.perf_counter() + self.spec.duration_s

        async def loop() -> None:
            while time.perf_counter() < deadline:
                await self.send(time.perf_counter())

        self.result.started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(self.spec.concurrency)))
        self.result.ended = time.perf_counter()


async def _run_load(spec: LoadSpec, go: EventType, messages: Queue[Any]) -> LoadResult:
    trust = ssl.create_default_context(cafile=spec.cafile)
    # A fixed pool of keep-alive connections, all opened before timing: under overload
    # requests queue for a connection (their latency still counts from the scheduled
    # time) instead of each opening a new TLS connection, which would measure handshakes.
    connector = aiohttp.TCPConnector(ssl=trust, limit=spec.concurrency, keepalive_timeout=120)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = _Client(spec, session)
        await client.warm(spec.concurrency)
        messages.put(("ready", spec.tag))
        if not await asyncio.to_thread(go.wait, STARTUP_TIMEOUT_S):
            raise BenchError("the parent never said go")
        before = _own_cpu_s()
        if spec.mode == "open":
            await client.open_loop()
        else:
            await client.closed_loop()
        client.result.cpu_s = _own_cpu_s() - before
        return client.result


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load_process(spec: LoadSpec, go: EventType, messages: Queue[Any]) -> None:
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            messages.put(("result", runner.run(_run_load(spec, go, messages))))
    except BaseException:
        messages.put(("error", traceback.format_exc()))


def run_load(specs: Sequence[LoadSpec]) -> list[LoadResult]:
    """One process per spec, all connected before any starts sending."""
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    messages: Queue[Any] = context.Queue()
    processes = [context.Process(target=_load_process, args=(s, go, messages)) for s in specs]
    for process in processes:
        process.start()
    try:
        _receive(messages, "ready", len(processes), STARTUP_TIMEOUT_S)
        go.set()
        budget = max(s.duration_s for s in specs) + STARTUP_TIMEOUT_S
        return [r for r in _receive(messages, "result", len(processes), budget)
                if isinstance(r, LoadResult)]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


def _receive(messages: Queue[Any], kind: str, count: int, timeout_s: float) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    received: list[Any] = []
    while len(received) < count:
        try:
            got, payload = messages.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise BenchError(f"load processes did not report {kind} in {timeout_s:g}s") from None
        if got == "error":
            raise BenchError(f"a load process failed:\n{payload}")
        if got == kind:
            received.append(payload)
    return received


# ----------------------------------------------------------------- servers


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed EC certificate for 127.0.0.1 (openssl CLI)."""
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=podnet-bench", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def noop_app() -> web.Application:
    """The reference webhook: parse the review, allow it, touch nothing."""

    async def allow(request: web.Request) -> web.Response:
        uid = json.loads(await request.read())["request"]["uid"]
        return web.json_response({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True, "warnings": ["noop"]},
        })

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/mutate-pods", allow)
    app.router.add_get("/healthz", health)
    app.router.add_get("/readyz", health)
    return app


def serve_noop(port: int, cert: Path, key: Path) -> None:
    """The reference on the same stack as the webhook: aiohttp, TLS 1.2+, its event loop."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    factory = event_loop_factory()
    web.run_app(noop_app(), host="127.0.0.1", port=port, ssl_context=context,
                access_log=None, print=None, backlog=1024,
                loop=factory() if factory else None)


@dataclass
class Server:
    """A server process this run started, stopped by its PID."""

    name: str
    url: str
    process: subprocess.Popen[bytes]

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_ready(server: Server, cafile: Path, log: Path) -> None:
    trust = ssl.create_default_context(cafile=str(cafile))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name} exited: {log.read_text()[-2000:]}")
        try:
            import urllib.request

            with urllib.request.urlopen(server.url + "/readyz", context=trust, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{server.name} did not become ready: {log.read_text()[-2000:]}")


def start_server(name: str, argv: list[str], folder: Path, port: int, cafile: Path) -> Server:
    log = folder / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    server = Server(name, f"https://127.0.0.1:{port}", process)
    try:
        wait_ready(server, cafile, log)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def servers(folder: Path) -> Iterator[tuple[Server, Server, RedisServer]]:
    """Redis, the webhook and the no-op reference, stopped (by PID) on the way out."""
    cert, key = make_certificate(folder)
    manifests = folder / "manifests"
    manifests.mkdir()
    (manifests / "subnet.yaml").write_text(SUBNET)
    with RedisServer(folder / "redis") as redis_server:
        webhook_port, noop_port = free_port(), free_port()
        webhook = start_server("webhook", [
            sys.executable, "-m", "webhook", "--listen", f"127.0.0.1:{webhook_port}",
            "--tls-cert", str(cert), "--tls-key", str(key), "--redis", redis_server.url,
            "--manifests", str(manifests), "--log-level", "WARNING", "--no-require-rebuilt",
        ], folder, webhook_port, cert)
        try:
            noop = start_server("noop", [
                sys.executable, str(Path(__file__).resolve()), "--serve-noop", str(noop_port),
                str(cert), str(key),
            ], folder, noop_port, cert)
            try:
                yield webhook, noop, redis_server
            finally:
                noop.stop()
        finally:
            webhook.stop()


# ------------------------------------------------------------------ figures


@dataclass(frozen=True)
class Row:
    name: str
    offered: str
    rps: float
    p50_ms: float
    p99_ms: float
    failed: int
    cpu_ms: float
    """Server CPU milliseconds per admission (the server process alone)."""
    client_cpu_ms: float = 0.0
    """Load generator CPU milliseconds per admission (all its processes)."""
    first_failure: str = ""


def summarize(
    name: str, offered: str, results: Sequence[LoadResult], cpu_s: float
) -> Row:
    latencies = sorted(x for r in results for x in r.latencies_s)
    ok = sum(r.ok for r in results)
    span = max(r.ended for r in results) - min(r.started for r in results)
    failures = [r.first_failure for r in results if r.first_failure]
    return Row(
        name=name, offered=offered, rps=ok / span if span > 0 else 0.0,
        p50_ms=1000 * percentile(latencies, 0.50), p99_ms=1000 * percentile(latencies, 0.99),
        failed=sum(r.failed for r in results), cpu_ms=1000 * cpu_s / ok if ok else 0.0,
        client_cpu_ms=1000 * sum(r.cpu_s for r in results) / ok if ok else 0.0,
        first_failure=failures[0] if failures else "",
    )


def render(rows: Sequence[Row]) -> str:
    header = (f"{'scenario':<22} {'offered/s':>9} {'done/s':>8} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'failed':>6} {'server cpu':>10} {'client cpu':>10}")
    lines = [header, f"{'':<67} {'ms/adm':>10} {'ms/adm':>10}", "-" * len(header)]
    lines += [
        f"{r.name:<22} {r.offered:>9} {r.rps:>8.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
        f"{r.failed:>6} {r.cpu_ms:>10.3f} {r.client_cpu_ms:>10.3f}"
        for r in rows
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Plan:
    rates: tuple[float, ...]
    open_duration_s: float
    closed_duration_s: float
    processes: int
    concurrency: int
    warmup_s: float
    repeats: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        quick = bool(args.quick)
        return cls(
            rates=tuple(args.rates),
            open_duration_s=args.duration or (1.5 if quick else 6.0),
            closed_duration_s=args.duration or (1.5 if quick else 6.0),
            processes=args.processes,
            concurrency=args.concurrency,
            warmup_s=0.5 if quick else 2.0,
            repeats=args.repeats or (1 if quick else 3),
        )


def measure(
    server: Server, cafile: Path, plan: Plan, mode: Mode, rate: float, duration_s: float,
    tag: str,
) -> tuple[list[LoadResult], float]:
    """Run one scenario; returns the results and the server's CPU seconds meanwhile."""
    specs = [
        LoadSpec(server.url, str(cafile), f"{tag}{p}", mode, duration_s,
                 rate_per_s=rate / plan.processes,
                 concurrency=max(1, plan.concurrency // plan.processes))
        for p in range(plan.processes)
    ]
    before = server.cpu_s()
    results = run_load(specs)
    return results, server.cpu_s() - before


def median_row(rows: Sequence[Row]) -> Row:
    """The run of median throughput (an odd count gives a run that happened)."""
    return sorted(rows, key=lambda r: r.rps)[len(rows) // 2]


def closed_loops(
    webhook: Server, noop: Server, cafile: Path, plan: Plan
) -> tuple[Row, Row]:
    """Maximum throughput of both servers, in alternating runs, so that whatever else
    the machine does weighs on both alike; the median run of each."""
    offered = f"c={plan.concurrency}"
    noops: list[Row] = []
    webhooks: list[Row] = []
    for turn in range(plan.repeats):
        for server, kept in ((noop, noops), (webhook, webhooks)):
            results, cpu = measure(server, cafile, plan, "closed", 0, plan.closed_duration_s,
                                   f"{server.name[0]}{turn}")
            kept.append(summarize(f"{server.name}, closed loop", offered, results, cpu))
    return median_row(noops), median_row(webhooks)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(plan: Plan) -> int:
    rows: list[Row] = []
    print(f"load average before: {load_average()} (cores: {os.cpu_count()})")
    with tempfile.TemporaryDirectory(prefix="podnet-bench-webhook-") as tmp:
        folder = Path(tmp)
        with servers(folder) as (webhook, noop, _):
            cafile = folder / "tls.crt"
            for server in (noop, webhook):
                measure(server, cafile, plan, "closed", 0, plan.warmup_s, f"w{server.name[0]}")
            noop_row, max_row = closed_loops(webhook, noop, cafile, plan)
            rows += [noop_row, max_row]
            paced: dict[float, Row] = {}
            for index, rate in enumerate(plan.rates):
                results, cpu = measure(webhook, cafile, plan, "open", rate,
                                       plan.open_duration_s, f"o{index}")
                paced[rate] = summarize("webhook, open loop", f"{rate:g}", results, cpu)
                rows.append(paced[rate])
    print(f"load average after: {load_average()}")
    print(render(rows))
    failures = [r for r in rows if r.failed]
    for row in failures:
        print(f"  {row.name} @ {row.offered}: {row.failed} failed, e.g. {row.first_failure}")
    return report(noop_row, max_row, paced) if not failures else 1


def report(noop: Row, best: Row, paced: dict[float, Row]) -> int:
    ratio = noop.rps / best.rps if best.rps else math.inf

    def at(rate: float) -> Row | None:
        return paced.get(rate)

    def p99(rate: float) -> str:
        row = at(rate)
        return f"{row.p99_ms:.2f}" if row else "nan"

    checks = [
        (f"max_rps {best.rps:.0f} >= {TARGET_MAX_RPS:g}", best.rps >= TARGET_MAX_RPS),
        (f"p99_ms_at_500 {p99(500)} <= {TARGET_P99_MS_AT_500:g}",
         (row := at(500)) is not None and row.p99_ms <= TARGET_P99_MS_AT_500),
        (f"ratio_vs_noop {ratio:.2f} <= {TARGET_RATIO:g}", ratio <= TARGET_RATIO),
    ]
    print()
    for text, ok in checks:
        print(f"target {text}: {'pass' if ok else 'FAIL'}")
    p50_500 = f"{row.p50_ms:.2f}" if (row := at(500)) else "nan"
    print(
        f"RESULT name=webhook max_rps={best.rps:.0f} p50_ms_at_500={p50_500} "
        f"p99_ms_at_500={p99(500)} p99_ms_at_200={p99(200)} p99_ms_at_1000={p99(1000)} "
        f"noop_max_rps={noop.rps:.0f} ratio_vs_noop={ratio:.2f}"
    )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/webhook.py",
        description="Benchmark podnet's admission webhook (HTTPS, real Redis) against a "
        "no-op webhook. Starts and stops its own redis-server and servers.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    parser.add_argument("--duration", type=float,
                        help="seconds per scenario (default 6, quick 1.5)")
    parser.add_argument("--rates", type=float, nargs="+", default=[200.0, 500.0, 1000.0],
                        help="open-loop offered loads per second (default 200 500 1000)")
    parser.add_argument("--processes", type=int, default=2,
                        help="load generator processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="requests in flight in the closed loop, and keep-alive "
                        "connections in both loops, over all processes (default 64)")
    parser.add_argument("--repeats", type=int,
                        help="alternating closed-loop runs of each server; the median is "
                        "reported (default 3, quick 1)")
    parser.add_argument("--serve-noop", nargs=3, metavar=("PORT", "CERT", "KEY"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.processes < 1 or args.concurrency < 1 or any(r <= 0 for r in args.rates):
        parser.error("--processes, --concurrency and --rates must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_noop:
        port, cert, key = args.serve_noop
        serve_noop(int(port), Path(cert), Path(key))
        return 0
    for binary in ("openssl", "redis-server"):
        if shutil.which(binary) is None and not Path(f"/usr/bin/{binary}").exists():
            print(f"{binary} is not installed (run scripts/bootstrap)", file=sys.stderr)
            return 2
    try:
        return run(Plan.from_args(args))
    except BenchError as exc:
        print(f"bench/webhook.py: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
