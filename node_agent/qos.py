"""Pod bandwidth limits as settings for OVS and the kernel: a pure function of the
limits and the datapath.

A pod's ``ovn.kubernetes.io/ingress_rate`` limits traffic *to* the pod and
``egress_rate`` traffic *from* it, both in Mbit/s. What enforces each depends on the
datapath (measured on the userspace datapath; see docs/node-agent.md):

- to the pod: an OVS ``QoS`` of type ``linux-htb`` with ``max-rate`` on the pod's port.
  OVS shapes what it sends into the port; this works on both datapaths.
- from the pod, kernel datapath: the interface's ``ingress_policing_rate`` (a policer
  on what OVS receives from the port).
- from the pod, userspace datapath: ``ingress_policing_rate`` does nothing there (the
  datapath reads packets with a packet socket, before the ingress qdisc), so a ``tbf``
  qdisc shapes the pod's own interface inside its network namespace instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ipam import annotations as keys
from ipam.rates import rate_problem

Datapath = Literal["system", "netdev"]

TBF_LATENCY_MS = 50
"""How long a packet may wait in the pod's tbf queue before it is dropped."""
TBF_MIN_BURST_BYTES = 16 * 1514
TBF_BURST_MS = 4
"""The tbf bucket holds this long's worth of traffic (and at least 16 full frames)."""
POLICING_BURST_FRACTION = 0.1


class InvalidRate(ValueError):
    """A rate annotation is not a non-negative number of Mbit/s."""


@dataclass(frozen=True)
class Bandwidth:
    """Limits in Mbit/s; ``None`` for no limit."""

    ingress_mbps: float | None = None
    egress_mbps: float | None = None

    @property
    def limited(self) -> bool:
        return self.ingress_mbps is not None or self.egress_mbps is not None


@dataclass(frozen=True)
class Tbf:
    """A token bucket qdisc: ``rate`` bit/s, bucket ``burst`` bytes, queue ``latency``."""

    rate_bps: int
    burst_bytes: int
    latency_ms: int


@dataclass(frozen=True)
class QosPlan:
    port_max_rate_bps: int | None
    """linux-htb ``max-rate`` of the pod's port (traffic to the pod); None: no QoS row."""
    policing_rate_kbps: int
    """Interface ``ingress_policing_rate`` (traffic from the pod, kernel datapath); 0: off."""
    policing_burst_kb: int
    pod_tbf: Tbf | None
    """Root qdisc of the pod's interface (traffic from the pod, userspace datapath)."""


def parse_rate(key: str, value: str | None) -> float | None:
    """A rate annotation in Mbit/s; empty or 0 means no limit."""
    if value is None or not value.strip():
        return None
    problem = rate_problem(value)
    if problem:
        raise InvalidRate(f"{key} {value!r} {problem}")
    return float(value) or None


def bandwidth_from_annotations(annotations: Mapping[str, str]) -> Bandwidth:
    return Bandwidth(
        ingress_mbps=parse_rate(keys.INGRESS_RATE, annotations.get(keys.INGRESS_RATE)),
        egress_mbps=parse_rate(keys.EGRESS_RATE, annotations.get(keys.EGRESS_RATE)),
    )


def tbf_for(rate_mbps: float) -> Tbf:
    rate_bps = max(int(rate_mbps * 1_000_000), 8000)
    burst = max(rate_bps // 8 * TBF_BURST_MS // 1000, TBF_MIN_BURST_BYTES)
    return Tbf(rate_bps=rate_bps, burst_bytes=burst, latency_ms=TBF_LATENCY_MS)


def plan_qos(bandwidth: Bandwidth, datapath: Datapath) -> QosPlan:
    ingress, egress = bandwidth.ingress_mbps, bandwidth.egress_mbps
    max_rate = int(ingress * 1_000_000) if ingress else None
    policing = tbf = None
    if egress and datapath == "system":
        policing = max(int(egress * 1000), 1)
    elif egress:
        tbf = tbf_for(egress)
    burst = max(int((policing or 0) * POLICING_BURST_FRACTION), 1) if policing else 0
    return QosPlan(max_rate, policing or 0, burst, tbf)
