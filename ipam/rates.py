"""Bandwidth annotations (``ingress_rate``, ``egress_rate``): what a valid one is.

The webhook refuses a bad one at admission and the node agent refuses it again before
it shapes a port, from this one definition. A rate is a finite number of Mbit/s,
0 (or empty) meaning no limit, and at most ``MAX_RATE_MBPS``: far above any NIC, low
enough that the token-bucket arithmetic of the shaping stays exact.
"""

from __future__ import annotations

import math

MAX_RATE_MBPS = 1_000_000.0
"""1 Tbit/s."""


def rate_problem(value: str) -> str | None:
    """Why ``value`` is not a rate (None when it is one, or empty)."""
    if not value.strip():
        return None
    try:
        rate = float(value)
    except ValueError:
        return "is not a number of Mbit/s"
    if not math.isfinite(rate) or rate < 0:
        return "is not a non-negative number of Mbit/s"
    if rate > MAX_RATE_MBPS:
        return f"is more than {MAX_RATE_MBPS:.0f} Mbit/s"
    return None
