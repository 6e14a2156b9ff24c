"""The IC controller's database adapters: the local NB and SB, the IC NB and IC SB.

Each read is one ovsdbapp read-only command over the IDL's replica; each write is one
command inside one transaction that reads what is there and changes only what
differs, so running it again changes nothing and a restart converges. Only rows
tagged ``podnet.io/owner=podnet-ic`` are ever updated or deleted, with two exceptions,
both on teardown or refusal and both rows ``ovn-ic`` made: learned routes (external_ids
``ic-learned-route``) and the local transit switch (other_config ``interconn-ts``).
Rows of the sync worker (``podnet``) or of no podnet tag, such as a route added with
``ovn-nbctl lr-route-add``, are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl import command, idlutils

from podnet_ic.desired import (
    AZ_KEY,
    CLUSTER_ROUTER,
    DEFAULT_TS_SUBNET,
    IC_NB_KEY,
    IC_SB_KEY,
    KEY,
    LEARNED_KEY,
    OWNER,
    OWNER_KEY,
    ROUTE_OPTIONS,
    TRANSIT_SWITCH,
    CurrentPort,
    IcDesired,
    IcPolicy,
    RemotePort,
    Route,
    owned,
)

Row = Any
INTERCONN_TS = "interconn-ts"


class IcDatabaseError(RuntimeError):
    """A transaction on one of the databases failed; the message says which and why."""


def _ours(row: Row) -> bool:
    return dict(row.external_ids).get(OWNER_KEY) == OWNER


def _one(rows: Iterable[Row]) -> Row | None:
    return next(iter(rows), None)


def _named(api: Any, table: str, name: str) -> Row | None:
    """The row of ``table`` named ``name`` (the first, for tables without a unique name)."""
    return _one(idlutils.rows_by_value(api.idl, table, "name", name))


def _by_name(api: Any, table: str, name: str) -> bool:
    return _named(api, table, name) is not None


@dataclass
class LocalView:
    """What the local NB holds that IC cares about."""

    az: str = ""
    options: dict[str, str] = field(default_factory=dict)
    external_ids: dict[str, str] = field(default_factory=dict)
    router_present: bool = False
    ts_present: bool = False
    remote_ports: tuple[RemotePort, ...] = ()
    current_ports: dict[str, CurrentPort] = field(default_factory=dict)
    """podnet-ic's router ports by name."""
    routes: tuple[Route, ...] = ()
    policies: dict[str, IcPolicy] = field(default_factory=dict)
    local_port: str = ""
    """podnet-ic's port on ``ts``, if any."""


class ReadLocal(command.ReadOnlyCommand):  # type: ignore[misc]
    def run_idl(self, txn: Any) -> None:
        view = LocalView()
        nb_global = _one(self.api.tables["NB_Global"].rows.values())
        if nb_global is not None:
            view.az = str(nb_global.name)
            view.options = {str(k): str(v) for k, v in nb_global.options.items()}
            view.external_ids = {str(k): str(v) for k, v in nb_global.external_ids.items()}
        router = _named(self.api, "Logical_Router", CLUSTER_ROUTER)
        if router is not None:
            view.router_present = True
            view.current_ports = {p.name: CurrentPort(p.mac, tuple(sorted(p.networks)))
                                  for p in router.ports if _ours(p)}
            view.routes = tuple(
                Route(str(r.uuid), r.ip_prefix, r.nexthop,
                      LEARNED_KEY in dict(r.external_ids))
                for r in router.static_routes)
            view.policies = {
                dict(p.external_ids).get(KEY, ""): IcPolicy(
                    dict(p.external_ids).get(KEY, ""), p.priority, p.match, p.action)
                for p in router.policies if _ours(p)}
        ts = _named(self.api, "Logical_Switch", TRANSIT_SWITCH)
        if ts is not None and INTERCONN_TS in dict(ts.other_config):
            view.ts_present = True
            remote = []
            for port in ts.ports:
                if _ours(port):
                    view.local_port = port.name
                if port.type != "remote" or not port.addresses:
                    continue
                parts = str(port.addresses[0]).split()
                if len(parts) >= 2:
                    remote.append(RemotePort(port.name, parts[0], parts[1]))
            view.remote_ports = tuple(sorted(remote, key=lambda p: p.name))
        self.result = view


