"""Parsing of the address notations users write, and interval arithmetic on offsets.

Kube-OVN manifests write addresses in three shapes: single IPs, ``a..b`` ranges and
CIDRs, often mixed in one list and across both families. Everything here is pure:
strings in, typed values out, and an ``InvalidInput`` naming the field otherwise.

Inside a subnet an address is handled as its *offset* from the network address: an
integer, so that exclusions, pools and the allocation cursor are plain intervals.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal, TypeAlias

from ipam.errors import MalformedValue

Family: TypeAlias = Literal[4, 6]
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Interval: TypeAlias = tuple[int, int]
"""An inclusive ``(low, high)`` pair of offsets or integer addresses."""


def parse_ip(field: str, text: str) -> IPAddress:
    """Parse one IP address, naming ``field`` if it is not one."""
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError as exc:
        raise MalformedValue(field, text, "is not a valid IP address") from exc


def parse_cidr(field: str, text: str, strict: bool = True) -> IPNetwork:
    """Parse a CIDR; ``strict`` refuses host bits, as a subnet's ``cidrBlock`` must.

    Lists of addresses (pools, exclusions) are lenient like Kube-OVN: ``10.16.0.210/30``
    there means the /30 that holds 10.16.0.210.
    """
    cleaned = text.strip()
    if "/" not in cleaned:
        raise MalformedValue(field, text, "is not a CIDR (expected address/prefix)")
    try:
        return ipaddress.ip_network(cleaned, strict=strict)
    except ValueError as exc:
        reason = "has host bits set" if "host bits" in str(exc) else "is not a valid CIDR"
        raise MalformedValue(field, text, reason) from exc


def parse_span(field: str, text: str) -> tuple[IPAddress, IPAddress]:
    """Parse an IP, an ``a..b`` range or a CIDR into its first and last address."""
    cleaned = text.strip()
    if ".." in cleaned:
        low_text, _, high_text = cleaned.partition("..")
        low, high = parse_ip(field, low_text), parse_ip(field, high_text)
        if low.version != high.version:
            raise MalformedValue(field, text, "mixes IPv4 and IPv6 in one range")
        if int(low) > int(high):
            raise MalformedValue(field, text, "is a range whose start is after its end")
        return low, high
    if "/" in cleaned:
        network = parse_cidr(field, cleaned, strict=False)
        return network.network_address, network.broadcast_address
    address = parse_ip(field, cleaned)
    return address, address


def split_list(text: str) -> list[str]:
    """Split a comma-separated annotation value, dropping blanks."""
    return [item.strip() for item in text.split(",") if item.strip()]


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort and merge overlapping or touching intervals."""
    merged: list[Interval] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1] + 1:
            previous_low, previous_high = merged[-1]
            merged[-1] = (previous_low, max(previous_high, high))
        else:
            merged.append((low, high))
    return merged


def interval_total(intervals: Iterable[Interval]) -> int:
    """Number of integers covered by (already merged) intervals."""
    return sum(high - low + 1 for low, high in intervals)


def subtract_intervals(base: Sequence[Interval], removed: Sequence[Interval]) -> list[Interval]:
    """The parts of merged ``base`` not covered by merged ``removed``."""
    result: list[Interval] = []
    for low, high in base:
        cursor = low
        for r_low, r_high in removed:
            if r_high < cursor or r_low > high:
                continue
            if r_low > cursor:
                result.append((cursor, r_low - 1))
            cursor = max(cursor, r_high + 1)
            if cursor > high:
                break
        if cursor <= high:
            result.append((cursor, high))
    return result


def clip_intervals(intervals: Iterable[Interval], low: int, high: int) -> list[Interval]:
    """Intersect intervals with ``[low, high]``."""
    return [
        (max(a, low), min(b, high)) for a, b in intervals if b >= low and a <= high
    ]


def covers(intervals: Sequence[Interval], value: int) -> bool:
    """Whether ``value`` lies in any of the merged, sorted intervals (binary search)."""
    low, high = 0, len(intervals) - 1
    while low <= high:
        middle = (low + high) // 2
        a, b = intervals[middle]
        if value < a:
            high = middle - 1
        elif value > b:
            low = middle + 1
        else:
            return True
    return False
