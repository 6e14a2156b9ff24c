"""IP pools: the ``ip_pool`` annotation and ``kubeovn.io/v1 IPPool`` objects.

A pool is an ordered list of *entries*. An entry is what one pod may get: a single
address, a range or a CIDR of one family, or (Kube-OVN's dual-stack form
``v4,v6;v4,v6``) one address of each family. Deployment-like pods take the first entry
with a free address; StatefulSet pod ``<sts>-<N>`` takes *position* N, where ranges
count one position per address, so ``10.0.0.10..10.0.0.12`` gives ordinals 0 to 2.

Annotation grammar: with a ``;`` anywhere, ``;`` separates pods and ``,`` separates one
pod's addresses; without one, every ``,``-separated item is its own entry. An item may
instead be the name of an IPPool object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ipam import annotations as keys
from ipam.addresses import Family, IPAddress, merge_intervals, parse_span, split_list
from ipam.errors import ExcludedAddress, GatewayAddress, MalformedValue, OutsideSubnet
from ipam.subnet import (
    MAX_CURSOR_SPAN,
    SubnetSpec,
    object_name,
    parse_node_selector,
    validate_name,
)


@dataclass(frozen=True)
class Span:
    """Offsets ``low..high`` (inclusive) of one family of the subnet."""

    family: Family
    low: int
    high: int

    @property
    def count(self) -> int:
        return self.high - self.low + 1


@dataclass(frozen=True)
class PoolEntry:
    """What one pod may get: a span of one family, or one address per family."""

    spans: tuple[Span, ...]

    @property
    def positions(self) -> int:
        return max(span.count for span in self.spans)


@dataclass(frozen=True)
class Pool:
    """An ordered pool resolved against its subnet."""

    name: str
    subnet: str
    entries: tuple[PoolEntry, ...]

    @property
    def size(self) -> int:
        return sum(entry.positions for entry in self.entries)

    def position(self, ordinal: int) -> dict[Family, int] | None:
        """The offsets of position ``ordinal`` (a StatefulSet ordinal), if the pool has it."""
        remaining = ordinal
        for entry in self.entries:
            if remaining < entry.positions:
                return {
                    span.family: span.low + min(remaining, span.count - 1) for span in entry.spans
                }
            remaining -= entry.positions
        return None

    def lua_entries(self) -> list[list[list[Any]]]:
        """Entries for the reserve script: ``[[family, low, high], ...]`` per entry.

        Offsets travel as decimal strings: an IPv6 offset may exceed a Lua number.
        """
        return [
            [[str(span.family), str(span.low), str(span.high)] for span in entry.spans]
            for entry in self.entries
        ]


@dataclass(frozen=True)
class IPPoolSpec:
    """A validated ``kubeovn.io/v1 IPPool``."""

    name: str
    subnet: str
    ips: tuple[str, ...]
    namespaces: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)

    def resolve(self, subnet: SubnetSpec) -> Pool:
        entries = tuple(
            _entry(f"IPPool {self.name} spec.ips[{index}]", [item], subnet)
            for index, item in enumerate(self.ips)
        )
        return Pool(self.name, subnet.name, entries)


_IPPOOL_FIELDS = frozenset({"subnet", "ips", "namespaces", "nodeSelector", "enableAddressSet"})


def parse_ippool(obj: Mapping[str, Any]) -> IPPoolSpec:
    """Validate an IPPool object (its addresses are checked by ``resolve``)."""
    name = validate_name("metadata.name", object_name(obj))
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise MalformedValue("spec", spec, f"IPPool {name} has no spec")
    for key in spec:
        if key not in _IPPOOL_FIELDS:
            raise MalformedValue(f"spec.{key}", spec[key], "is not supported by podnet")
    subnet = validate_name("spec.subnet", spec.get("subnet"))
    ips = spec.get("ips")
    if not isinstance(ips, list) or not ips or not all(isinstance(i, str) for i in ips):
        raise MalformedValue("spec.ips", ips, "must be a non-empty list of IPs, ranges or CIDRs")
    namespaces = spec.get("namespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise MalformedValue("spec.namespaces", namespaces, "must be a list of namespace names")
    return IPPoolSpec(
        name=name,
        subnet=subnet,
        ips=tuple(ips),
        namespaces=tuple(namespaces),
        node_selector=parse_node_selector("spec.nodeSelector", spec.get("nodeSelector")),
    )


def looks_like_pool_name(value: str) -> bool:
    """An ``ip_pool`` value naming an IPPool rather than listing addresses."""
    cleaned = value.strip()
    return bool(cleaned) and not any(ch in cleaned for ch in ",;:/") and not _is_ipv4ish(cleaned)


def parse_pool_annotation(value: str, subnet: SubnetSpec) -> Pool:
    """Resolve an inline ``ip_pool`` annotation against the pod's subnet."""
    if ";" in value:
        groups = [split_list(group) for group in value.split(";") if group.strip()]
    else:
        groups = [[item] for item in split_list(value)]
    if not groups:
        raise MalformedValue(keys.IP_POOL, value, "lists no address")
    entries = tuple(_entry(keys.IP_POOL, group, subnet) for group in groups)
    return Pool("", subnet.name, entries)


def _entry(field_name: str, items: Sequence[str], subnet: SubnetSpec) -> PoolEntry:
    spans: list[Span] = []
    for item in items:
        low, high = parse_span(field_name, item)
        layout = subnet.layout_for(low)
        if layout is None or high not in layout.network:
            raise OutsideSubnet(
                field_name, item, f"is outside subnet {subnet.name} ({subnet.cidr_block})"
            )
        if any(span.family == layout.family for span in spans):
            raise MalformedValue(field_name, ",".join(items), "has two addresses of one family")
        span = Span(layout.family, layout.offset_of(low), layout.offset_of(high))
        if span.low == span.high:
            excluded = layout.is_excluded(span.low)
            _check_single(field_name, low, subnet.name, excluded, layout.gateway)
        elif span.high >= MAX_CURSOR_SPAN:
            raise MalformedValue(
                field_name, item,
                f"ranges must lie in the first 2^52 addresses of subnet {subnet.name}",
            )
        if len(items) > 1 and span.count != 1:
            raise MalformedValue(
                field_name, ",".join(items), "a dual-stack pair must name single addresses"
            )
        spans.append(span)
    return PoolEntry(tuple(spans))


def _check_single(
    field_name: str, address: IPAddress, subnet: str, excluded: bool, gateway: IPAddress
) -> None:
    if address == gateway:
        raise GatewayAddress(field_name, address, f"is the gateway of subnet {subnet}")
    if excluded:
        raise ExcludedAddress(field_name, address, f"is excluded in subnet {subnet}")


def _is_ipv4ish(value: str) -> bool:
    return value.replace(".", "").isdigit()


def pooled_intervals(subnet: SubnetSpec, pools: Sequence[Pool]) -> dict[str, list[list[int]]]:
    """Per family, the merged offsets that the subnet's IPPools hold (within the span the
    dynamic allocator walks), for the scripts to skip."""
    by_family: dict[int, list[tuple[int, int]]] = {}
    for pool in pools:
        for entry in pool.entries:
            for span in entry.spans:
                layout = subnet.layout(span.family)
                if layout is not None and span.low < layout.cursor_span:
                    high = min(span.high, layout.cursor_span - 1)
                    by_family.setdefault(span.family, []).append((span.low, high))
    return {
        str(family): [list(i) for i in merge_intervals(intervals)]
        for family, intervals in by_family.items()
    }
