"""Subnets as Kube-OVN users write them, validated and turned into allocator layouts.

``parse_subnet`` reads a ``kubeovn.io/v1 Subnet`` object (a plain mapping, as it comes
from YAML or the Kubernetes API) into a ``SubnetSpec``. Fields that would change
networking in ways podnet does not implement are refused by name rather than ignored:
a silently dropped field is a network that behaves differently from what the user
asked for.

``FamilyLayout`` is what the allocator needs per address family: the network, the
gateway and the offsets that are never handed out (network and broadcast addresses,
the gateway, ``excludeIps``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ipam.addresses import (
    Family,
    Interval,
    IPAddress,
    IPNetwork,
    clip_intervals,
    covers,
    interval_total,
    merge_intervals,
    parse_cidr,
    parse_ip,
    parse_span,
    split_list,
)
from ipam.errors import GatewayAddress, InvalidInput, MalformedValue, SubnetOverlap
from ipam.subnet_acl import SubnetAcl, parse_acls

MAX_CURSOR_SPAN = 2**52
"""Offsets the dynamic allocator walks in one family: far beyond any cluster, and exact
as a Lua number. Static requests may still name any address of a larger subnet."""

GatewayType = Literal["distributed", "centralized"]

DEFAULT_SUBNET = "ovn-default"
DEFAULT_CIDR = "10.16.0.0/16"
JOIN_SUBNET = "join"
JOIN_CIDR = "100.64.0.0/16"

_BUILTIN_CIDRS = {DEFAULT_SUBNET: DEFAULT_CIDR, JOIN_SUBNET: JOIN_CIDR}
WIDEST_PREFIX: dict[int, int] = {4: 8, 6: 32}
"""The widest pod subnet of each family. Each subnet's CIDR is routed into the pod
network on every node: ``0.0.0.0/0``, ``::/0`` or ``fc00::/8`` would take the node's
own routes with it."""
_NOT_FOR_PODS = tuple((ipaddress.ip_network(cidr), reason) for cidr, reason in (
    ("0.0.0.0/8", "this network"), ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"), ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"), ("::/127", "unspecified and loopback"),
    ("fe80::/10", "link-local"), ("ff00::/8", "multicast"),
))
"""The built-in subnets keep their CIDR when an edit leaves ``cidrBlock`` out."""

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", re.ASCII)

_SUPPORTED_FIELDS = frozenset(
    {
        "cidrBlock", "gateway", "excludeIps", "namespaces", "protocol", "private",
        "allowSubnets", "natOutgoing", "gatewayType", "gatewayNode",
        "disableInterConnection", "nodeSelector", "default", "acls", "allowEWTraffic",
    }
)
# Fields that do not change how podnet wires the network (checks and bookkeeping
# podnet does not perform), accepted whatever their value.
_INERT_FIELDS = frozenset({"disableGatewayCheck", "enableAddressSet"})
# Fields podnet leaves unimplemented but accepts at their default (off) value.
_DEFAULT_ONLY_FIELDS: Mapping[str, tuple[object, ...]] = {
    "vpc": ("", None, "ovn-cluster"),
    "provider": ("", None, "ovn"),
    "routeTable": ("", None),
    "vlan": ("", None),
    "logicalGateway": (False, None),
    "u2oInterconnection": (False, None),
    "enableMulticastSnoop": (False, None),
    "enableDHCP": (False, None),
    "enableIPv6RA": (False, None),
    "enableLb": (True, None),
    "enableEcmp": (False, None),
    "externalEgressGateway": ("", None),
    "mtu": (0, None),
}


def object_name(obj: Mapping[str, Any]) -> object:
    """``metadata.name`` of an object, or None when the object has no usable metadata."""
    metadata = obj.get("metadata")
    return metadata.get("name") if isinstance(metadata, Mapping) else None


def validate_name(field_name: str, value: object) -> str:
    """A Kubernetes object name (DNS subdomain), as subnet and pool names must be."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise MalformedValue(
            field_name, value, "is not a valid name (lowercase letters, digits, '-', '.')"
        )
    return value


