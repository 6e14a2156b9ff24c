"""Plumbing shared by podnet's benchmarks: what a worker is told and reports, latency
summaries and the result table.

The worker types live here, in a module with a stable import name, so that they pickle
the same way in the parent and in the processes ``multiprocessing`` spawns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["reserve", "raw", "open", "churn"]
"""What a worker process does: closed-loop reservations, the raw bitmap script,
open-loop (paced) reservations, or reserve+release churn."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one benchmark process needs; plain data, so it pickles."""

    url: str
    prefix: str
    subnets: tuple[str, ...]
    """The subnet to reserve in; in ``churn`` mode, the subnets to take turns on."""
    mode: Mode
    tag: str
    """Starts every reservation token of this process, so tokens never collide."""
    concurrency: int = 64
    duration_s: float = 5.0
    """How long to load (in ``churn`` mode: each subnet, in total)."""
    slice_s: float = 0.5
    """``churn`` mode: the subnets take turns for this long each, so that whatever
    else the machine does weighs on all of them alike."""
    rate_per_s: float = 1000.0
    """Offered load in ``open`` mode."""
    hold: int = 100
    """Most reservations kept live in ``churn`` mode."""
    raw_sha: str = ""
    raw_key: str = ""


@dataclass
class WorkerResult:
    """What one process measured. Times are ``time.perf_counter`` values, which on
    Linux read CLOCK_MONOTONIC and so compare across processes."""

    label: str = ""
    """The subnet measured (``churn`` mode reports one result per turn)."""
    count: int = 0
    started: float = 0.0
    ended: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    """The address (or bit position) each operation got."""
    lags_s: list[float] = field(default_factory=list)
    """Open loop only: how late each request started after its scheduled time."""
    service_s: list[float] = field(default_factory=list)
    """Open loop only: each request's time from its start to its answer (its latency
    without the generator's send lag)."""
    peak_pending: int = 0
    """Open loop only: most requests arrived and not yet answered at one time."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Row:
    """One line of the result table; latencies in milliseconds."""

    name: str
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    notes: str = ""


def summarize(
    name: str, results: Sequence[WorkerResult], notes: str = "", *, concurrent: bool = True
) -> Row:
    """Aggregate the results of one scenario, percentiles over every operation.

    Results of processes that ran together (``concurrent``): total operations over the
    span from the first start to the last end. Results of runs one after the other:
    total operations over the sum of their spans.
    """
    count = sum(r.count for r in results)
    if concurrent:
        span = max(r.ended for r in results) - min(r.started for r in results)
    else:
        span = sum(r.ended - r.started for r in results)
    latencies = sorted(x for r in results for x in r.latencies_s)
    return Row(
        name,
        count / span if span > 0 else 0.0,
        1000 * percentile(latencies, 0.50),
        1000 * percentile(latencies, 0.99),
        notes,
    )


def render_table(rows: Sequence[Row]) -> str:
    """A fixed-width table: name, ops/s, p50 ms, p99 ms, notes."""
    header = ("scenario", "ops/s", "p50 ms", "p99 ms", "notes")
    cells = [
        (row.name, f"{row.ops_per_s:,.0f}", f"{row.p50_ms:.3f}", f"{row.p99_ms:.3f}", row.notes)
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(4)]

    def line(values: Sequence[str]) -> str:
        name, ops, p50, p99, notes = values
        return (
            f"{name:<{widths[0]}}  {ops:>{widths[1]}}  {p50:>{widths[2]}}  "
            f"{p99:>{widths[3]}}  {notes}"
        ).rstrip()

    rule = "-" * (sum(widths) + 8 + max(len(c[4]) for c in [header, *cells]))
    return "\n".join([line(header), rule, *(line(c) for c in cells)])