class ApplyLocal(command.BaseCommand):  # type: ignore[misc]
    """Bring podnet-ic's rows in the local NB to ``desired`` (IC on or off)."""

    def __init__(self, api: Any, desired: IcDesired, ic_remotes: tuple[str, str],
                 drop_transit_switch: bool = False) -> None:
        super().__init__(api)
        self.desired = desired
        self.ic_remotes = ic_remotes
        self.drop_transit_switch = drop_transit_switch
        self.changes: list[str] = []

    def __str__(self) -> str:
        return f"ApplyLocal(az={self.desired.az or '-'}, {len(self.changes)} changes)"

    __repr__ = __str__

    def _insert(self, table: str, **columns: Any) -> Row:
        row = self.txn.insert(self.api.tables[table])
        for column, value in columns.items():
            setattr(row, column, value)
        return row

    def run_idl(self, txn: Any) -> None:
        self.txn = txn
        router = _named(self.api, "Logical_Router", CLUSTER_ROUTER)
        self._nb_global()
        self._router_port(router)
        self._switch_port()
        self._policies(router)
        self._drop_routes(router)
        if self.drop_transit_switch and not self.desired.enabled:
            ts = _named(self.api, "Logical_Switch", TRANSIT_SWITCH)
            if ts is not None and INTERCONN_TS in dict(ts.other_config):
                ts.delete()
                self.changes.append(f"deleted switch {TRANSIT_SWITCH}")
        self.result = list(self.changes)

    def _nb_global(self) -> None:
        row = _one(self.api.tables["NB_Global"].rows.values())
        if row is None:
            row = self._insert("NB_Global")
        ids = dict(row.external_ids)
        options = dict(row.options)
        if self.desired.enabled:
            marks = {AZ_KEY: self.desired.az, IC_NB_KEY: self.ic_remotes[0],
                     IC_SB_KEY: self.ic_remotes[1]}
            if row.name != self.desired.az:
                row.name = self.desired.az
                self.changes.append(f"NB_Global name {self.desired.az}")
            for key, value in marks.items():
                if ids.get(key) != value:
                    row.setkey("external_ids", key, value)
        else:
            marked = ids.get(AZ_KEY)
            if marked and row.name == marked:
                row.name = ""
                self.changes.append("NB_Global name cleared")
            for key in (AZ_KEY, IC_NB_KEY, IC_SB_KEY):
                if key in ids:
                    row.delkey("external_ids", key)
        for key in ROUTE_OPTIONS:
            want = self.desired.options.get(key)
            if want is None and key in options:
                row.delkey("options", key)
                self.changes.append(f"option {key} removed")
            elif want is not None and options.get(key) != want:
                row.setkey("options", key, want)
                self.changes.append(f"option {key}={want}")

    # Our ports and policies are children (non-root rows) of ovn-cluster and ts: a row
    # detached from its parent is gone, so the parents' references are all there is to
    # read, whatever the size of the tables (thousands of pod ports).

    def _router_port(self, router: Row | None) -> None:
        want = self.desired.router_port
        if router is None:
            return  # the sync worker has not made ovn-cluster yet: nothing of ours either
        existing = self._keep_only(router, want.name if want else None, "router port")
        if want is None:
            return
        if existing is None:
            if _by_name(self.api, "Logical_Router_Port", want.name):
                return  # a port of that name that is not ours
            existing = self._insert("Logical_Router_Port", name=want.name, mac=want.mac,
                                    networks=list(want.networks),
                                    external_ids=dict(want.external_ids))
            router.addvalue("ports", existing)
            self.changes.append(f"created router port {want.name}")
        else:
            if existing.mac != want.mac:
                existing.mac = want.mac
            if sorted(existing.networks) != sorted(want.networks):
                existing.networks = list(want.networks)
                self.changes.append(f"router port {want.name} networks {want.networks}")
        have = sorted((g.name, g.chassis_name, g.priority)
                      for g in getattr(existing, "gateway_chassis", []))
        wanted = sorted((g.name, g.chassis, g.priority) for g in want.gateway_chassis)
        if have != wanted:
            existing.gateway_chassis = [
                self._insert("Gateway_Chassis", name=name, chassis_name=chassis,
                             priority=priority, external_ids=owned("gateway-chassis"))
                for name, chassis, priority in wanted]
            self.changes.append(f"router port {want.name} gateway chassis "
                                f"{[c for _, c, _ in wanted]}")

    def _keep_only(self, parent: Row, name: str | None, what: str) -> Row | None:
        """Delete every port of ours on ``parent`` but the one named ``name``; return it
        (``None`` when there is none yet)."""
        kept = None
        for row in list(parent.ports):
            if not _ours(row):
                continue
            if row.name == name:
                kept = row
                continue
            self.changes.append(f"deleted {what} {row.name}")
            parent.delvalue("ports", row)
            row.delete()
        return kept

    def _switch_port(self) -> None:
        want = self.desired.switch_port
        ts = _named(self.api, "Logical_Switch", TRANSIT_SWITCH)
        if ts is None:
            return  # our port went with it
        existing = self._keep_only(ts, want.name if want else None, "switch port")
        if want is None:
            return
        if existing is None:
            if _by_name(self.api, "Logical_Switch_Port", want.name):
                return  # a port of that name that is not ours
            existing = self._insert("Logical_Switch_Port", name=want.name, type="router",
                                    addresses=["router"],
                                    options={"router-port": want.router_port},
                                    external_ids=dict(want.external_ids))
            ts.addvalue("ports", existing)
            self.changes.append(f"created switch port {want.name}")
            return
        if existing.type != "router":
            existing.type = "router"
        if list(existing.addresses) != ["router"]:
            existing.addresses = ["router"]
        if dict(existing.options).get("router-port") != want.router_port:
            # ovn-ic adds requested-tnl-key beside it: only our key is ours to set
            existing.setkey("options", "router-port", want.router_port)

    def _policies(self, router: Row | None) -> None:
        if router is None:
            return
        current = {dict(row.external_ids).get(KEY, ""): row
                   for row in router.policies if _ours(row)}
        wanted = self.desired.policies
        for key, row in current.items():
            want = wanted.get(key)
            if want is not None and (row.priority, row.match, row.action) == (
                    want.priority, want.match, want.action):
                continue
            router.delvalue("policies", row)
            row.delete()
            if want is None:
                self.changes.append(f"deleted policy {key}")
        for key, want in wanted.items():
            row = current.get(key)
            if row is not None and (row.priority, row.match, row.action) == (
                    want.priority, want.match, want.action):
                continue
            created = self._insert("Logical_Router_Policy", priority=want.priority,
                                   match=want.match, action=want.action,
                                   external_ids=owned("policy", **{KEY: key}))
            router.addvalue("policies", created)
            self.changes.append(f"policy {key}: {want.match} {want.action}")

    def _drop_routes(self, router: Row | None) -> None:
        if router is None or not self.desired.drop_routes:
            return
        drop = set(self.desired.drop_routes)
        for row in list(router.static_routes):
            if str(row.uuid) in drop and LEARNED_KEY in dict(row.external_ids):
                self.changes.append(f"deleted learned route {row.ip_prefix}")
                router.delvalue("static_routes", row)
                row.delete()


