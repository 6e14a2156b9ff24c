"""What the sync worker's steps did, as Prometheus metrics and a readiness answer.

The worker runs unattended: whether its steps succeed, how long they take and how much
they change in OVN and the IPAM is what tells an operator it keeps up, and a worker
that has never finished a full resync (or whose last step failed) must not count as
ready. Every step reports here inline (see ``podnet_sync.worker.StepObserver``), so recording
is a handful of counter increments on label children looked up in advance; the index
sizes are read only when scraped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from podnet_sync.worker import StepReport, SyncWorker

_STEP_KINDS = ("full", "event")
_ADDRESS_ACTIONS = ("bound", "released", "expired", "orphan_freed")
_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""


class SyncMetrics:
    """The worker's metrics on a registry of their own (never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.full_succeeded = False
        self.failure: str | None = None
        """Why the last step failed; None once a step succeeds."""
        self._define()
        self._steps = {kind: self.steps.labels(kind) for kind in _STEP_KINDS}
        self._seconds = {kind: self.step_seconds.labels(kind) for kind in _STEP_KINDS}
        self._addresses = {action: self.addresses.labels(action) for action in _ADDRESS_ACTIONS}
        self._rows: dict[str, Any] = {}
        self._status_written = self.subnet_status.labels("written")
        self._status_failed = self.subnet_status.labels("failed")

    def _define(self) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"podnet_sync_{name}", doc, labels, registry=self.registry)

        self.steps = counter("steps", "Steps taken, by kind (full resync or event).", "kind")
        self.step_seconds = Histogram(
            "podnet_sync_step_seconds", "Time one step took, by kind.", ["kind"],
            buckets=_BUCKETS, registry=self.registry)
        self.ovn_rows = counter("ovn_rows", "OVN northbound rows written, by kind of row "
                                "and action (created, updated, deleted).", "kind", "action")
        self.addresses = counter("ipam_addresses", "IPAM addresses bound to pods, released, "
                                 "expired, or freed as orphans (reserved for a pod the API "
                                 "server never stored), by action.", "action")
        self.routed = counter("routed_patches", "Pods annotated routed=true.")
        self.failures = counter("step_failures", "Steps that failed (retried as a full one).")
        self.pod_failures = counter(
            "pod_failures", "Pods whose address could not be bound in a step (each reported "
            "as an Event on the pod and retried with backoff; the step went on).")
        self.subnet_status = counter(
            "subnet_status_patches", "Patches of a Subnet's status (its used and available "
            "addresses from the IPAM), by outcome (written, failed: retried with backoff).",
            "outcome")
        self.last_full = Gauge(
            "podnet_sync_last_full_success_timestamp_seconds",
            "Unix time the last full step succeeded.", registry=self.registry)
        self.index = Gauge("podnet_sync_index_objects", "Objects in the worker's index, "
                           "by kind (pods, services).", ["kind"], registry=self.registry)

    def attach(self, worker: SyncWorker) -> None:
        """Observe ``worker``'s steps and report its index sizes when scraped."""
        worker.observer = self
        if worker.status is not None:
            worker.status.observer = self
        self.index.labels("pods").set_function(lambda: len(worker.index.pods))
        self.index.labels("services").set_function(lambda: len(worker.index.services))

    def status_patched(self) -> None:
        self._status_written.inc()

    def status_failed(self) -> None:
        self._status_failed.inc()

    def orphans_freed(self, count: int) -> None:
        self._addresses["orphan_freed"].inc(count)

    def step_done(self, report: StepReport) -> None:
        kind = "full" if report.full else "event"
        self._steps[kind].inc()
        self._seconds[kind].observe(report.seconds)
        for key, count in report.ovn.by_kind.items():
            self._row_counter(key).inc(count)
        for action, count in (("bound", report.bound), ("released", report.released),
                              ("expired", report.expired)):
            if count:
                self._addresses[action].inc(count)
        if report.routed:
            self.routed.inc(report.routed)
        if report.failed:
            self.pod_failures.inc(report.failed)
        if report.full:
            self.full_succeeded = True
            self.last_full.set(time.time())
        self.failure = None

    def _row_counter(self, key: str) -> Any:
        counter = self._rows.get(key)
        if counter is None:  # "switch_ports.created" -> (switch_ports, created)
            kind, _, action = key.partition(".")
            counter = self._rows[key] = self.ovn_rows.labels(kind, action)
        return counter

    def step_failed(self, error: Exception) -> None:
        self.failures.inc()
        self.failure = str(error) or type(error).__name__

    def readiness(self) -> Readiness:
        """Ready once a full step succeeded, as long as the last step did not fail."""
        if self.failure is not None:
            return Readiness(False, f"the last step failed: {self.failure}")
        if not self.full_succeeded:
            return Readiness(False, "no full step has succeeded yet")
        return Readiness(True)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
