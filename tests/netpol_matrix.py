"""The reachability matrix of the NetworkPolicy truth tables: every pod probes every
other pod (and Service VIPs) on each protocol and port, and the outcome is compared with
what the oracle says the policies allow.

Expected and observed are both plain tables of cells, so a disagreement prints as a
grid per protocol and port (who may reach whom, and where the datapath differs) plus
one line per wrong cell. The probing is done by one ``netpol_agent`` process per pod
(see that module); this module starts them, hands them a round of probes at once and
collects the answers.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.netpol_oracle import Cluster, Connection, ContainerPort, Pod, allowed

AGENT = Path(__file__).resolve().parent / "netpol_agent.py"
PROBE_TIMEOUT_S = 1.0
ANSWER_SLACK_S = 10.0


@dataclass(frozen=True)
class Service:
    """A Service's VIP on one port, and its one backend pod and target port."""

    label: str
    vip: str
    port: int
    protocol: str
    backend: str
    target_port: int


@dataclass(frozen=True)
class Cell:
    """One probe of the matrix: ``source`` to ``destination`` (a pod's key or a
    Service's label) on ``protocol``/``port``."""

    source: str
    destination: str
    protocol: str
    port: int

    @property
    def column(self) -> str:
        return f"{self.protocol}/{self.port}"


Matrix = dict[Cell, bool]


# ------------------------------------------------------------------ expected


def cells(pods: Sequence[Pod], services: Sequence[Service],
          columns: Sequence[tuple[str, int]]) -> list[Cell]:
    """Every pod to every other pod on each (protocol, port), and every pod to each
    Service on its own port. A pod to itself is left out: that traffic never leaves its
    namespace's loopback, and the API says nothing about it."""
    found = [Cell(s.key, d.key, protocol, port) for s in pods for d in pods if s != d
             for protocol, port in columns]
    found += [Cell(s.key, v.label, v.protocol, v.port) for s in pods for v in services
              if s.key != v.backend]
    return found


def expected(cluster: Cluster, wanted: Iterable[Cell], services: Sequence[Service]) -> Matrix:
    """What the oracle allows; a Service's cell is judged as the connection to its
    backend on the target port (policies apply after load balancing)."""
    pods = {p.key: p for p in cluster.pods}
    by_label = {s.label: s for s in services}
    matrix = {}
    for cell in wanted:
        service = by_label.get(cell.destination)
        destination = pods[service.backend if service else cell.destination]
        port = service.target_port if service else cell.port
        matrix[cell] = allowed(cluster, Connection(pods[cell.source], destination, port,
                                                   cell.protocol))
    return matrix


def cluster_from(namespaces: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]],
                 policies: Iterable[Mapping[str, Any]]) -> Cluster:
    """The oracle's view of API objects: namespaces' labels, running pods with their
    first IPv4 address and container ports."""
    labels = {str(n["metadata"]["name"]): dict(n["metadata"].get("labels") or {})
              for n in namespaces}
    found = []
    for pod in pods:
        ip = next((str(p["ip"]) for p in (pod.get("status") or {}).get("podIPs") or []
                   if ":" not in str(p["ip"])), "")
        if not ip:
            continue
        ports = tuple(ContainerPort(int(p["containerPort"]), str(p.get("protocol") or "TCP"),
                                    str(p.get("name") or ""))
                      for c in pod["spec"].get("containers") or [] for p in c.get("ports") or [])
        meta = pod["metadata"]
        found.append(Pod(str(meta["namespace"]), str(meta["name"]),
                         dict(meta.get("labels") or {}), ip, ports))
    return Cluster(labels, tuple(sorted(found, key=lambda p: p.key)), tuple(policies))


# ------------------------------------------------------------------ showing


def differences(want: Matrix, seen: Matrix) -> list[Cell]:
    return sorted((c for c in want if seen.get(c) != want[c]),
                  key=lambda c: (c.column, c.source, c.destination))


def show(want: Matrix, seen: Matrix, details: Mapping[Cell, str] | None = None,
         every_column: bool = False) -> str:
    """The grids of the columns that differ (or of all, ``every_column``; rows are
    sources, columns destinations): ``.`` allowed and ``x`` blocked as expected, ``+``
    allowed though it must be blocked, ``-`` blocked though it must be allowed; then each
    wrong cell in words."""
    wrong = differences(want, seen)
    if not wrong and not every_column:
        return "the matrix matches the oracle"
    details = details or {}
    parts = []
    for column in sorted({c.column for c in (want if every_column else wrong)}):
        parts.append(_grid(column, {c: v for c, v in want.items() if c.column == column}, seen))
    parts.append("\n".join(
        f"  {c.source} -> {c.destination} {c.column}: expected "
        f"{'allowed' if want[c] else 'blocked'}, observed {'allowed' if seen.get(c) else 'blocked'}"
        + (f" ({details[c]})" if details.get(c) else "") for c in wrong))
    return f"{len(wrong)} of {len(want)} cells differ from the oracle\n" + "\n\n".join(parts)