@dataclass(frozen=True)
class FamilyLayout:
    """One address family of a subnet, with everything the allocator must avoid."""

    network: IPNetwork
    gateway: IPAddress
    excluded: tuple[Interval, ...]
    """Merged offsets never handed out: network/broadcast, gateway, excludeIps."""

    @property
    def family(self) -> Family:
        return 4 if self.network.version == 4 else 6

    @property
    def size(self) -> int:
        return self.network.num_addresses

    @property
    def cursor_span(self) -> int:
        """How many offsets the dynamic allocator walks (capped for huge subnets)."""
        return min(self.size, MAX_CURSOR_SPAN)

    @property
    def usable(self) -> int:
        return self.size - interval_total(self.excluded)

    @property
    def excluded_count(self) -> int:
        return interval_total(self.excluded)

    def offset_of(self, address: IPAddress) -> int:
        return int(address) - int(self.network.network_address)

    def address_at(self, offset: int) -> IPAddress:
        return self.network.network_address + offset

    def is_excluded(self, offset: int) -> bool:
        return covers(self.excluded, offset)

    def allocator_config(self) -> dict[str, Any]:
        """The part of the layout the Lua scripts read: cursor span and exclusions."""
        span = self.cursor_span
        return {"size": span, "excl": [list(i) for i in clip_intervals(self.excluded, 0, span - 1)]}


@dataclass(frozen=True)
class SubnetSpec:
    """A validated ``kubeovn.io/v1 Subnet`` (the fields podnet honours)."""

    name: str
    families: tuple[FamilyLayout, ...]
    exclude_ips: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    private: bool = False
    allow_subnets: tuple[str, ...] = ()
    nat_outgoing: bool = False
    gateway_type: GatewayType = "distributed"
    gateway_node: str = ""
    disable_inter_connection: bool = False
    node_selector: Mapping[str, str] = field(default_factory=dict)
    default: bool = False
    acls: tuple[SubnetAcl, ...] = ()
    """``spec.acls``, validated (``ipam.subnet_acl``): ACLs on the subnet's switch."""
    allow_ew_traffic: bool = False
    """With ``acls``: allow traffic within the subnet above them (Kube-OVN's 1900)."""

    @property
    def cidr_block(self) -> str:
        return ",".join(str(layout.network) for layout in self.families)

    @property
    def gateway(self) -> str:
        return ",".join(str(layout.gateway) for layout in self.families)

    @property
    def protocol(self) -> str:
        if len(self.families) == 2:
            return "Dual"
        return "IPv4" if self.families[0].family == 4 else "IPv6"

    def layout(self, family: Family) -> FamilyLayout | None:
        for candidate in self.families:
            if candidate.family == family:
                return candidate
        return None

    def layout_for(self, address: IPAddress) -> FamilyLayout | None:
        """The family layout whose network contains ``address``, if any."""
        for candidate in self.families:
            if candidate.network.version == address.version and address in candidate.network:
                return candidate
        return None

    def allocator_config(self) -> dict[str, Any]:
        return {str(layout.family): layout.allocator_config() for layout in self.families}

    def policy_fields(self) -> dict[str, Any]:
        """The Subnet ``spec`` fields besides the CIDR and gateway (who gets the subnet's
        addresses and how they leave), in Kube-OVN's names."""
        return {
            "excludeIps": list(self.exclude_ips),
            "namespaces": list(self.namespaces),
            "private": self.private,
            "allowSubnets": list(self.allow_subnets),
            "natOutgoing": self.nat_outgoing,
            "gatewayType": self.gateway_type,
            "gatewayNode": self.gateway_node,
            "disableInterConnection": self.disable_inter_connection,
            "nodeSelector": dict(self.node_selector),
            "default": self.default,
            "acls": [acl.to_json() for acl in self.acls],
            "allowEWTraffic": self.allow_ew_traffic,
        }


def default_subnet() -> SubnetSpec:
    """``ovn-default`` as podnet creates it when nothing else is configured."""
    return build_subnet(DEFAULT_SUBNET, DEFAULT_CIDR, nat_outgoing=True, default=True)


def build_subnet(name: str, cidr_block: str, **options: Any) -> SubnetSpec:
    """Convenience for code and tests: a subnet from a name and a ``cidrBlock``."""
    spec: dict[str, Any] = {"cidrBlock": cidr_block}
    for key, value in options.items():
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
        spec[camel] = value
    return parse_subnet({"kind": "Subnet", "metadata": {"name": name}, "spec": spec})