class ReadChassis(command.ReadOnlyCommand):  # type: ignore[misc]
    """Local SB: node name (the chassis' hostname, or its name) -> chassis name."""

    def run_idl(self, txn: Any) -> None:
        found: dict[str, str] = {}
        for row in self.api.tables["Chassis"].rows.values():
            if dict(row.other_config).get("is-remote") == "true":
                continue
            found.setdefault(str(row.name), str(row.name))
            if row.hostname:
                found[str(row.hostname)] = str(row.name)
        self.result = found


class EnsureTransitSwitch(command.BaseCommand):  # type: ignore[misc]
    """IC NB: the transit switch ``ts`` exists; the result is its subnet."""

    def run_idl(self, txn: Any) -> None:
        row = _named(self.api, "Transit_Switch", TRANSIT_SWITCH)
        if row is None:
            row = txn.insert(self.api.tables["Transit_Switch"])
            row.name = TRANSIT_SWITCH
            row.external_ids = {"subnet": DEFAULT_TS_SUBNET, OWNER_KEY: OWNER}
        self.result = str(dict(row.external_ids).get("subnet") or DEFAULT_TS_SUBNET)


class ReadRemoteRoutes(command.ReadOnlyCommand):  # type: ignore[misc]
    """IC SB: (AZ, prefix) of the routes other AZs advertise on ``ts``."""

    def __init__(self, api: Any, az: str) -> None:
        super().__init__(api)
        self.az = az

    def run_idl(self, txn: Any) -> None:
        found = set()
        for row in self.api.tables["Route"].rows.values():
            zone = row.availability_zone
            name = str(getattr(zone, "name", "")) if zone else ""
            if name and name != self.az and row.transit_switch == TRANSIT_SWITCH:
                found.add((name, str(row.ip_prefix)))
        self.result = tuple(sorted(found))


