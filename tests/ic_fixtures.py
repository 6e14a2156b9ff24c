"""Two real availability zones and one IC database, for the IC controller's tests.

Each AZ is an ``OvnCentral`` (NB, SB, northd) with a gateway chassis in a network
namespace of its own (a distinct encap IP) whose Open vSwitch says
``ovn-is-interconn=true`` (what the node agent writes on a labelled gateway node).
Each AZ's cluster router and subnets are written by the sync worker's own NB writer,
so they carry the sync worker's ownership as in a real cluster. The IC controller is
``podnet_ic.controller.IcController`` driven with a parsed ConfigMap. Every daemon and
namespace is stopped or removed by PID/name on exit.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipam.interconnect import IcConfig, parse_ic_config
from podnet.ovn import OvnCentral, OvsNode
from podnet.ovn_ic import IcDatabase
from podnet_ic.controller import ClusterInputs, IcController, Outcome
from podnet_ic.desired import IcSubnet
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState, Router, RouterPort, StaticRoute, owned
from tests.ovn_fixtures import netns_node, running_node, token

JOIN = "100.64.0.0/16"


def prefix(text: str) -> str:
    """A route prefix as a network (``10.17.0.1/16`` -> ``10.17.0.0/16``)."""
    return str(ipaddress.ip_network(text, strict=False))


def decode(value: Any) -> Any:
    """An OVSDB JSON value (``["map", ...]``, ``["set", ...]``, ``["uuid", ...]``) as Python."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        kind, body = value
        if kind == "map":
            return {k: decode(v) for k, v in body}
        if kind == "set":
            return [decode(v) for v in body]
        if kind in ("uuid", "named-uuid"):
            return body
    return value


def rows(ctl: Callable[..., str], table: str, *conditions: str) -> list[dict[str, Any]]:
    """The rows of ``table`` (matching ``conditions``) through a ctl tool's JSON output."""
    verb = ["find", table, *conditions] if conditions else ["list", table]
    data = json.loads(ctl("--format=json", *verb))
    return [{h: decode(v) for h, v in zip(data["headings"], row, strict=True)}
            for row in data["data"]]


@dataclass
class Zone:
    """One AZ: its central, gateway node, subnets and controller."""

    name: str
    central: OvnCentral
    gateway: OvsNode
    subnets: list[IcSubnet]
    node_addresses: tuple[str, ...]
    controller: IcController
    extra_routes: dict[str, StaticRoute] = field(default_factory=dict)

    def inputs(self) -> ClusterInputs:
        return ClusterInputs(tuple(self.subnets), (JOIN,), self.node_addresses)

    def topology(self) -> DesiredState:
        """What the sync worker would write: the router, a port per subnet, the default
        route to the join gateway, and any extra routes of the test."""
        state = DesiredState()
        state.routers["ovn-cluster"] = Router("ovn-cluster", owned("router"))
        for index, subnet in enumerate(self.subnets):
            network = ipaddress.ip_network(subnet.cidrs[0])
            name = f"ovn-cluster-{subnet.name}"
            state.router_ports[name] = RouterPort(
                name, "ovn-cluster", f"0a:00:00:{len(self.name):02x}:{index:02x}:01",
                (f"{network.network_address + 1}/{network.prefixlen}",),
                owned("router-port"))
        state.static_routes["default/4"] = StaticRoute("ovn-cluster", "default/4",
                                                       "0.0.0.0/0", "100.64.0.1")
        state.static_routes.update(self.extra_routes)
        return state

    def sync(self) -> None:
        """One full reconcile of the sync worker's NB writer over this AZ."""
        api = nb_api(self.central.nb_remote)
        try:
            Northbound(api).reconcile(self.topology())
        finally:
            close_api(api)

    def nb(self, table: str, *conditions: str) -> list[dict[str, Any]]:
        return rows(self.central.nbctl, table, *conditions)

    def sb(self, table: str, *conditions: str) -> list[dict[str, Any]]:
        return rows(self.central.sbctl, table, *conditions)

    def routes(self) -> dict[str, dict[str, Any]]:
        """Static routes by prefix (normalised: ovn-ic learns ``10.17.0.1/16``)."""
        return {prefix(r["ip_prefix"]): r for r in self.nb("Logical_Router_Static_Route")}

    def learned(self) -> dict[str, str]:
        """Learned prefix -> next hop."""
        return {prefix: r["nexthop"] for prefix, r in self.routes().items()
                if "ic-learned-route" in r["external_ids"]}


@dataclass
class World:
    """Two AZs and the IC database between them."""

    ic: IcDatabase
    zones: dict[str, Zone]
    configs: dict[str, IcConfig] = field(default_factory=dict)

    def config(self, zone: str, **changes: str) -> IcConfig:
        data = self.ic.config_map_data(zone, [self.zones[zone].gateway.name])
        data.update(changes)
        return parse_ic_config(data)

    def enable(self, auto_route: bool = True) -> None:
        value = "true" if auto_route else "false"
        self.configs = {name: self.config(name, **{"auto-route": value}) for name in self.zones}

    def reconcile(self) -> dict[str, Outcome]:
        return {name: self.zones[name].controller.reconcile(
            self.configs.get(name, IcConfig(False)), self.zones[name].inputs())
            for name in self.zones}

    def converge(self, until: Callable[[], bool], what: str,
                 timeout_s: float = 60.0) -> dict[str, Outcome]:
        """Reconcile both AZs (as the controller's loop does) until ``until()`` holds."""
        deadline = time.monotonic() + timeout_s
        while True:
            outcomes = self.reconcile()
            if until():
                return outcomes
            if time.monotonic() > deadline:
                problems = {n: o.problems for n, o in outcomes.items()}
                raise AssertionError(f"{what}: not within {timeout_s} s; {problems}")
            time.sleep(0.3)


@contextlib.contextmanager
def world(directory: Path, zone_subnets: Mapping[str, Sequence[IcSubnet]],
          node_addresses: Mapping[str, tuple[str, ...]],
          clustered: bool = False) -> Iterator[World]:
    """Start the IC database (``clustered``: on a raft cluster of three members) and the
    AZs, each with a gateway chassis of a name unique to the run."""
    with contextlib.ExitStack() as stack:
        databases = (IcDatabase.clustered(directory / "ic-db") if clustered
                     else IcDatabase(directory / "ic-db"))
        ic = stack.enter_context(databases)
        zones: dict[str, Zone] = {}
        for name, subnets in zone_subnets.items():
            central = stack.enter_context(OvnCentral(directory / f"{name}-central"))
            gateway = stack.enter_context(running_node(
                netns_node(directory / f"{name}-gw", central, f"{name}-gw-{token()[:4]}")))
            gateway.vsctl("set", "Open_vSwitch", ".", "external_ids:ovn-is-interconn=true")
            controller = IcController(central.nb_remote, central.sb_remote,
                                      directory / f"{name}-ic")
            stack.callback(controller.close)
            stack.callback(controller.stop_daemons)
            zone = Zone(name, central, gateway, list(subnets), node_addresses[name], controller)
            zone.sync()
            zones[name] = zone
        yield World(ic, zones)