def parse_subnet(obj: Mapping[str, Any]) -> SubnetSpec:
    """Validate a Subnet object; every error names the offending field."""
    name = validate_name("metadata.name", object_name(obj))
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise MalformedValue("spec", spec, f"Subnet {name} has no spec")
    _refuse_unsupported(spec)
    networks = _parse_cidr_block(spec.get("cidrBlock") or _BUILTIN_CIDRS.get(name))
    _check_protocol(spec.get("protocol"), networks)
    gateways = _parse_gateways(spec.get("gateway"), networks)
    exclude_ips = _string_list("spec.excludeIps", spec.get("excludeIps"))
    excluded = _parse_excludes(exclude_ips, networks)
    families = tuple(
        _family_layout(network, gateways[network.version], excluded[network.version])
        for network in networks
    )
    gateway_type: GatewayType
    raw_gateway_type = spec.get("gatewayType") or "distributed"
    if raw_gateway_type == "distributed":
        gateway_type = "distributed"
    elif raw_gateway_type == "centralized":
        gateway_type = "centralized"
    else:
        raise MalformedValue(
            "spec.gatewayType", raw_gateway_type, "must be distributed or centralized"
        )
    gateway_node = spec.get("gatewayNode") or ""
    if not isinstance(gateway_node, str):
        raise MalformedValue("spec.gatewayNode", gateway_node, "must be a string")
    if gateway_type == "centralized" and not gateway_node:
        raise MalformedValue(
            "spec.gatewayNode", gateway_node, "is required when gatewayType is centralized"
        )
    private = _bool("spec.private", spec.get("private"))
    acls = parse_acls(spec.get("acls"))
    if acls and private:
        raise InvalidInput(
            "spec.acls", f"{len(acls)} ACLs", "cannot be combined with private: true in "
            "podnet (Kube-OVN puts a private subnet's own ACLs at 1000-1001 and 2004, on "
            "both sides of these; podnet does not interleave them): use one or the other")
    return SubnetSpec(
        name=name,
        families=families,
        exclude_ips=tuple(exclude_ips),
        namespaces=tuple(_string_list("spec.namespaces", spec.get("namespaces"))),
        private=private,
        allow_subnets=_cidr_list("spec.allowSubnets", spec.get("allowSubnets")),
        nat_outgoing=_bool("spec.natOutgoing", spec.get("natOutgoing")),
        gateway_type=gateway_type,
        gateway_node=gateway_node,
        disable_inter_connection=_bool(
            "spec.disableInterConnection", spec.get("disableInterConnection")
        ),
        node_selector=parse_node_selector("spec.nodeSelector", spec.get("nodeSelector")),
        default=_bool("spec.default", spec.get("default")),
        acls=acls,
        allow_ew_traffic=_bool("spec.allowEWTraffic", spec.get("allowEWTraffic")),
    )


def parse_node_selector(field_name: str, value: object) -> dict[str, str]:
    """podnet's ``nodeSelector``: a map of node labels, as in a Pod's nodeSelector."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedValue(field_name, value, "must be a map of node label to value")
    selector: dict[str, str] = {}
    for key, label_value in value.items():
        if not isinstance(key, str) or not isinstance(label_value, str):
            raise MalformedValue(
                f"{field_name}.{key}", label_value, "labels and values must be strings"
            )
        selector[key] = label_value
    return selector


def check_no_overlap(candidate: SubnetSpec, others: Iterable[SubnetSpec]) -> None:
    """Refuse ``candidate`` if any of its CIDRs overlaps another subnet's."""
    for other in others:
        if other.name == candidate.name:
            continue
        for mine in candidate.families:
            for theirs in other.families:
                if mine.network.version == theirs.network.version and mine.network.overlaps(
                    theirs.network
                ):
                    raise SubnetOverlap(
                        "spec.cidrBlock",
                        mine.network,
                        f"subnet {candidate.name} overlaps subnet {other.name} "
                        f"({theirs.network})",
                    )


