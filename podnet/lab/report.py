"""What ``podnet up`` proves, as tables: every pod's node, subnet, addresses and time to
ready, every problem, and the connectivity checks (``podnet.lab.checks``), saved so
``podnet status`` shows the same later.

A pod's row comes from the pod object itself (the webhook's annotations are the record
of its address, ``spec.nodeName`` of its placement, its status of its readiness), so the
table is the cluster's truth, not the lab's bookkeeping. Times to ready are measured by
``up`` while it watches (from the pod's creation to its ``Running`` status with an IP)
and kept in ``report.json`` by pod uid.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ipam import annotations as keys
from ipam.cli import Table, format_table
from podnet.lab.checks import CheckResult, results_table
from podnet.lab.objects import (
    REPLICA_FAILURE,
    key_of,
    metadata,
    pod_ips,
    pod_ready,
    spec_of,
    status_of,
    terminal,
    uid_of,
)

REPORT = "report.json"
WAITING_FOR_AGENT = "scheduled; waiting for the node agent to attach it"


@dataclass(frozen=True)
class PodRow:
    namespace: str
    name: str
    node: str
    subnet: str
    ip: str
    mac: str
    status: str
    ready_s: float | None = None
    uid: str = ""

    def cells(self) -> tuple[str, ...]:
        ready = f"{self.ready_s * 1000:.0f} ms" if self.ready_s is not None else "-"
        return (f"{self.namespace}/{self.name}", self.node or "-", self.subnet or "-",
                self.ip or "-", self.mac or "-", ready, self.status)


def pod_status(pod: Mapping[str, Any], attaching: bool) -> str:
    """Running, or why not, in the words of the condition that says so."""
    if terminal(pod):
        return str(status_of(pod).get("phase"))
    if pod_ready(pod):
        return "Running"
    conditions = {c.get("type"): c for c in status_of(pod).get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    if not spec_of(pod).get("nodeName"):
        if scheduled.get("status") == "False":
            return f"Pending: {scheduled.get('message')}"
        return "Pending: not scheduled yet"
    sandbox = conditions.get("PodReadyToStartContainers") or {}
    if sandbox.get("status") == "False":
        return f"Pending: {sandbox.get('message')}"
    return "Pending: attaching" if attaching else f"Pending: {WAITING_FOR_AGENT}"


def pod_row(pod: Mapping[str, Any], ready_s: float | None, attaching: bool) -> PodRow:
    annotations = metadata(pod).get("annotations") or {}
    namespace, name = key_of(pod)
    ips = pod_ips(pod) or [ip for ip in str(
        annotations.get(keys.IP_ADDRESS) or "").split(",") if ip]
    return PodRow(
        namespace=namespace, name=name, node=str(spec_of(pod).get("nodeName") or ""),
        subnet=str(annotations.get(keys.LOGICAL_SWITCH) or ""),
        ip=",".join(ips), mac=str(annotations.get(keys.MAC_ADDRESS) or ""),
        status=pod_status(pod, attaching), ready_s=ready_s, uid=uid_of(pod),
    )


def pods_table(rows: Sequence[PodRow]) -> str:
    header = ("POD", "NODE", "SUBNET", "IP", "MAC", "READY IN", "STATUS")
    return format_table(Table(header, tuple(row.cells() for row in rows), frozenset({5})))


def workload_problems(workloads: Iterable[Mapping[str, Any]]) -> list[str]:
    """A line for each Deployment, ReplicaSet or StatefulSet that cannot make its pods."""
    found = []
    for owner in workloads:
        for condition in status_of(owner).get("conditions") or []:
            if condition.get("type") == REPLICA_FAILURE and condition.get("status") == "True":
                namespace, name = key_of(owner)
                found.append(f"{owner.get('kind')} {namespace}/{name}: "
                             f"{condition.get('message')}")
    return found


@dataclass
class Report:
    """The outcome of one ``up``: the pods, the problems, the checks, and when it ran."""

    pods: list[PodRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    finished_at: float = 0.0
    connectivity: list[CheckResult] = field(default_factory=list)

    def ready_times(self) -> dict[str, float]:
        return {row.uid: row.ready_s for row in self.pods
                if row.uid and row.ready_s is not None}

    def save(self, state_dir: Path) -> None:
        data = {"pods": [asdict(row) for row in self.pods], "problems": self.problems,
                "finished_at": self.finished_at,
                "connectivity": [result.to_json() for result in self.connectivity]}
        (state_dir / REPORT).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> Report:
        try:
            data = json.loads((state_dir / REPORT).read_text())
        except (OSError, ValueError):
            return cls()
        return cls([PodRow(**row) for row in data.get("pods") or []],
                   list(data.get("problems") or []), float(data.get("finished_at") or 0),
                   [CheckResult(**row) for row in data.get("connectivity") or []])

    def render(self, with_checks: bool = True) -> str:
        lines = [pods_table(self.pods) if self.pods else "(no pods)"]
        if self.problems:
            lines += ["", "problems:"] + [f"  ! {problem}" for problem in self.problems]
        if with_checks:
            lines += ["", "connectivity (TCP connect + request/answer, median of 3):",
                      results_table(self.connectivity)]
        return "\n".join(lines)
