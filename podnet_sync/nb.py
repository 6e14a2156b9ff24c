"""Writing desired state into OVN's northbound database through ovsdbapp.

One ``Reconcile`` command does a whole reconcile step inside one OVSDB transaction: it
reads the rows podnet owns from the IDL's replica (in the connection thread, so the
read and the write see the same database), diffs them against the desired rows, and
creates, updates or deletes only what differs. Rows without podnet's ``external_ids``
marker are never read as ours and never touched; podnet only adds its own rows to
shared columns (a router's policies, a switch's load-balancer groups).

A ``Scope`` limits a step to some identities (the pods of one event, say), so the
event path costs what the event touches, while the periodic full resync passes no
scope and repairs every drift, such as a port deleted by hand. A scoped step never
walks a whole table: reading a column of an IDL row converts it to Python, which over
thousands of rows would cost more than the event itself. It finds its rows through
the IDL's indexes (names, and podnet's ``podnet.io/key``), skips the skeleton, and
trusts the parent markers its own rows carry; the next full step checks them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ovsdbapp.backend.ovs_idl import command as ovsdb_command
from ovsdbapp.backend.ovs_idl import idlutils

from podnet_sync.nb_model import (
    CLUSTER_ROUTER,
    KIND_KEY,
    LB_GROUP,
    OWNER,
    OWNER_KEY,
    SWITCH_KEY,
    Acl,
    AddressSet,
    DesiredState,
    GroupAcl,
    LoadBalancer,
    Meter,
    Pairs,
    PortGroup,
    Router,
    RouterPolicy,
    RouterPort,
    StaticRoute,
    Switch,
    SwitchPort,
    pairs,
)

KEY = "podnet.io/key"
KEY_INDEX = "podnet_key"
Row = Any


class NorthboundError(RuntimeError):
    """The NB database refused or could not take a reconcile step."""


SCOPED_KINDS = ("switch_ports", "load_balancers", "address_sets", "policies")
"""The kinds a ``Scope`` can limit to some keys (the rest is the skeleton)."""
POLICY_KINDS = ("port_groups", "policy_address_sets", "meters")
"""NetworkPolicy's rows: a step reconciles them or none (``Scope.network_policy``)."""
NAMED_POLICY_KINDS = ("port_groups", "policy_address_sets")
"""The policy kinds ``Scope.policy_rows`` can limit to some names (meters, a handful of
rows, are always reconciled whole)."""
NETPOL_KIND = "netpol"
VALUES_PER_CHANGE = 50
"""Addresses (or ports) of a set column a transaction slice counts as one row."""


@dataclass(frozen=True)
class Scope:
    """Identities a reconcile step may touch, per kind; ``None`` means all of that kind."""

    switch_ports: frozenset[str] | None = None
    load_balancers: frozenset[str] | None = None
    address_sets: frozenset[str] | None = None
    policies: frozenset[str] | None = None
    structure: bool = True
    """Routers, router ports, switches and ACLs (the slow-changing skeleton)."""
    network_policy: bool = True
    """Port groups with their ACLs, the policies' address sets and the log meters."""
    policy_rows: frozenset[str] | None = None
    """With ``network_policy``: the names of the port groups and address sets to
    reconcile (``None``: all of them). An event step that recompiled a few policies
    names their rows, old and new, and leaves the thousands of others unread."""

    def allows(self, kind: str, key: str) -> bool:
        if kind in NAMED_POLICY_KINDS:
            return self.network_policy and (self.policy_rows is None or key in self.policy_rows)
        if kind in POLICY_KINDS:
            return self.network_policy
        if kind in SCOPED_KINDS:
            keys: frozenset[str] | None = getattr(self, kind)
            return keys is None or key in keys
        return self.structure


FULL = Scope()


