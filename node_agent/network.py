"""A pod's network as the agent plumbs it: addresses with prefixes, gateways, MAC, limits.

The webhook decided all of it at admission and wrote it into the pod's annotations
(``ip_address``, ``mac_address``, ``cidr``, ``gateway``, ``logical_switch``, the keys of
``ipam.annotations``); standalone, the same comes from the IPAM's allocation and its
subnet. Both paths end in one :class:`PodNetwork`, checked here once: an address outside
its CIDR or a gateway of the wrong family is refused with the annotation named, before
any netlink call.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ipam import annotations as keys
from ipam import names
from ipam.subnet import SubnetSpec
from node_agent.qos import Bandwidth, InvalidRate, bandwidth_from_annotations

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidPodNetwork(ValueError):
    """The pod's annotations (or allocation) cannot be plumbed; the message says why."""


@dataclass(frozen=True)
class PodNetwork:
    namespace: str
    name: str
    subnet: str
    mac: str
    addresses: tuple[Interface, ...]
    """Each IP with its subnet's prefix length; at most one per family."""
    gateways: tuple[Address, ...]
    """One gateway per family of ``addresses``, in the same order."""
    bandwidth: Bandwidth = field(default_factory=Bandwidth)

    @property
    def port_name(self) -> str:
        return names.pod_port(self.name, self.namespace)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def gateway_for(self, family: int) -> Address | None:
        return next((gw for gw in self.gateways if gw.version == family), None)


def host_interface_name(container_id: str, ifname: str) -> str:
    """The host end of a pod's veth: stable per (container, ifname), 14 characters."""
    digest = hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()
    return f"pn{digest[:12]}"


def allocated(annotations: Mapping[str, str]) -> bool:
    return annotations.get(keys.ALLOCATED) == "true" and bool(annotations.get(keys.IP_ADDRESS))


def routed(annotations: Mapping[str, str]) -> bool:
    return annotations.get(keys.ROUTED) == "true"


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_list(key: str, text: str) -> list[Address]:
    try:
        return [ipaddress.ip_address(part) for part in _split(text)]
    except ValueError as exc:
        raise InvalidPodNetwork(f"{key} {text!r} is not a list of IP addresses") from exc


def _networks(text: str) -> list[Network]:
    try:
        return [ipaddress.ip_network(part, strict=False) for part in _split(text)]
    except ValueError as exc:
        raise InvalidPodNetwork(f"{keys.CIDR} {text!r} is not a list of CIDRs") from exc


def build_network(
    namespace: str, name: str, subnet: str, mac: str, ips: Sequence[Address],
    networks: Sequence[Network], gateways: Sequence[Address], bandwidth: Bandwidth,
) -> PodNetwork:
    """Pair every IP with its network and gateway; refuse what does not fit together."""
    if not ips:
        raise InvalidPodNetwork(f"{keys.IP_ADDRESS} is empty")
    if not mac:
        raise InvalidPodNetwork(f"{keys.MAC_ADDRESS} is missing")
    families = [ip.version for ip in ips]
    if len(set(families)) != len(families):
        raise InvalidPodNetwork(f"{keys.IP_ADDRESS} has two addresses of one family")
    addresses: list[Interface] = []
    gateway_list: list[Address] = []
    for ip in ips:
        network = next((n for n in networks if n.version == ip.version and ip in n), None)
        if network is None:
            raise InvalidPodNetwork(
                f"{keys.IP_ADDRESS} {ip} is in no CIDR of {keys.CIDR} "
                f"{','.join(map(str, networks)) or '(empty)'}")
        gateway = next((g for g in gateways if g.version == ip.version), None)
        if gateway is None or gateway not in network:
            raise InvalidPodNetwork(f"{keys.GATEWAY} has no IPv{ip.version} gateway in {network}")
        addresses.append(ipaddress.ip_interface(f"{ip}/{network.prefixlen}"))
        gateway_list.append(gateway)
    return PodNetwork(namespace, name, subnet, mac.lower(), tuple(addresses),
                      tuple(gateway_list), bandwidth)


def from_annotations(namespace: str, name: str, annotations: Mapping[str, str]) -> PodNetwork:
    """The network the webhook wrote into a pod; raises :class:`InvalidPodNetwork`."""
    try:
        bandwidth = bandwidth_from_annotations(annotations)
    except InvalidRate as exc:
        raise InvalidPodNetwork(str(exc)) from exc
    return build_network(
        namespace, name,
        subnet=annotations.get(keys.LOGICAL_SWITCH, ""),
        mac=annotations.get(keys.MAC_ADDRESS, ""),
        ips=_parse_list(keys.IP_ADDRESS, annotations.get(keys.IP_ADDRESS, "")),
        networks=_networks(annotations.get(keys.CIDR, "")),
        gateways=_parse_list(keys.GATEWAY, annotations.get(keys.GATEWAY, "")),
        bandwidth=bandwidth,
    )


def from_allocation(
    namespace: str, name: str, ips: Sequence[Address], mac: str, subnet: SubnetSpec,
    bandwidth: Bandwidth | None = None,
) -> PodNetwork:
    """The network of an IPAM allocation (standalone use: no pod object to read)."""
    return build_network(
        namespace, name, subnet.name, mac, ips,
        networks=[layout.network for layout in subnet.families],
        gateways=[layout.gateway for layout in subnet.families],
        bandwidth=bandwidth or Bandwidth(),
    )
