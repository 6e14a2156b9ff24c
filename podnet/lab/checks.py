"""Connectivity checks: what ``podnet up`` proves about the network it built.

A table of addresses says what podnet decided; only traffic says it works. After the
pods settle, ``up`` sends TCP requests between them, the way an application would, and
reports each as pass or fail with its latency (TCP connect plus one request and its
answer, median of three):

- **same node**: two pods on one node (one OVS, no tunnel);
- **across nodes**: two pods of one subnet on different nodes (Geneve over the underlay);
- **across subnets**: pods of two subnets (through the cluster router ``ovn-cluster``);
- **Service VIP**: a pod to a Service's cluster IP (an OVN load balancer replacing
  kube-proxy); with ``sessionAffinity: ClientIP`` every answer must come from one
  backend;
- **outside world**: a pod of a ``natOutgoing`` subnet to the external host's
  ``outside_address``, once per node: the traffic leaves through the pod's own node
  (distributed gateway), and the external host must see that node's address (SNAT);
- **across clusters** (``up --clusters N``, ``plan_cross_checks``): a pod of one cluster
  to a pod of another by pod IP, and back, over OVN-IC's transit switch: a ping (whose
  replies must come with the TTL down by two, one per cluster router) and TCP, where the
  server must see the client's own pod IP (no NAT on the way).

Nothing listens in a lab pod (a sandbox is a network namespace, not a container), so
for the duration of the checks a small responder stands in for each container on the
ports a check needs (a Service's target port, or ``CHECK_PORT``); it answers with its
name and the address it saw the request come from. The responders are children of
this process and are stopped when the checks end.

Choosing the checks (``plan_checks``) and judging their outcome (``judge``) are pure
functions; ``run_checks`` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ipam import annotations as keys
from ipam.cli import Table, format_table
from podnet.lab.objects import (
    key_of,
    metadata,
    name_of,
    namespace_of,
    pod_ips,
    pod_ready,
    spec_of,
    status_of,
)

CHECK_PORT = 9000
PYTHON = (sys.executable, "-I", "-S")
"""The responders and clients need the standard library only: a bare interpreter."""
SEPARATOR = "\t"
"""Between a responder's name and the source address it saw, in its answer."""
REQUESTS = 3
WARM_UP_S = 15.0
"""How long a check may take for its first answer (a Service's backends reach OVN a
moment after its pods are ready)."""
CROSS_WARM_UP_S = 90.0
"""How long a check across clusters may take for its first answer: the routes to the
other cluster are learned through the IC databases by each AZ's ``ovn-ic``."""
ACROSS = "across clusters (OVN-IC)"
PING_ACROSS = "ping across clusters"
SENT_TTL = 64
"""The TTL a pod's packets leave with (Linux's default)."""
PING_REPLY = re.compile(r"ttl=(\d+) time=([\d.]+) ms")

RESPONDER = """\
import socket, sys
label, port = sys.argv[1], int(sys.argv[2])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", port))
server.listen(64)
print("listening", flush=True)
while True:
    connection, peer = server.accept()
    with connection:
        connection.settimeout(5)
        try:
            connection.recv(64)
            connection.sendall(f"{label}\t{peer[0]}".encode())
        except OSError:
            pass
"""

CLIENT = """\
import json, socket, sys, time
address, port, count, warm_up = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

def request(timeout):
    started = time.perf_counter()
    with socket.create_connection((address, port), timeout=timeout) as connection:
        connection.sendall(b"podnet check")
        answer = connection.recv(256).decode()
    if not answer:
        raise OSError("connection closed without an answer")
    return answer, 1000 * (time.perf_counter() - started)

deadline, error, attempts = time.monotonic() + warm_up, "", 0
while True:
    attempts += 1
    try:
        request(1.0)
        break
    except OSError as exc:
        error = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            print(json.dumps({"answers": [], "ms": [], "error": error, "attempts": attempts}))
            sys.exit(0)
        time.sleep(0.1)
answers, ms = [], []
for _ in range(count):
    try:
        answer, elapsed = request(2.0)
    except OSError as exc:
        error = str(exc) or type(exc).__name__
        continue
    answers.append(answer)
    ms.append(elapsed)
print(json.dumps({"answers": answers, "ms": ms, "error": error, "attempts": attempts}))
"""


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class Host:
    """One end of a check: a pod's sandbox, or the external host."""

    label: str
    netns: str
    ip: str
    node: str = ""
    subnet: str = ""


