"""What a caller asks the allocator for, validated before anything touches Redis.

A static request is checked here, exactly (IPv6 offsets can exceed what the Lua side
can represent): syntax, one address per family, inside the subnet, not excluded, not
the gateway. Only "is it already taken" is left to the atomic script.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ipam import annotations as keys
from ipam.addresses import IPAddress, parse_ip, split_list
from ipam.errors import ExcludedAddress, GatewayAddress, MalformedValue, OutsideSubnet
from ipam.mac import normalize_mac
from ipam.pool import Pool
from ipam.subnet import SubnetSpec


@dataclass(frozen=True)
class ReserveRequest:
    """Any free address (the default), given addresses, or one from a pool.

    ``sticky_key`` (``namespace/statefulset/ordinal``) keeps the allocation for the
    next pod of the same ordinal; a kept allocation is handed over before anything
    else is considered. ``offsets`` are ``static_ips`` as offsets into the subnet,
    when the caller has already checked them (:func:`static_request`).
    """

    static_ips: tuple[IPAddress, ...] = ()
    mac: str | None = None
    pool: Pool | None = None
    sticky_key: str = ""
    field: str = keys.IP_ADDRESS
    offsets: Mapping[str, str] | None = None


def static_request(
    subnet: SubnetSpec, addresses: tuple[IPAddress, ...], *, mac: str | None = None,
    sticky_key: str = "", field: str = keys.IP_ADDRESS,
) -> ReserveRequest:
    """A request for ``addresses`` of ``subnet``, checked once, offsets carried along."""
    return ReserveRequest(
        static_ips=addresses, mac=mac, sticky_key=sticky_key, field=field,
        offsets=static_offsets(subnet, addresses, field),
    )


def parse_static_ips(value: str, field: str = keys.IP_ADDRESS) -> tuple[IPAddress, ...]:
    """``10.16.0.15`` or ``10.16.0.15,fd00:10:16::f``; at most one per family."""
    items = split_list(value)
    if not items:
        raise MalformedValue(field, value, "is empty")
    addresses = tuple(parse_ip(field, item) for item in items)
    versions = [address.version for address in addresses]
    if len(set(versions)) != len(versions) or len(addresses) > 2:
        raise MalformedValue(field, value, "must hold at most one IPv4 and one IPv6 address")
    return addresses


def static_offsets(
    subnet: SubnetSpec, addresses: tuple[IPAddress, ...], field: str = keys.IP_ADDRESS
) -> dict[str, str]:
    """The offsets to reserve for static ``addresses``, or the typed error why not."""
    offsets: dict[str, str] = {}
    for address in addresses:
        layout = subnet.layout_for(address)
        if layout is None:
            raise OutsideSubnet(
                field, address, f"is outside subnet {subnet.name} ({subnet.cidr_block})"
            )
        if address == layout.gateway:
            raise GatewayAddress(field, address, f"is the gateway of subnet {subnet.name}")
        offset = layout.offset_of(address)
        if layout.is_excluded(offset):
            raise ExcludedAddress(
                field, address, f"is excluded in subnet {subnet.name} (excludeIps, network "
                "or broadcast address)"
            )
        offsets[str(layout.family)] = str(offset)
    return offsets


def static_mac(value: str | None) -> str | None:
    return None if value is None else normalize_mac(value)
