"""Typed views of what the IPAM stores: allocations and subnet utilisation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, TypedDict

from ipam import annotations as keys
from ipam.addresses import Family, IPAddress
from ipam.subnet import SubnetSpec

State = Literal["reserved", "bound", "kept"]


class RawRecord(TypedDict, total=False):
    """An allocation as the Lua scripts store it (short keys keep Redis small)."""

    t: str  # token
    s: State
    a: dict[str, str]  # family -> offset
    m: str  # mac
    x: int  # reservation deadline, ms since the epoch (0 once bound)
    u: str  # pod uid
    n: str  # pod namespace
    p: str  # pod name
    k: str  # StatefulSet key namespace/sts/ordinal
    c: int  # created, ms since the epoch


@dataclass(frozen=True)
class Allocation:
    """One pod's addresses and MAC in one subnet."""

    token: str
    subnet: str
    state: State
    ips: tuple[IPAddress, ...]
    mac: str
    namespace: str
    name: str
    uid: str
    sticky_key: str
    since_ms: int
    expires_ms: int

    @property
    def owner(self) -> str:
        """Who holds it, in the words of a denial message."""
        if self.name:
            return f"pod {self.namespace}/{self.name}"
        if self.sticky_key:
            return f"StatefulSet ordinal {self.sticky_key}"
        if self.namespace:
            return f"a pod being created in namespace {self.namespace}"
        return f"reservation {self.token}"

    def ip_strings(self) -> list[str]:
        return [str(ip) for ip in self.ips]

    def to_json(self) -> dict[str, object]:
        return {
            "ips": self.ip_strings(),
            "mac": self.mac,
            "subnet": self.subnet,
            "state": self.state,
            "owner": {"namespace": self.namespace, "name": self.name, "uid": self.uid}
            if self.name
            else None,
            "reservation": self.token,
            "statefulset_key": self.sticky_key or None,
            "since_ms": self.since_ms,
            "expires_ms": self.expires_ms or None,
        }


def allocation_from_raw(raw: RawRecord, subnet: SubnetSpec) -> Allocation:
    ips: list[IPAddress] = []
    for layout in subnet.families:
        offset = raw.get("a", {}).get(str(layout.family))
        if offset is not None:
            ips.append(layout.address_at(int(offset)))
    return Allocation(
        token=raw.get("t", ""),
        subnet=subnet.name,
        state=raw.get("s", "reserved"),
        ips=tuple(ips),
        mac=raw.get("m", ""),
        namespace=raw.get("n", "") or "",
        name=raw.get("p", "") or "",
        uid=raw.get("u", "") or "",
        sticky_key=raw.get("k", "") or "",
        since_ms=int(raw.get("c", 0) or 0),
        expires_ms=int(raw.get("x", 0) or 0),
    )


def decode_raw(text: str | bytes) -> RawRecord:
    value: RawRecord = json.loads(text)
    return value


@dataclass(frozen=True)
class FamilyUsage:
    """Utilisation of one address family of a subnet."""

    family: Family
    cidr: str
    total: int
    used: int
    reserved: int
    excluded: int

    @property
    def free(self) -> int:
        return max(self.total - self.used - self.reserved, 0)

    def to_json(self) -> dict[str, object]:
        return {
            "family": f"IPv{self.family}",
            "cidr": self.cidr,
            "total": self.total,
            "used": self.used,
            "reserved": self.reserved,
            "free": self.free,
            "excluded": self.excluded,
        }


@dataclass(frozen=True)
class SubnetUsage:
    """A subnet with its utilisation per family; the first family is the headline."""

    spec: SubnetSpec
    families: tuple[FamilyUsage, ...]
    kept: int
    fenced: bool

    def to_json(self) -> dict[str, object]:
        head = self.families[0]
        return {
            "name": self.spec.name,
            "cidrBlock": self.spec.cidr_block,
            "gateway": self.spec.gateway,
            "protocol": self.spec.protocol,
            "total": head.total,
            "used": head.used,
            "reserved": head.reserved,
            "free": head.free,
            "excluded": head.excluded,
            "kept": self.kept,
            "fenced": self.fenced,
            "families": [usage.to_json() for usage in self.families],
        }


def allocation_annotations(allocation: Allocation, subnet: SubnetSpec) -> dict[str, str]:
    """What podnet writes into the pod for ``allocation``."""
    return {
        keys.ALLOCATED: "true",
        keys.IP_ADDRESS: ",".join(allocation.ip_strings()),
        keys.MAC_ADDRESS: allocation.mac,
        keys.CIDR: subnet.cidr_block,
        keys.GATEWAY: subnet.gateway,
        keys.LOGICAL_SWITCH: subnet.name,
        keys.RESERVATION: allocation.token,
    }