class ReadAvailabilityZones(command.ReadOnlyCommand):  # type: ignore[misc]
    def run_idl(self, txn: Any) -> None:
        self.result = sorted(str(r.name) for r in
                             self.api.tables["Availability_Zone"].rows.values())


class LeaveIcSb(command.BaseCommand):  # type: ignore[misc]
    """IC SB: remove what AZ ``az`` registered (its routes, port bindings, gateways and
    the AZ itself), as ``ovn-ic`` leaves it behind when it stops."""

    def __init__(self, api: Any, az: str) -> None:
        super().__init__(api)
        self.az = az

    def run_idl(self, txn: Any) -> None:
        zones = [r for r in self.api.tables["Availability_Zone"].rows.values()
                 if r.name == self.az]
        removed = 0
        for zone in zones:
            for table in ("Route", "Port_Binding", "Gateway"):
                for row in list(self.api.tables[table].rows.values()):
                    if row.availability_zone and row.availability_zone.uuid == zone.uuid:
                        row.delete()
                        removed += 1
            zone.delete()
            removed += 1
        self.result = removed


def execute(api: Any, cmd: Any, what: str) -> Any:
    """Run one command in its own transaction; :class:`IcDatabaseError` on failure."""
    try:
        with api.transaction(check_error=True) as txn:
            txn.add(cmd)
    except Exception as exc:  # ovsdbapp raises several kinds
        raise IcDatabaseError(f"{what} failed: {exc}") from exc
    return cmd.result


def read(api: Any, cmd: Any, what: str) -> Any:
    try:
        return cmd.execute(check_error=True)
    except Exception as exc:
        raise IcDatabaseError(f"{what} failed: {exc}") from exc


def local_remotes(view: LocalView) -> tuple[str, str] | None:
    """The IC databases a previous run joined, from NB_Global's marks."""
    nb, sb = view.external_ids.get(IC_NB_KEY), view.external_ids.get(IC_SB_KEY)
    return (nb, sb) if nb and sb else None


def routes_of(view: LocalView) -> Mapping[str, Route]:
    return {route.uuid: route for route in view.routes}
