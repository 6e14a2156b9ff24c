"""Prometheus metrics of the webhook, on a registry of its own (never the global one).

Admissions are counted by endpoint and outcome, so a rise in denials or in store
failures shows without reading logs; the histogram times the whole review, Redis
round trips included.
"""

from __future__ import annotations

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

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        self.admissions.labels(endpoint, outcome).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