@dataclass
class Report:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, action: str) -> None:
        setattr(self, action, getattr(self, action) + 1)
        self.by_kind[f"{kind}.{action}"] = self.by_kind.get(f"{kind}.{action}", 0) + 1

    @property
    def changes(self) -> int:
        return self.created + self.updated + self.deleted

    def merge(self, other: Report) -> None:
        self.created += other.created
        self.updated += other.updated
        self.deleted += other.deleted
        for key, count in other.by_kind.items():
            self.by_kind[key] = self.by_kind.get(key, 0) + count


def _key_of(entry: Any) -> str:
    return str(dict(entry.external_ids).get(KEY, ""))


def _ours(row: Row) -> bool:
    return dict(row.external_ids).get(OWNER_KEY) == OWNER


def _refs(row: Row, column: str) -> list[Row]:
    """A reference column's rows; empty for a row inserted in this very transaction."""
    return list(getattr(row, column, []))


def _dict(value: Any) -> Pairs:
    return pairs({str(k): str(v) for k, v in dict(value).items()})


class Reconcile(ovsdb_command.BaseCommand):  # type: ignore[misc]
    """Bring podnet's rows to ``desired`` within ``scope``, in the caller's transaction."""

    def __init__(
        self, api: Any, desired: DesiredState, scope: Scope = FULL,
        max_changes: int = 2000, known_ports: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(api)
        self.desired = desired
        self.scope = scope
        self.max_changes = max_changes
        self.known_ports = known_ports if known_ports is not None else {}
        """Port name -> the UUID of our row, as an earlier slice or step found it: a
        cold start's port groups name ten thousand ports in every slice, and an event's
        groups a hundred each time."""
        self.incomplete = False
        self.weight = 0
        """Changes beyond the row count: the ACLs of port groups and every
        ``VALUES_PER_CHANGE`` addresses or ports, so that a slice of big address sets
        stays as small a transaction as a slice of pods' ports."""
        self.left: dict[str, set[str]] = {}
        """Keys per kind this transaction had no room for (see ``rest``)."""
        self.report = Report()

    def __str__(self) -> str:  # ovsdbapp puts commands in its error messages
        return f"Reconcile({self.report.changes} changes, scope={self.scope})"

    __repr__ = __str__

    # The IDL's tables, by name.
    def _table(self, name: str) -> Any:
        return self.api.tables[name]

    def run_idl(self, txn: Any) -> None:
        self.txn = txn
        ports = self._in_scope("Logical_Switch_Port", self.scope.switch_ports)
        if self.scope.structure:
            routers = self._sync_routers()
            switches = self._sync_switches()
            self._sync_router_ports(routers)
        else:
            routers = self._named_rows("Logical_Router", {CLUSTER_ROUTER})
            switches = self._named_rows("Logical_Switch", self._switches_of(ports))
        ports = self._sync_switch_ports(switches, ports)
        if self.scope.structure:
            self._sync_acls(switches)
        self._sync_address_sets()
        if self.scope.network_policy:  # after the ports: a group refers to them
            self._sync_policy_address_sets()
            self._sync_meters()
            self._sync_port_groups(ports)
        self._sync_policies(routers)
        if self.scope.structure:
            self._sync_static_routes(routers)
        self._sync_load_balancers(switches, routers)
        self.result = self.report

    # ------------------------------------------------------------ indexed lookups

    def _named_rows(self, table: str, names: Iterable[str]) -> dict[str, Row]:
        """podnet's rows of ``table`` with these names, through the IDL's name index."""
        found: dict[str, Row] = {}
        for name in names:
            for row in idlutils.rows_by_value(self.api.idl, table, "name", name):
                if _ours(row):
                    found[name] = row
        return found

    def _in_scope(self, table: str, names: frozenset[str] | None) -> dict[str, Row]:
        """podnet's rows of a named kind: every one (``None``), else those named."""
        if names is None:
            return self._owned(table, lambda r: r.name)
        return self._named_rows(table, names)

    def _switches_of(self, ports: Mapping[str, Row]) -> set[str]:
        """The switches a scoped step's ports are in, or are to move to."""
        names = {port.switch for port in self.desired.switch_ports.values()}
        names.update(dict(row.external_ids).get(SWITCH_KEY, "") for row in ports.values())
        return names

    def _key_index(self, table: str) -> Any:
        rows = self._table(table).rows
        index = rows.indexes.get(KEY_INDEX)
        if index is None:
            index = rows.index_create(KEY_INDEX)
            index.add_column("external_ids", key=_key_of)
            for row in rows.values():
                index.add(row)
        return index

    def _keyed_rows(self, table: str, keys: Iterable[str]) -> dict[str, Row]:
        """podnet's rows of ``table`` whose ``podnet.io/key`` is one of ``keys``.

        The index is made on first use, in the connection thread that also keeps it
        (the IDL re-indexes a row on every change, so it never goes stale)."""
        index = self._key_index(table)
        found: dict[str, Row] = {}
        for key in keys:
            probe = self._table(table).rows.IndexEntry(external_ids={KEY: key})
            for row in index.irange(probe, probe):
                if _ours(row):
                    found[key] = row
        return found

    # ---------------------------------------------------------------- generic diff

    def _diff(
        self,
        kind: str,
        current: Mapping[str, Row],
        desired: Mapping[str, Any],
        read: Callable[[Row], Any],
        create: Callable[[Any], Row],
        update: Callable[[Row, Any], None],
        delete: Callable[[Row], None],
    ) -> dict[str, Row]:
        """Create, update, delete by identity; returns the rows now in place."""
        rows: dict[str, Row] = {}
        for key, row in current.items():
            rows[key] = row
            if key in desired or not self.scope.allows(kind, key):
                continue
            if self._room():
                delete(row)
                del rows[key]
                self.report.count(kind, "deleted")
            else:
                self._leave(kind, key)
        for key, want in desired.items():
            if not self.scope.allows(kind, key):
                continue
            row = rows.get(key)
            if row is not None and read(row) == want:
                continue
            if not self._room():
                self._leave(kind, key)
            elif row is not None:
                update(row, want)
                self.report.count(kind, "updated")
                self.weight += _weight(want)
            elif (created := create(want)) is not None:
                rows[key] = created
                self.report.count(kind, "created")
                self.weight += _weight(want)
            else:
                self._leave(kind, key)
        return rows

    def _room(self) -> bool:
        """Whether this transaction may take one more change (else the step goes on in
        the next transaction: a cold start of thousands of rows commits in slices)."""
        return self.report.changes + self.weight < self.max_changes

    def _leave(self, kind: str, key: str) -> None:
        self.incomplete = True
        self.left.setdefault(kind, set()).add(key)

    def rest(self) -> Scope:
        """The scope of what this transaction left to the next one: only those keys, so
        the slices after the first cost what they write, not another walk of every
        table (the skeleton again only if some of it was left)."""
        return Scope(
            **{kind: frozenset(self.left.get(kind, ())) for kind in SCOPED_KINDS},
            structure=any(kind not in SCOPED_KINDS and kind not in POLICY_KINDS
                          for kind in self.left),
            network_policy=any(kind in POLICY_KINDS for kind in self.left),
            policy_rows=frozenset(key for kind in NAMED_POLICY_KINDS
                                  for key in self.left.get(kind, ())),
        )

    def _insert(self, table: str, **columns: Any) -> Row:
        row = self.txn.insert(self._table(table))
        for column, value in columns.items():
            setattr(row, column, value)
        return row

    def _owned(self, table: str, key: Callable[[Row], str]) -> dict[str, Row]:
        return {key(row): row for row in self._table(table).rows.values() if _ours(row)}

    @staticmethod
    def _assign(row: Row, want: Any, skip: Iterable[str] = ()) -> None:
        for item in fields(want):
            if item.name in skip:
                continue
            value = getattr(want, item.name)
            if isinstance(value, tuple) and value and isinstance(value[0], tuple):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            setattr(row, item.name, value)

    # ---------------------------------------------------------------- skeleton

    def _sync_routers(self) -> dict[str, Row]:
        return self._diff(
            "routers", self._owned("Logical_Router", lambda r: r.name), self.desired.routers,
            read=lambda r: Router(r.name, _dict(r.external_ids)),
            create=lambda w: self._insert("Logical_Router", name=w.name,
                                          external_ids=dict(w.external_ids)),
            update=self._assign,
            delete=lambda r: r.delete(),
        )

    def _sync_switches(self) -> dict[str, Row]:
        return self._diff(
            "switches", self._owned("Logical_Switch", lambda r: r.name), self.desired.switches,
            read=lambda r: Switch(r.name, _dict(r.external_ids), _dict(r.other_config)),
            create=lambda w: self._insert(
                "Logical_Switch", name=w.name, external_ids=dict(w.external_ids),
                other_config=dict(w.other_config)),
            update=self._assign,
            delete=lambda r: r.delete(),
        )

    def _sync_router_ports(self, routers: Mapping[str, Row]) -> None:
        parent = {p.uuid: router for router in routers.values() for p in _refs(router, "ports")}

        def read(row: Row) -> RouterPort:
            router = parent.get(row.uuid)
            return RouterPort(row.name, router.name if router else "", row.mac,
                              tuple(sorted(row.networks)), _dict(row.external_ids))

        def create(want: RouterPort) -> Row:
            row = self._insert("Logical_Router_Port", name=want.name, mac=want.mac,
                               networks=list(want.networks),
                               external_ids=dict(want.external_ids))
            routers[want.router].addvalue("ports", row)
            return row

        def update(row: Row, want: RouterPort) -> None:
            if read(row).router != want.router:
                self._detach(parent, row, "ports")
                routers[want.router].addvalue("ports", row)
            self._assign(row, want, skip=("router",))

        self._diff("router_ports", self._owned("Logical_Router_Port", lambda r: r.name),
                   self.desired.router_ports, read, create, update,
                   delete=lambda r: self._detach_delete(parent, r, "ports"))

    @staticmethod
    def _detach(parent: Mapping[Any, Row], row: Row, column: str) -> None:
        owner = parent.get(row.uuid)
        if owner is not None:
            owner.delvalue(column, row)

    def _detach_delete(self, parent: Mapping[Any, Row], row: Row, column: str) -> None:
        self._detach(parent, row, column)
        row.delete()

    # ---------------------------------------------------------------- ports, ACLs

    def _sync_switch_ports(
        self, switches: Mapping[str, Row], current: Mapping[str, Row]
    ) -> dict[str, Row]:
        if self.scope.switch_ports is None:  # a full step reads the true parent of every port
            parents = {p.uuid: sw for sw in switches.values() for p in _refs(sw, "ports")}

            def parent_of(row: Row) -> Row | None:
                return parents.get(row.uuid)
        else:  # a scoped step trusts its ports' switch marker

            def parent_of(row: Row) -> Row | None:
                return switches.get(dict(row.external_ids).get(SWITCH_KEY, ""))

        def read(row: Row) -> SwitchPort:
            switch = parent_of(row)
            return SwitchPort(
                row.name, switch.name if switch else "", tuple(sorted(row.addresses)),
                _dict(row.external_ids), tuple(sorted(row.port_security)), row.type,
                _dict(row.options),
            )

        def create(want: SwitchPort) -> Row:
            if want.switch not in switches:  # created in a later slice of the step
                return None
            row = self._insert(
                "Logical_Switch_Port", name=want.name, addresses=list(want.addresses),
                port_security=list(want.port_security), type=want.type,
                options=dict(want.options), external_ids=dict(want.external_ids),
            )
            switches[want.switch].addvalue("ports", row)
            return row

        def detach(row: Row) -> None:
            switch = parent_of(row)
            if switch is not None:
                switch.delvalue("ports", row)

        def update(row: Row, want: SwitchPort) -> None:
            if read(row).switch != want.switch:
                detach(row)
                switches[want.switch].addvalue("ports", row)
            self._assign(row, want, skip=("switch",))

        def delete(row: Row) -> None:
            detach(row)
            row.delete()

        return self._diff("switch_ports", current, self.desired.switch_ports, read, create,
                          update, delete)

    def _sync_acls(self, switches: Mapping[str, Row]) -> None:
        parent = {acl.uuid: switch for switch in switches.values() for acl in _refs(switch, "acls")}

        def read(row: Row) -> Acl:
            switch = parent.get(row.uuid)
            return Acl(switch.name if switch else "", dict(row.external_ids).get(KEY, ""),
                       row.priority, row.direction, row.match, row.action)

        def create(want: Acl) -> Row:
            row = self._insert(
                "ACL", priority=want.priority, direction=want.direction, match=want.match,
                action=want.action, external_ids=_acl_ids(want.key, "acl"),
            )
            switches[want.switch].addvalue("acls", row)
            return row

        def update(row: Row, want: Acl) -> None:
            self._detach_delete(parent, row, "acls")
            create(want)

        on_switches = {key: row for key, row in
                       self._owned("ACL", lambda r: dict(r.external_ids).get(KEY, "")).items()
                       if dict(row.external_ids).get(KIND_KEY) != NETPOL_KIND}
        self._diff("acls", on_switches, self.desired.acls, read, create, update,
                   delete=lambda r: self._detach_delete(parent, r, "acls"))

    # ---------------------------------------------------------------- policies

    def _policy_rows(self, table: str, netpol_only: bool = True) -> dict[str, Row]:
        """NetworkPolicy's rows of ``table`` in scope: looked up by name when the scope
        names them, else every one (of ours; ``netpol_only``: of the netpol kind)."""
        names = self.scope.policy_rows
        rows = (self._table(table).rows.values() if names is None else
                (row for name in names
                 for row in idlutils.rows_by_value(self.api.idl, table, "name", name)))
        return {row.name: row for row in rows
                if _ours(row) and (not netpol_only or
                                   dict(row.external_ids).get(KIND_KEY) == NETPOL_KIND)}

    def _sync_policy_address_sets(self) -> None:
        def update(row: Row, want: AddressSet) -> None:
            _update_set(row, "addresses", set(row.addresses), set(want.addresses))
            row.external_ids = dict(want.external_ids)

        current = self._policy_rows("Address_Set")
        desired = dict(self.desired.policy_address_sets)
        for name, (added, removed) in self.desired.policy_set_changes.items():
            row = current.get(name)
            if row is None or name not in desired or \
                    not self.scope.allows("policy_address_sets", name):
                continue  # missing (or out of scope): the full content decides
            if not self._room():
                self._leave("policy_address_sets", name)
            else:
                for address in removed:
                    row.delvalue("addresses", address)
                for address in added:
                    row.addvalue("addresses", address)
                self.report.count("policy_address_sets", "updated")
                self.weight += (len(added) + len(removed)) // VALUES_PER_CHANGE
            del current[name], desired[name]
        self._diff(
            "policy_address_sets", current, desired,
            read=lambda r: AddressSet(r.name, tuple(sorted(r.addresses)), _dict(r.external_ids)),
            create=lambda w: self._insert("Address_Set", name=w.name,
                                          addresses=list(w.addresses),
                                          external_ids=dict(w.external_ids)),
            update=update,
            delete=lambda r: r.delete(),
        )

    def _sync_meters(self) -> None:
        def read(row: Row) -> Meter:
            bands = _refs(row, "bands")
            return Meter(row.name, bands[0].rate if len(bands) == 1 else 0,
                         _dict(row.external_ids), row.unit, bool(row.fair and row.fair[0]))

        def write(row: Row, want: Meter) -> None:
            row.unit = want.unit
            row.fair = [want.fair]
            row.external_ids = dict(want.external_ids)
            row.bands = [self._insert("Meter_Band", action="drop", rate=want.rate)]

        def create(want: Meter) -> Row:
            row = self._insert("Meter", name=want.name)
            write(row, want)
            return row

        self._diff("meters", self._owned("Meter", lambda r: r.name), self.desired.meters,
                   read, create, write, delete=lambda r: r.delete())

    def _sync_port_groups(self, ports: Mapping[str, Row]) -> None:
        """Port groups and their ACLs. A group's ports are written as far as they exist
        (in the database or made in this transaction); one still missing is left out,
        and compared as left out, so a reconcile does not rewrite the group forever."""
        found: dict[str, Row | None] = dict(ports)

        table = self._table("Logical_Switch_Port")
        if len(self.known_ports) > 2 * len(table.rows) + 1000:
            self.known_ports.clear()  # ports long gone: forget them

        def port_row(name: str) -> Row | None:
            if name not in found:
                known = self.known_ports.get(name)
                row = table.rows.get(known) if known is not None else None
                if row is None or row.name != name:
                    row = next((row for row in idlutils.rows_by_value(
                        self.api.idl, "Logical_Switch_Port", "name", name) if _ours(row)),
                        None)
                    if row is not None:
                        self.known_ports[name] = row.uuid
                found[name] = row
            return found[name]

        current = self._policy_rows("Port_Group", netpol_only=False)
        moved = self._move_group_ports(current, port_row)
        desired = {name: replace(group, ports=tuple(p for p in group.ports if port_row(p)))
                   for name, group in self.desired.port_groups.items()
                   if name not in moved
                   and self.scope.allows("port_groups", name)}  # a later slice: its own

        def read(row: Row) -> PortGroup:
            return PortGroup(row.name, tuple(sorted(port.name for port in _refs(row, "ports"))),
                             _dict(row.external_ids),
                             tuple(sorted((_read_group_acl(acl) for acl in _refs(row, "acls")),
                                          key=lambda acl: acl.key)))

        def update(row: Row, want: PortGroup) -> None:
            have = {port.name: port for port in _refs(row, "ports")}
            for name in set(have) - set(want.ports):
                row.delvalue("ports", have[name])
            for name in set(want.ports) - set(have):
                row.addvalue("ports", port_row(name))
            row.external_ids = dict(want.external_ids)
            wanted = {acl.key: acl for acl in want.acls}
            for acl_row in _refs(row, "acls"):
                acl = _read_group_acl(acl_row)
                if wanted.get(acl.key) == acl:
                    del wanted[acl.key]
                else:
                    row.delvalue("acls", acl_row)
                    acl_row.delete()
            for acl in wanted.values():
                row.addvalue("acls", self._insert_group_acl(acl))

        def create(want: PortGroup) -> Row:
            row = self._insert("Port_Group", name=want.name,
                               ports=[port_row(name) for name in want.ports])
            update(row, want)
            return row

        def delete(row: Row) -> None:
            for acl_row in _refs(row, "acls"):
                acl_row.delete()
            row.delete()

        self._diff("port_groups", {name: row for name, row in current.items()
                                   if name not in moved},
                   desired, read, create, update, delete)

    def _move_group_ports(self, current: Mapping[str, Row],
                          port_row: Callable[[str], Row | None]) -> set[str]:
        """Groups whose only change the caller knows is some ports: mutated in place,
        without reading them (those missing are left to the full content)."""
        moved = set()
        for name, (added, removed) in self.desired.policy_group_changes.items():
            row = current.get(name)
            if row is None or name not in self.desired.port_groups or \
                    not self.scope.allows("port_groups", name):
                continue
            if not self._room():
                self._leave("port_groups", name)
            else:
                for port in removed:
                    if (found := port_row(port)) is not None:
                        row.delvalue("ports", found)
                for port in added:
                    if (found := port_row(port)) is not None:
                        row.addvalue("ports", found)
                self.report.count("port_groups", "updated")
                self.weight += (len(added) + len(removed)) // VALUES_PER_CHANGE
            moved.add(name)
        return moved

    def _insert_group_acl(self, acl: GroupAcl) -> Row:
        return self._insert(
            "ACL", priority=acl.priority, direction=acl.direction, match=acl.match,
            action=acl.action, options=dict(acl.options), log=acl.log,
            severity=[acl.severity] if acl.severity else [],
            name=[acl.name] if acl.name else [], meter=[acl.meter] if acl.meter else [],
            external_ids=_acl_ids(acl.key, NETPOL_KIND),
        )

    # ---------------------------------------------------------------- routing

    def _sync_address_sets(self) -> None:
        current = {name: row for name, row in
                   self._in_scope("Address_Set", self.scope.address_sets).items()
                   if dict(row.external_ids).get(KIND_KEY) != NETPOL_KIND}
        self._diff(
            "address_sets", current, self.desired.address_sets,
            read=lambda r: AddressSet(r.name, tuple(sorted(r.addresses)), _dict(r.external_ids)),
            create=lambda w: self._insert("Address_Set", name=w.name,
                                          addresses=list(w.addresses),
                                          external_ids=dict(w.external_ids)),
            update=self._assign,
            delete=lambda r: r.delete(),
        )

    def _sync_policies(self, routers: Mapping[str, Row]) -> None:
        wanted = self.scope.policies
        if wanted is None:
            self._key_index("Logical_Router_Policy")  # made by a full step, not an event's
            parent = {p.uuid: router for router in routers.values()
                      for p in _refs(router, "policies")}
            current = self._owned("Logical_Router_Policy",
                                  lambda r: dict(r.external_ids).get(KEY, ""))
        else:  # podnet owns one router: a scoped step takes it for the parent
            current = self._keyed_rows("Logical_Router_Policy", wanted)
            only = routers.get(CLUSTER_ROUTER)
            parent = {row.uuid: only for row in current.values() if only is not None}

        def read(row: Row) -> RouterPolicy:
            router = parent.get(row.uuid)
            return RouterPolicy(
                router.name if router else "", dict(row.external_ids).get(KEY, ""),
                row.priority, row.match, row.action, tuple(sorted(row.nexthops)),
            )

        def create(want: RouterPolicy) -> Row:
            row = self._insert(
                "Logical_Router_Policy", priority=want.priority, match=want.match,
                action=want.action, nexthops=list(want.nexthops),
                external_ids=_acl_ids(want.key, "policy"),
            )
            routers[want.router].addvalue("policies", row)
            return row

        def update(row: Row, want: RouterPolicy) -> None:
            self._detach_delete(parent, row, "policies")
            create(want)

        self._diff(
            "policies", current, self.desired.policies, read, create, update,
            delete=lambda r: self._detach_delete(parent, r, "policies"),
        )

    def _sync_static_routes(self, routers: Mapping[str, Row]) -> None:
        parent = {r.uuid: router for router in routers.values()
                  for r in _refs(router, "static_routes")}

        def read(row: Row) -> StaticRoute:
            router = parent.get(row.uuid)
            return StaticRoute(router.name if router else "",
                               dict(row.external_ids).get(KEY, ""), row.ip_prefix, row.nexthop)

        def create(want: StaticRoute) -> Row:
            row = self._insert("Logical_Router_Static_Route", ip_prefix=want.ip_prefix,
                               nexthop=want.nexthop, external_ids=_acl_ids(want.key, "route"))
            routers[want.router].addvalue("static_routes", row)
            return row

        def update(row: Row, want: StaticRoute) -> None:
            self._detach_delete(parent, row, "static_routes")
            create(want)

        self._diff(
            "static_routes",
            self._owned("Logical_Router_Static_Route",
                        lambda r: dict(r.external_ids).get(KEY, "")),
            self.desired.static_routes, read, create, update,
            delete=lambda r: self._detach_delete(parent, r, "static_routes"),
        )

    # ---------------------------------------------------------------- services

    def _sync_load_balancers(
        self, switches: Mapping[str, Row], routers: Mapping[str, Row]
    ) -> None:
        group = self._lb_group()

        def create(want: LoadBalancer) -> Row:
            row = self._insert(
                "Load_Balancer", name=want.name, protocol=[want.protocol],
                vips=dict(want.vips), external_ids=dict(want.external_ids),
                options=dict(want.options))
            group.addvalue("load_balancer", row)
            return row

        def delete(row: Row) -> None:
            group.delvalue("load_balancer", row)
            row.delete()

        rows = self._diff(
            "load_balancers", self._in_scope("Load_Balancer", self.scope.load_balancers),
            self.desired.load_balancers,
            read=lambda r: LoadBalancer(r.name, r.protocol[0] if r.protocol else "",
                                        _dict(r.vips), _dict(r.external_ids), _dict(r.options)),
            create=create, update=self._update_load_balancer, delete=delete,
        )
        if self.scope.load_balancers is not None:
            return  # membership of the rest, and the holders, are the full step's
        members = {row.uuid for row in _refs(group, "load_balancer")}
        in_place = {row.uuid: row for row in rows.values()}
        for row in list(_refs(group, "load_balancer")):
            if row.uuid not in in_place:
                group.delvalue("load_balancer", row)
        for uuid, row in in_place.items():
            if uuid not in members:
                group.addvalue("load_balancer", row)
        for holder in (*switches.values(), *routers.values()):
            if group.uuid not in {g.uuid for g in _refs(holder, "load_balancer_group")}:
                holder.addvalue("load_balancer_group", group)

    @staticmethod
    def _update_load_balancer(row: Row, want: LoadBalancer) -> None:
        row.protocol = [want.protocol]  # an optional column: a list of at most one
        row.vips = dict(want.vips)
        row.options = dict(want.options)
        row.external_ids = dict(want.external_ids)

    def _lb_group(self) -> Row:
        for row in self._table("Load_Balancer_Group").rows.values():
            if row.name == LB_GROUP:
                return row
        self.report.count("load_balancer_groups", "created")
        return self._insert("Load_Balancer_Group", name=LB_GROUP)


def _weight(want: Any) -> int:
    if isinstance(want, AddressSet):
        return len(want.addresses) // VALUES_PER_CHANGE
    if isinstance(want, PortGroup):
        return len(want.acls) + len(want.ports) // VALUES_PER_CHANGE
    return 0


def _update_set(row: Row, column: str, have: set[Any], want: set[Any]) -> None:
    """A set column brought to ``want`` by mutations: the transaction carries what
    changed, not the thousands of values that stayed."""
    for value in have - want:
        row.delvalue(column, value)
    for value in want - have:
        row.addvalue(column, value)


def _optional(value: Any) -> str:
    return str(value[0]) if value else ""


def _read_group_acl(row: Row) -> GroupAcl:
    return GroupAcl(
        dict(row.external_ids).get(KEY, ""), row.priority, row.direction, row.match,
        row.action, _dict(row.options), bool(row.log), _optional(row.severity),
        _optional(row.name), _optional(row.meter),
    )


def _acl_ids(key: str, kind: str) -> dict[str, str]:
    return {OWNER_KEY: OWNER, KIND_KEY: kind, KEY: key}


class Northbound:
    """The NB database as the sync worker uses it: one reconcile step at a time."""

    def __init__(self, api: Any, max_changes: int = 2000) -> None:
        self.api = api
        self.max_changes = max_changes
        self.known_ports: dict[str, Any] = {}
        """Where our ports were found (checked again on every use)."""

    def reconcile(self, desired: DesiredState, scope: Scope = FULL) -> Report:
        """Apply one step (blocking; see ``reconcile_async``): one transaction, or a few
        of at most ``max_changes`` rows each when the step is large."""
        total = Report()
        while True:
            command = Reconcile(self.api, desired, scope, self.max_changes,
                                self.known_ports)
            try:
                with self.api.transaction(check_error=True) as txn:
                    txn.add(command)
            except Exception as exc:
                raise NorthboundError(f"NB transaction failed: {exc}") from exc
            total.merge(command.report)
            if not command.incomplete or not command.report.changes:
                return total
            scope = command.rest()

    async def reconcile_async(self, desired: DesiredState, scope: Scope = FULL) -> Report:
        return await asyncio.to_thread(self.reconcile, desired, scope)
