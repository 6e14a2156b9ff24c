"""The OVN northbound rows podnet owns, as plain values.

Desired state is built from these (``podnet_sync.topology``) and the NB adapter diffs them
against what the database holds. Rows are compared by value, so a diff is a set
operation; every row carries ``external_ids`` marking podnet as its owner, which is how
a reconcile finds what to delete and never touches a row someone else made.
``Load_Balancer_Group`` has no ``external_ids`` column in OVN's schema: podnet owns
exactly the group named ``podnet-cluster-lbs``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

OWNER_KEY = "podnet.io/owner"
OWNER = "podnet"
KIND_KEY = "podnet.io/kind"
SWITCH_KEY = "podnet.io/switch"
"""On switch ports: the switch that holds them (OVN has no back-reference)."""
LB_GROUP = "podnet-cluster-lbs"
CLUSTER_ROUTER = "ovn-cluster"
"""The one router podnet owns."""

Pairs = tuple[tuple[str, str], ...]


def pairs(mapping: Mapping[str, str]) -> Pairs:
    """A mapping as a sorted, hashable tuple of pairs."""
    return tuple(sorted(mapping.items()))


def owned(kind: str, **extra: str) -> Pairs:
    return pairs({OWNER_KEY: OWNER, KIND_KEY: kind, **extra})


def derived_mac(seed: str) -> str:
    """A stable locally administered unicast MAC for a router or node port."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "0a:58:" + ":".join(f"{b:02x}" for b in digest[:4])


@dataclass(frozen=True)
class Switch:
    name: str
    external_ids: Pairs
    other_config: Pairs = ()


@dataclass(frozen=True)
class SwitchPort:
    name: str
    switch: str
    addresses: tuple[str, ...]
    external_ids: Pairs
    port_security: tuple[str, ...] = ()
    type: str = ""
    options: Pairs = ()


@dataclass(frozen=True)
class Router:
    name: str
    external_ids: Pairs


@dataclass(frozen=True)
class RouterPort:
    name: str
    router: str
    mac: str
    networks: tuple[str, ...]
    external_ids: Pairs


@dataclass(frozen=True)
class LoadBalancer:
    name: str
    protocol: str
    vips: Pairs
    external_ids: Pairs
    options: Pairs = ()


@dataclass(frozen=True)
class Acl:
    """An ACL on a switch; ``key`` (in external_ids) identifies it across reconciles."""

    switch: str
    key: str
    priority: int
    direction: str
    match: str
    action: str


@dataclass(frozen=True)
class RouterPolicy:
    router: str
    key: str
    priority: int
    match: str
    action: str
    nexthops: tuple[str, ...] = ()


@dataclass(frozen=True)
class StaticRoute:
    """A router's static route; ``key`` (in external_ids) identifies it."""

    router: str
    key: str
    ip_prefix: str
    nexthop: str


@dataclass(frozen=True)
class AddressSet:
    name: str
    addresses: tuple[str, ...]
    external_ids: Pairs


@dataclass(frozen=True)
class GroupAcl:
    """An ACL on a port group; ``key`` (in external_ids) identifies it across reconciles.

    ``name``, ``severity`` and ``meter`` are empty unless ``log`` is set."""

    key: str
    priority: int
    direction: str
    match: str
    action: str
    options: Pairs = ()
    log: bool = False
    severity: str = ""
    name: str = ""
    meter: str = ""


@dataclass(frozen=True)
class PortGroup:
    """A named group of switch ports and the ACLs that apply to them (NetworkPolicy).

    ``ports`` are switch port names; the NB adapter writes those that exist."""

    name: str
    ports: tuple[str, ...]
    external_ids: Pairs
    acls: tuple[GroupAcl, ...] = ()


@dataclass(frozen=True)
class Meter:
    """A packet-rate limit (a single drop band), used to rate-limit ACL logging."""

    name: str
    rate: int
    external_ids: Pairs
    unit: str = "pktps"
    fair: bool = True


@dataclass
class DesiredState:
    """Every row podnet wants in the NB database, keyed by its identity."""

    routers: dict[str, Router] = field(default_factory=dict)
    router_ports: dict[str, RouterPort] = field(default_factory=dict)
    switches: dict[str, Switch] = field(default_factory=dict)
    switch_ports: dict[str, SwitchPort] = field(default_factory=dict)
    load_balancers: dict[str, LoadBalancer] = field(default_factory=dict)
    acls: dict[str, Acl] = field(default_factory=dict)
    policies: dict[str, RouterPolicy] = field(default_factory=dict)
    static_routes: dict[str, StaticRoute] = field(default_factory=dict)
    address_sets: dict[str, AddressSet] = field(default_factory=dict)
    port_groups: dict[str, PortGroup] = field(default_factory=dict)
    policy_address_sets: dict[str, AddressSet] = field(default_factory=dict)
    """NetworkPolicy peers' addresses; reconciled with ``port_groups``, not with the
    gateways' ``address_sets``."""
    meters: dict[str, Meter] = field(default_factory=dict)
    policy_set_changes: dict[str, tuple[frozenset[str], frozenset[str]]] = field(
        default_factory=dict)
    """Address set name -> (addresses added, removed) since the content the writer last
    wrote, when the caller knows it: the row is then mutated without being read (its
    full content stays in ``policy_address_sets`` for a row found missing)."""
    policy_group_changes: dict[str, tuple[frozenset[str], frozenset[str]]] = field(
        default_factory=dict)
    """Port group name -> (ports added, removed), alike, when nothing else of the group
    changed (its ACLs are then not read either)."""
    skipped: list[str] = field(default_factory=list)
    """Objects left out, with the reason (logged by the worker)."""