@dataclass(frozen=True)
class Listener:
    host: Host
    port: int


@dataclass(frozen=True)
class ServiceTarget:
    """A Service's virtual IP and port, and the pods behind it on their target port."""

    label: str
    vip: str
    port: int
    backends: tuple[Listener, ...]
    sticky: bool


@dataclass(frozen=True)
class Check:
    kind: str
    client: Host
    address: str
    port: int
    destination: str
    """How the table names the destination."""
    listeners: tuple[Listener, ...]
    sticky: bool = False
    """Every answer must come from one listener (``sessionAffinity: ClientIP``)."""
    expect_source: str = ""
    """The address the listener must see the request come from (the node, after SNAT;
    the client's own pod IP across clusters)."""
    warm_up_s: float = WARM_UP_S
    ping: bool = False
    """An ICMP echo (``ping``) instead of TCP: its answers are the replies' TTLs."""
    routers: int = 0
    """With ``ping``: the routers on the way, each taking one off the TTL (0: not
    checked)."""


@dataclass(frozen=True)
class Outcome:
    """What the client saw: answers (``<listener>\\t<source address>``) and their times."""

    answers: tuple[str, ...]
    ms: tuple[float, ...]
    error: str = ""


@dataclass(frozen=True)
class CheckResult:
    kind: str
    source: str
    destination: str
    ok: bool
    latency_ms: float | None
    detail: str

    def cells(self) -> tuple[str, ...]:
        latency = f"{self.latency_ms:.2f} ms" if self.latency_ms is not None else "-"
        return (self.kind, self.source, self.destination, "pass" if self.ok else "FAIL",
                latency, self.detail)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def results_table(results: Sequence[CheckResult]) -> str:
    if not results:
        return "(no connectivity checks: no running pods)"
    header = ("CHECK", "FROM", "TO", "RESULT", "LATENCY", "DETAIL")
    return format_table(Table(header, tuple(r.cells() for r in results), frozenset({4})))


# ------------------------------------------------------- from the cluster


def pod_host(pod: Mapping[str, Any], sandbox: Callable[[Mapping[str, Any]], str]) -> Host | None:
    """A running pod as a check's end (its first IPv4 address), or None."""
    ipv4 = [ip for ip in pod_ips(pod) if ":" not in ip]
    if not pod_ready(pod) or not ipv4:
        return None
    annotations = metadata(pod).get("annotations") or {}
    namespace, name = key_of(pod)
    return Host(f"{namespace}/{name}", sandbox(pod), ipv4[0],
                str(spec_of(pod).get("nodeName") or ""),
                str(annotations.get(keys.LOGICAL_SWITCH) or ""))


def service_targets(services: Iterable[Mapping[str, Any]],
                    slices: Iterable[Mapping[str, Any]],
                    hosts: Mapping[str, Host]) -> list[ServiceTarget]:
    """The first TCP port of each Service with a cluster IP and ready backends;
    ``hosts`` are the running pods by uid."""
    by_service: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for found in slices:
        service = (metadata(found).get("labels") or {}).get("kubernetes.io/service-name")
        if service:
            by_service.setdefault((namespace_of(found), str(service)), []).append(found)
    targets = []
    for service in services:
        target = _service_target(service, by_service.get(key_of(service), []), hosts)
        if target is not None:
            targets.append(target)
    return targets