def _refuse_unsupported(spec: Mapping[str, Any]) -> None:
    for key, value in spec.items():
        if key in _SUPPORTED_FIELDS or key in _INERT_FIELDS:
            continue
        allowed = _DEFAULT_ONLY_FIELDS.get(key)
        if allowed is not None and value in allowed:
            continue
        raise InvalidInput(
            f"spec.{key}", _short(value), "is not supported by podnet (remove it, or "
            "keep it at its default)" if allowed is not None else
            "is not supported by podnet",
        )


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_cidr_block(value: object) -> list[IPNetwork]:
    if not isinstance(value, str) or not value.strip():
        raise MalformedValue("spec.cidrBlock", value, "is required (a CIDR, or v4,v6)")
    networks = [parse_cidr("spec.cidrBlock", item) for item in split_list(value)]
    versions = [network.version for network in networks]
    if len(networks) > 2 or len(set(versions)) != len(versions):
        raise MalformedValue(
            "spec.cidrBlock", value, "must hold at most one IPv4 and one IPv6 CIDR"
        )
    for network in networks:
        if network.num_addresses < 4:
            raise MalformedValue("spec.cidrBlock", network, "is too small for pods")
        if network.prefixlen < WIDEST_PREFIX[network.version]:
            raise MalformedValue(
                "spec.cidrBlock", network, f"is wider than /{WIDEST_PREFIX[network.version]}, "
                "the widest pod subnet (its route would take the nodes' own)")
        for special, reason in _NOT_FOR_PODS:
            if network.version == special.version and network.overlaps(special):
                raise MalformedValue("spec.cidrBlock", network,
                                     f"overlaps {special}, which is {reason}")
    return networks


def check_cluster_networks(
    candidate: SubnetSpec, taken: Iterable[tuple[str, IPNetwork]]
) -> None:
    """Refuse ``candidate`` if a CIDR of it overlaps a network the cluster uses for
    something else (``taken``: what it is, the network): the join subnet, the Service
    CIDRs, the nodes' addresses. A pod subnet there would route them into pods."""
    for mine in candidate.families:
        for what, network in taken:
            if mine.network.version == network.version and mine.network.overlaps(network):
                raise SubnetOverlap("spec.cidrBlock", mine.network,
                                    f"subnet {candidate.name} overlaps {what} ({network})")


def _check_protocol(value: object, networks: Sequence[IPNetwork]) -> None:
    if value in (None, ""):
        return
    expected = {4: "IPv4", 6: "IPv6"}[networks[0].version] if len(networks) == 1 else "Dual"
    if value != expected:
        raise MalformedValue(
            "spec.protocol", value, f"does not match cidrBlock (which is {expected})"
        )


def _parse_gateways(value: object, networks: Sequence[IPNetwork]) -> dict[int, IPAddress]:
    gateways: dict[int, IPAddress] = {
        network.version: network.network_address + 1 for network in networks
    }
    if value in (None, ""):
        return gateways
    if not isinstance(value, str):
        raise MalformedValue("spec.gateway", value, "must be a string")
    by_version = {network.version: network for network in networks}
    for item in split_list(value):
        address = parse_ip("spec.gateway", item)
        network = by_version.get(address.version)
        if network is None or address not in network:
            raise GatewayAddress(
                "spec.gateway", address, f"is outside cidrBlock {','.join(map(str, networks))}"
            )
        if address in (network.network_address, network.broadcast_address):
            raise GatewayAddress(
                "spec.gateway", address, "is the network or broadcast address"
            )
        gateways[address.version] = address
    return gateways


def _parse_excludes(
    items: Sequence[str], networks: Sequence[IPNetwork]
) -> dict[int, list[Interval]]:
    excluded: dict[int, list[Interval]] = {network.version: [] for network in networks}
    for index, item in enumerate(items):
        field_name = f"spec.excludeIps[{index}]"
        low, high = parse_span(field_name, item)
        network = next((n for n in networks if n.version == low.version), None)
        if network is None or low not in network or high not in network:
            raise MalformedValue(
                field_name, item, f"is outside cidrBlock {','.join(map(str, networks))}"
            )
        base = int(network.network_address)
        excluded[low.version].append((int(low) - base, int(high) - base))
    return excluded


def _family_layout(
    network: IPNetwork, gateway: IPAddress, excluded: list[Interval]
) -> FamilyLayout:
    base = int(network.network_address)
    reserved: list[Interval] = [(0, 0), (int(gateway) - base, int(gateway) - base)]
    if network.version == 4:
        last = network.num_addresses - 1
        reserved.append((last, last))
    return FamilyLayout(network, gateway, tuple(merge_intervals(reserved + excluded)))


def _string_list(field_name: str, value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return split_list(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedValue(field_name, value, "must be a list of strings")
    return [v.strip() for v in value if v.strip()]


def _cidr_list(field_name: str, value: object) -> tuple[str, ...]:
    return tuple(
        str(parse_cidr(f"{field_name}[{index}]", item, strict=False))
        for index, item in enumerate(_string_list(field_name, value))
    )


def _bool(field_name: str, value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise MalformedValue(field_name, value, "must be true or false")
    return value