def _grid(column: str, want: Matrix, seen: Matrix) -> str:
    sources = sorted({c.source for c in want})
    destinations = sorted({c.destination for c in want})
    by_pair = {(c.source, c.destination): c for c in want}
    width = max(len(d) for d in (*sources, *destinations))
    lines = [f"{column} (rows: from, columns: to; . allowed, x blocked, "
             f"+ allowed but must be blocked, - blocked but must be allowed)",
             " " * (width + 1) + " ".join(d.rjust(width) for d in destinations)]
    for source in sources:
        row = []
        for destination in destinations:
            cell = by_pair.get((source, destination))
            row.append(" " if cell is None else _mark(want[cell], seen.get(cell, False)))
        lines.append(source.ljust(width + 1) + " ".join(m.rjust(width) for m in row))
    return "\n".join(lines)


def _mark(want: bool, seen: bool) -> str:
    if want == seen:
        return "." if want else "x"
    return "+" if seen else "-"


# ------------------------------------------------------------------- probing


@dataclass(frozen=True)
class Target:
    """Where a cell's probe goes, and which answers count as reaching it."""

    address: str
    answers: frozenset[str]


class Agent:
    """One pod's ``netpol_agent`` process: its servers, and probes from the pod."""

    def __init__(self, netns: str, label: str, ports: Sequence[int], sctp: bool) -> None:
        argv = ["ip", "netns", "exec", netns, sys.executable, "-I", "-S", str(AGENT), label,
                ",".join(str(p) for p in ports)] + (["--sctp"] if sctp else [])
        self.label = label
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, bufsize=1)
        self.pending: dict[int, Future[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if first.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the probe agent in {label} did not start: {first!r} "
                               f"{self._stderr()}")
        self.reader = threading.Thread(target=self._read, args=(self.process.stdout,),
                                       daemon=True)
        self.reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            answer = json.loads(line)
            with self.lock:
                future = self.pending.pop(int(answer["id"]), None)
            if future is not None:
                future.set_result(answer)

    def send(self, ident: int, address: str, port: int, protocol: str) -> Future[dict[str, Any]]:
        future: Future[dict[str, Any]] = Future()
        with self.lock:
            self.pending[ident] = future
        request = {"id": ident, "address": address, "port": port, "protocol": protocol,
                   "timeout": PROBE_TIMEOUT_S}
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        return future

    def flush(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.flush()

    def _stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()[-500:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@dataclass(frozen=True)
class Round:
    """One round of probes: allowed or not per cell, and what each probe saw."""

    seen: Matrix
    details: dict[Cell, str]
    last_sent: float = 0.0
    """When the round's last probe left (``time.monotonic``): every cell's verdict is
    the datapath's at or before it."""


def probe_round(agents: Mapping[str, Agent], targets: Callable[[Cell], Target],
                wanted: Sequence[Cell]) -> Round:
    """Every cell probed once, all at the same time."""
    counter = itertools.count()
    futures = []
    for cell in wanted:
        target = targets(cell)
        agent = agents[cell.source]
        futures.append((cell, target, agent.send(next(counter), target.address, cell.port,
                                                 cell.protocol)))
    for agent in agents.values():
        agent.flush()
    seen, details = {}, {}
    last_sent = 0.0
    for cell, target, future in futures:
        try:
            answer = future.result(timeout=PROBE_TIMEOUT_S + ANSWER_SLACK_S)
        except TimeoutError:
            answer = {"answer": "", "error": "the agent did not answer"}
        text = str(answer["answer"])
        last_sent = max(last_sent, float(answer.get("sent") or 0.0))
        seen[cell] = text in target.answers
        if text and not seen[cell]:
            details[cell] = f"answered by {text!r}"
        elif not text:
            details[cell] = str(answer["error"])
    return Round(seen, details, last_sent)


def converge(observe: Callable[[], Round], want: Matrix, bound_s: float,
             confirm: int = 2) -> tuple[bool, Round]:
    """Probe until a round matches ``want`` or ``bound_s`` has passed; a mismatch at
    the end is probed ``confirm`` more times (a lost packet is not a verdict), and
    the round that matched, or the last one, returned."""
    deadline = time.monotonic() + bound_s
    while True:
        last = observe()
        if not differences(want, last.seen):
            return True, last
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    for _ in range(confirm):
        last = observe()
        if not differences(want, last.seen):
            return True, last
    return False, last
