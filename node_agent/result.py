"""The CNI result of an ADD: interfaces, IPs, routes and DNS, in the caller's version.

CNI 1.0 results list the host and the sandbox interfaces, every IP with its gateway and
the index of its interface, and the routes. Results of 0.3.x/0.4.0 carry a ``version``
per IP; podnet answers in the version the configuration asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node_agent.network import PodNetwork

DEFAULT_ROUTE = {4: "0.0.0.0/0", 6: "::/0"}


@dataclass(frozen=True)
class Plugged:
    """What plugging made: the host end and the sandbox end of the veth."""

    host_ifname: str
    host_mac: str
    ifname: str
    netns: str


def build_result(
    cni_version: str, network: PodNetwork, plugged: Plugged, dns: Mapping[str, Any] | None
) -> dict[str, Any]:
    legacy = cni_version.startswith("0.")
    ips: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for address, gateway in zip(network.addresses, network.gateways, strict=True):
        entry: dict[str, Any] = {"address": str(address), "gateway": str(gateway),
                                 "interface": 1}
        if legacy:
            entry["version"] = str(address.version)
        ips.append(entry)
        routes.append({"dst": DEFAULT_ROUTE[address.version], "gw": str(gateway)})
    return {
        "cniVersion": cni_version,
        "interfaces": [
            {"name": plugged.host_ifname, "mac": plugged.host_mac},
            {"name": plugged.ifname, "mac": network.mac, "sandbox": plugged.netns},
        ],
        "ips": ips,
        "routes": routes,
        "dns": dict(dns or {}),
    }
