"""Prometheus metrics of the IPAM, on a registry of their own (never the global one).

Two kinds: what this process did (operation counts and latency histograms, recorded
by ``Ipam``), and what the cluster's IPAM holds (per-subnet utilisation and the
cluster-wide counters the Lua scripts keep in Redis), refreshed by the query endpoint
just before each scrape.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

from ipam.records import SubnetUsage

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
_STORED_COUNTERS = ("allocations", "releases", "conflicts", "exhausted", "expired")


class IpamMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}
        self.operations = Counter(
            "podnet_ipam_operations", "IPAM operations by this process, by outcome.",
            ["operation", "outcome"], registry=self.registry,
        )
        self.latency = Histogram(
            "podnet_ipam_operation_seconds", "Latency of IPAM operations (one Redis script).",
            ["operation"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.addresses = Gauge(
            "podnet_ipam_subnet_addresses", "Addresses of a subnet by state.",
            ["subnet", "family", "state"], registry=self.registry,
        )
        self.utilisation = Gauge(
            "podnet_ipam_subnet_utilisation_ratio", "Share of usable addresses held.",
            ["subnet", "family"], registry=self.registry,
        )
        self._events: dict[tuple[str, str], int] = {}
        self.registry.register(_ClusterEvents(self._events))

    def observe(self, operation: str, outcome: str, seconds: float, subnet: str) -> None:
        del subnet  # per-subnet detail lives in the utilisation gauges
        counter = self._counters.get((operation, outcome))
        if counter is None:  # label lookups cost more than the increment: keep children
            counter = self._counters[(operation, outcome)] = self.operations.labels(
                operation, outcome)
        histogram = self._histograms.get(operation)
        if histogram is None:
            histogram = self._histograms[operation] = self.latency.labels(operation)
        counter.inc()
        histogram.observe(seconds)

    def record_usage(self, usages: Iterable[tuple[SubnetUsage, dict[str, int]]]) -> None:
        self.addresses.clear()
        self.utilisation.clear()
        self._events.clear()
        for usage, counters in usages:
            name = usage.spec.name
            for family in usage.families:
                label = f"IPv{family.family}"
                for state, value in (
                    ("used", family.used), ("reserved", family.reserved),
                    ("free", family.free), ("excluded", family.excluded),
                ):
                    self.addresses.labels(name, label, state).set(value)
                held = family.used + family.reserved
                self.utilisation.labels(name, label).set(held / family.total if family.total else 0)
            for event in _STORED_COUNTERS:
                self._events[(name, event)] = counters.get(event, 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ClusterEvents:
    """``podnet_ipam_cluster_events_total``: counts every IPAM process adds to in Redis
    (allocations, releases, conflicts, exhausted, expired), so a counter, not a gauge,
    though this process only reads them."""

    def __init__(self, events: dict[tuple[str, str], int]) -> None:
        self.events = events

    def describe(self) -> list[CounterMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = self._family()
        for (subnet, event), value in sorted(self.events.items()):
            family.add_metric([subnet, event], value)
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "podnet_ipam_cluster_events", "Cluster-wide IPAM event counts kept in Redis "
            "(allocations, releases, conflicts, exhausted, expired).",
            labels=["subnet", "event"])