def _service_target(service: Mapping[str, Any], slices: Sequence[Mapping[str, Any]],
                    hosts: Mapping[str, Host]) -> ServiceTarget | None:
    spec = spec_of(service)
    vip = str(spec.get("clusterIP") or "")
    ports = [p for p in spec.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
    if not vip or vip == "None" or ":" in vip or not ports:
        return None
    port = ports[0]
    backends = []
    for found in slices:
        target_port = next((p.get("port") for p in found.get("ports") or []
                            if (p.get("name") or "") == (port.get("name") or "")), None)
        for endpoint in found.get("endpoints") or []:
            host = hosts.get(str((endpoint.get("targetRef") or {}).get("uid") or ""))
            ready = (endpoint.get("conditions") or {}).get("ready")
            if host is not None and ready and target_port is not None:
                backends.append(Listener(host, int(target_port)))
    if not backends:
        return None
    namespace, name = key_of(service)
    return ServiceTarget(f"service {namespace}/{name}", vip, int(port["port"]),
                         tuple(sorted(backends, key=lambda b: b.host.label)),
                         spec.get("sessionAffinity") == "ClientIP")


def node_addresses(nodes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Each node's InternalIP."""
    found = {}
    for node in nodes:
        for address in status_of(node).get("addresses") or []:
            if address.get("type") == "InternalIP":
                found[name_of(node)] = str(address.get("address"))
                break
    return found


# ------------------------------------------------------------------ planning


def _first_pair(hosts: Sequence[Host], *wanted: Callable[[Host, Host], bool]
                ) -> tuple[Host, Host] | None:
    """The first pair meeting the first condition any pair meets."""
    for condition in wanted:
        for index, first in enumerate(hosts):
            for second in hosts[index + 1:]:
                if condition(first, second):
                    return first, second
    return None


def _pod_check(kind: str, pair: tuple[Host, Host] | None) -> list[Check]:
    if pair is None:
        return []
    client, server = pair
    return [Check(kind, client, server.ip, CHECK_PORT, server.label,
                  (Listener(server, CHECK_PORT),))]


def plan_checks(pods: Sequence[Host], services: Sequence[ServiceTarget],
                external: Host | None, nat_subnets: Iterable[str],
                addresses: Mapping[str, str]) -> list[Check]:
    """The checks worth running between these pods; kinds without suitable pods are left
    out (one node has no "across nodes")."""
    hosts = sorted(pods, key=lambda h: h.label)
    checks = _pod_check("same node", _first_pair(
        hosts, lambda a, b: a.node == b.node and a.subnet == b.subnet,
        lambda a, b: a.node == b.node))
    checks += _pod_check("across nodes (Geneve)", _first_pair(
        hosts, lambda a, b: a.node != b.node and a.subnet == b.subnet,
        lambda a, b: a.node != b.node))
    checks += _pod_check("across subnets", _first_pair(
        hosts, lambda a, b: a.subnet != b.subnet and a.node != b.node,
        lambda a, b: a.subnet != b.subnet))
    checks += [_service_check(service, hosts) for service in services]
    if external is not None:
        checks += _outside_checks(hosts, external, set(nat_subnets), addresses)
    return checks


def _service_check(service: ServiceTarget, hosts: Sequence[Host]) -> Check:
    backends = {b.host.label for b in service.backends}
    client = next((h for h in hosts if h.label not in backends), service.backends[0].host)
    return Check("Service VIP", client, service.vip, service.port,
                 f"{service.label} {service.vip}:{service.port}", service.backends,
                 sticky=service.sticky)


def _outside_checks(hosts: Sequence[Host], external: Host, nat_subnets: set[str],
                    addresses: Mapping[str, str]) -> list[Check]:
    checks = []
    for node in sorted({h.node for h in hosts}):
        client = next((h for h in hosts if h.node == node and h.subnet in nat_subnets), None)
        if client is not None:
            checks.append(Check("outside world (SNAT)", client, external.ip, CHECK_PORT,
                                external.label, (Listener(external, CHECK_PORT),),
                                expect_source=addresses.get(node, "")))
    return checks


# ------------------------------------------------------------------ judging


def judge(check: Check, outcome: Outcome, names: Mapping[str, str] | None = None) -> CheckResult:
    """Pass or fail, with the latency and what the answers show; ``names`` name the
    addresses a listener may report (a node's name for its address)."""
    names = names or {}

    def result(ok: bool, detail: str) -> CheckResult:
        latency = statistics.median(outcome.ms) if outcome.ms else None
        return CheckResult(check.kind, check.client.label, check.destination, ok, latency,
                           detail)

    if len(outcome.answers) < REQUESTS:
        why = outcome.error or "no answer"
        return result(False, f"{len(outcome.answers)}/{REQUESTS} answered: {why}")
    if check.ping:
        return _judge_ping(check, outcome, result)
    seen = [answer.partition(SEPARATOR) for answer in outcome.answers]
    responders = sorted({responder for responder, _, _ in seen})
    sources = sorted({source for _, _, source in seen})
    if check.expect_source and check.expect_source == check.client.ip:
        if sources != [check.expect_source]:
            return result(False, f"{', '.join(responders)} saw {', '.join(sources)}, not the "
                                 f"client's own {check.expect_source}")
        return result(True, f"answered by {', '.join(responders)}, which saw the client's "
                            f"own {check.expect_source}")
    if check.expect_source:
        shown = ", ".join(f"{s} ({names[s]})" if s in names else s for s in sources)
        if sources != [check.expect_source]:
            return result(False, f"external host saw {shown}, not the node's "
                                 f"{check.expect_source}")
        return result(True, f"external host saw {shown}")
    if check.sticky and len(responders) > 1:
        return result(False, f"affinity broken: answered by {', '.join(responders)}")
    detail = f"answered by {', '.join(responders)}"
    if check.sticky:
        detail += f" ({REQUESTS}/{REQUESTS}: ClientIP affinity held)"
    return result(True, detail)


def _judge_ping(check: Check, outcome: Outcome,
                result: Callable[[bool, str], CheckResult]) -> CheckResult:
    ttls = sorted({int(answer) for answer in outcome.answers})
    shown = "ttl " + ", ".join(map(str, ttls))
    if check.routers and ttls != [SENT_TTL - check.routers]:
        return result(False, f"{shown}, not {SENT_TTL - check.routers} (sent with "
                             f"{SENT_TTL}, {check.routers} routers on the way)")
    return result(True, f"{len(outcome.answers)}/{REQUESTS} replies, {shown} (sent with "
                        f"{SENT_TTL}: {SENT_TTL - ttls[0]} routers)")


# ------------------------------------------------------------------ across clusters


def plan_cross_checks(clusters: Sequence[Sequence[Host]], default_subnet: str = ""
                      ) -> list[Check]:
    """Checks from each cluster's first pod (of ``default_subnet`` where there is one) to
    the next cluster's, and back: a ping that must lose two of its TTL (two cluster
    routers: no hop besides them) and TCP whose server must see the client's pod IP.
    The first check waits (``CROSS_WARM_UP_S``) for the routes to be learned: once it is
    answered both AZs have learned the other's, so the others wait as long as any."""
    chosen = []
    for hosts in clusters:
        ordered = sorted(hosts, key=lambda h: (h.subnet != default_subnet, h.label))
        chosen.append(ordered[0] if ordered else None)
    checks: list[Check] = []
    for index, client in enumerate(chosen):
        for other, server in enumerate(chosen):
            if client is None or server is None or other == index:
                continue
            if abs(other - index) != 1 and len(chosen) > 2:
                continue
            checks.append(Check(PING_ACROSS, client, server.ip, 0, server.label, (),
                                warm_up_s=WARM_UP_S if checks else CROSS_WARM_UP_S,
                                ping=True, routers=2))
            checks.append(Check(ACROSS, client, server.ip, CHECK_PORT, server.label,
                                (Listener(server, CHECK_PORT),), expect_source=client.ip))
    return checks


# ------------------------------------------------------------------- running


async def _exec(netns: str, *argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns, *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _stop(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


@dataclass
class Responders:
    """The stand-ins for the containers, one per (namespace, port), for one run."""

    running: dict[tuple[str, int], asyncio.subprocess.Process] = field(default_factory=dict)
    failed: dict[tuple[str, int], str] = field(default_factory=dict)

    async def start(self, listener: Listener) -> None:
        key = (listener.host.netns, listener.port)
        if key in self.running or key in self.failed:
            return
        process = await _exec(listener.host.netns, *PYTHON, "-c", RESPONDER,
                              listener.host.label, str(listener.port))
        assert process.stdout is not None
        try:
            async with asyncio.timeout(10):
                line = await process.stdout.readline()
        except TimeoutError:
            line = b""
        if not line.startswith(b"listening"):
            await _stop(process)
            error = await process.stderr.read() if process.stderr is not None else b""
            text = error.decode(errors="replace").strip()
            self.failed[key] = text.splitlines()[-1] if text else "did not start"
            return
        self.running[key] = process

    async def stop(self) -> None:
        await asyncio.gather(*(_stop(p) for p in self.running.values()))
        self.running.clear()


async def run_ping(check: Check) -> Outcome:
    """Ping until the first reply (within the check's warm-up), then ``REQUESTS`` times;
    the replies' TTLs and round-trip times."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + check.warm_up_s
    error = ""
    while True:
        out, error = await _ping(check, 1)
        if PING_REPLY.search(out):
            break
        if loop.time() >= deadline:
            return Outcome((), (), error or "no reply")
        await asyncio.sleep(0.2)
    out, error = await _ping(check, REQUESTS)
    replies = PING_REPLY.findall(out)
    return Outcome(tuple(ttl for ttl, _ in replies), tuple(float(ms) for _, ms in replies),
                   error if len(replies) < REQUESTS else "")


async def _ping(check: Check, count: int) -> tuple[str, str]:
    process = await _exec(check.client.netns, "ping", "-n", "-c", str(count), "-i", "0.2",
                          "-W", "1", check.address)
    try:
        async with asyncio.timeout(count + 5):
            out, err = await process.communicate()
    except TimeoutError:
        await _stop(process)
        return "", "ping did not finish"
    text = out.decode(errors="replace")
    lines = [line for line in (err.decode(errors="replace") + text).splitlines()
             if "packet loss" in line or "ping:" in line]
    return text, lines[-1].strip() if lines else ""


async def run_check(check: Check) -> Outcome:
    if check.ping:
        return await run_ping(check)
    process = await _exec(check.client.netns, *PYTHON, "-c", CLIENT, check.address,
                          str(check.port), str(REQUESTS), str(check.warm_up_s))
    try:
        async with asyncio.timeout(check.warm_up_s + 3 * REQUESTS + 10):
            out, err = await process.communicate()
    except TimeoutError:
        await _stop(process)
        return Outcome((), (), "the client did not finish")
    try:
        answer = json.loads(out.decode())
    except ValueError:
        return Outcome((), (), err.decode(errors="replace").strip()[-200:] or "no output")
    return Outcome(tuple(answer["answers"]), tuple(answer["ms"]), str(answer["error"]))


async def run_checks(checks: Sequence[Check], names: Mapping[str, str] | None = None,
                     on_result: Callable[[CheckResult], None] | None = None
                     ) -> list[CheckResult]:
    """Run the checks one after the other (so each latency is its own)."""
    responders = Responders()
    results = []
    try:
        for listener in {listener for check in checks for listener in check.listeners}:
            await responders.start(listener)
        for check in checks:
            broken = [responders.failed[key] for key in
                      ((each.host.netns, each.port) for each in check.listeners)
                      if key in responders.failed]
            if broken:
                outcome = Outcome((), (), f"no responder: {broken[0]}")
            else:
                outcome = await run_check(check)
            result = judge(check, outcome, names)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        await responders.stop()
    return results
