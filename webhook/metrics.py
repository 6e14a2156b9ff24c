"""Prometheus metrics of the webhook, on a registry of its own (never the global one).

Admissions are counted by endpoint and outcome, so a rise in denials or in store
failures shows without reading logs; the histogram times the whole review, Redis
round trips included.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WebhookMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.admissions = Counter(
            "podnet_webhook_admissions", "Admission reviews answered, by endpoint and outcome "
            "(mutated, unchanged, skipped, dry_run, retried, denied, unavailable, malformed).",
            ["endpoint", "outcome"], registry=self.registry,
        )
        self.latency = Histogram(
            "podnet_webhook_admission_seconds", "Time to answer one admission review.",
            ["endpoint"], buckets=_BUCKETS, registry=self.registry,
        )
        self._counted: dict[tuple[str, str], Any] = {}
        self._timed: dict[str, Any] = {}

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        """Count and time one answer (label children are looked up once, then kept)."""
        key = (endpoint, outcome)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.admissions.labels(endpoint, outcome)
        counter.inc()
        timer = self._timed.get(endpoint)
        if timer is None:
            timer = self._timed[endpoint] = self.latency.labels(endpoint)
        timer.observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
