"""The node's Open_vSwitch database through ovsdbapp: pod ports, QoS, ``ovn-installed``.

One IDL connection lives as long as the agent. Writes are ovsdbapp transactions of
podnet's own commands (each a few rows: the port and its interface, the QoS row), run
on a small thread pool because ovsdbapp blocks its caller until the server answers.

``ovn-controller`` sets ``external_ids:ovn-installed=true`` on an interface once the
flows of its logical port are in place; that is when a pod has traffic. The agent
learns it from the IDL's update notifications (the server pushes every change of the
monitored tables), not by polling: a waiter registers for the interface, then reads the
current value under the connection's lock, which is the lock the IDL holds while it
applies updates and notifies. Either the read sees the flag or the notification comes
after the waiter is in place, so no update can slip between the two.

Every row podnet writes carries ``external_ids:podnet.io/owner=podnet``, and pod ports
record their container, interface name, namespace path and pod, so a restarted agent
finds its ports again (and garbage collection never touches a port it does not own).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ovsdbapp.backend.ovs_idl import command, connection, idlutils, transaction
from ovsdbapp.schema.open_vswitch import impl_idl

from node_agent.qos import Bandwidth, QosPlan
from podnet_plumbing.ovsdb import own_connection

log = logging.getLogger(__name__)

T = TypeVar("T")
OWNER = "podnet.io/owner"
OWNER_VALUE = "podnet"
CONTAINER = "podnet.io/container-id"
IFNAME = "podnet.io/ifname"
NETNS = "podnet.io/netns"
POD = "podnet.io/pod"
POD_UID = "podnet.io/pod-uid"
PORT = "podnet.io/port"
RUNTIME_INGRESS = "podnet.io/runtime-ingress-mbps"
RUNTIME_EGRESS = "podnet.io/runtime-egress-mbps"
IFACE_ID = "iface-id"
INSTALLED = "ovn-installed"
QOS_TYPE = "linux-htb"

TABLES: dict[str, tuple[str, ...]] = {
    "Open_vSwitch": ("bridges", "external_ids", "other_config", "cur_cfg", "next_cfg"),
    "Bridge": ("name", "ports", "datapath_type", "fail_mode", "other_config", "external_ids",
               "protocols"),
    "Port": ("name", "interfaces", "qos", "external_ids"),
    "Interface": ("name", "type", "external_ids", "ofport", "error", "mtu_request", "mac",
                  "ingress_policing_rate", "ingress_policing_burst", "options"),
    "QoS": ("type", "other_config", "external_ids", "queues"),
    "Queue": ("other_config", "external_ids", "dscp"),
}
"""Only what podnet reads: the interfaces' statistics, rewritten every few seconds,
stay on the server."""


class OvsError(RuntimeError):
    """An OVSDB transaction or lookup failed."""


def _scalar(value: Any) -> Any:
    """An optional column's value (the IDL gives a list of zero or one)."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


@dataclass(frozen=True)
class PortRecord:
    """A pod port as the database has it."""

    name: str
    external_ids: Mapping[str, str]
    ofport: int | None
    error: str
    qos_max_rate: int | None
    policing_rate: int
    policing_burst: int

    @property
    def installed(self) -> bool:
        return self.external_ids.get(INSTALLED) == "true"

    @property
    def iface_id(self) -> str:
        return self.external_ids.get(IFACE_ID, "")

    @property
    def pod(self) -> tuple[str, str]:
        namespace, _, name = self.external_ids.get(POD, "").partition("/")
        return namespace, name


def runtime_bandwidth(external_ids: Mapping[str, str]) -> Bandwidth:
    """The runtime's bandwidth capability recorded on a port at ADD."""
    def rate(key: str) -> float | None:
        try:
            return float(external_ids[key]) or None
        except (KeyError, ValueError):
            return None

    return Bandwidth(rate(RUNTIME_INGRESS), rate(RUNTIME_EGRESS))


# --------------------------------------------------------------------------- commands


class _Command(command.BaseCommand):  # type: ignore[misc]
    """A podnet command: ``run_idl`` runs in the connection thread inside a transaction."""

    def port_row(self, name: str) -> Any:
        return idlutils.row_by_value(self.api.idl, "Port", "name", name, None)


def _set_qos(api: Any, txn: Any, port: Any, name: str, max_rate: int | None,
             fresh: bool = False) -> None:
    """Point ``port`` at a podnet QoS row limited to ``max_rate`` (none: no QoS).

    ``fresh``: the port is inserted by this transaction (its columns cannot be read).
    """
    current: Any = None if fresh else _scalar(port.qos)
    ours = current is not None and current.external_ids.get(OWNER) == OWNER_VALUE
    if max_rate is None:
        if current is not None:
            port.qos = []
            if ours:
                current.delete()
        return
    config = {"max-rate": str(max_rate)}
    if ours:
        if dict(current.other_config) != config:
            current.other_config = config
        return
    qos = txn.insert(api._tables["QoS"])
    qos.type = QOS_TYPE
    qos.other_config = config
    qos.external_ids = {OWNER: OWNER_VALUE, PORT: name}
    port.qos = [qos]


def _set_policing(interface: Any, plan: QosPlan, fresh: bool = False) -> None:
    if fresh or interface.ingress_policing_rate != plan.policing_rate_kbps:
        interface.ingress_policing_rate = plan.policing_rate_kbps
    if fresh or interface.ingress_policing_burst != plan.policing_burst_kb:
        interface.ingress_policing_burst = plan.policing_burst_kb


class EnsurePodPort(_Command):
    """The pod's port on the bridge with its external_ids, MTU and QoS (create or fix)."""

    def __init__(self, api: Any, bridge: str, name: str, external_ids: Mapping[str, str],
                 mtu: int, qos: QosPlan) -> None:
        super().__init__(api)
        self.bridge, self.name, self.external_ids = bridge, name, dict(external_ids)
        self.mtu, self.qos = mtu, qos

    def run_idl(self, txn: Any) -> None:
        port = self.port_row(self.name)
        fresh = port is None
        if port is None:
            bridge = idlutils.row_by_value(self.api.idl, "Bridge", "name", self.bridge)
            interface = txn.insert(self.api._tables["Interface"])
            interface.name = self.name
            interface.external_ids = self.external_ids
            interface.mtu_request = [self.mtu]
            port = txn.insert(self.api._tables["Port"])
            port.name = self.name
            port.interfaces = [interface]
            port.external_ids = {OWNER: OWNER_VALUE}
            bridge.addvalue("ports", port)
        else:
            interface = port.interfaces[0]
            current = dict(interface.external_ids)
            merged = {**current, **self.external_ids}
            if current.get(IFACE_ID) != self.external_ids.get(IFACE_ID):
                merged.pop(INSTALLED, None)
            if merged != current:
                interface.external_ids = merged
        _set_qos(self.api, txn, port, self.name, self.qos.port_max_rate_bps, fresh)
        _set_policing(interface, self.qos, fresh)


class SetPortQos(_Command):
    def __init__(self, api: Any, name: str, qos: QosPlan) -> None:
        super().__init__(api)
        self.name, self.qos = name, qos

    def run_idl(self, txn: Any) -> None:
        port = self.port_row(self.name)
        if port is None:
            raise OvsError(f"port {self.name} does not exist")
        _set_qos(self.api, txn, port, self.name, self.qos.port_max_rate_bps)
        for interface in port.interfaces:
            _set_policing(interface, self.qos)


class DeletePodPort(_Command):
    """Remove a port (and podnet's QoS row of it) from whichever bridge holds it."""

    def __init__(self, api: Any, name: str) -> None:
        super().__init__(api)
        self.name = name

    def run_idl(self, txn: Any) -> None:
        port = self.port_row(self.name)
        self.result = port is not None
        if port is None:
            return
        _set_qos(self.api, txn, port, self.name, None)
        for bridge in self.api._tables["Bridge"].rows.values():
            if port in bridge.ports:
                bridge.delvalue("ports", port)
        port.delete()


class ReadPorts(command.ReadOnlyCommand):  # type: ignore[misc]
    """Snapshots of ports (all podnet's, or those named), read under the IDL lock."""

    def __init__(self, api: Any, names: Iterable[str] | None = None) -> None:
        super().__init__(api)
        self.names = set(names) if names is not None else None

    def run_idl(self, txn: Any) -> None:
        records = []
        for port in self.api._tables["Port"].rows.values():
            if self.names is not None and port.name not in self.names:
                continue
            if not port.interfaces:
                continue
            interface = port.interfaces[0]
            if self.names is None and interface.external_ids.get(OWNER) != OWNER_VALUE:
                continue
            records.append(_record(port, interface))
        self.result = records


def _record(port: Any, interface: Any) -> PortRecord:
    qos = _scalar(port.qos)
    rate = qos.other_config.get("max-rate") if qos is not None else None
    return PortRecord(
        name=port.name, external_ids=dict(interface.external_ids),
        ofport=_scalar(interface.ofport), error=_scalar(interface.error) or "",
        qos_max_rate=int(rate) if rate else None,
        policing_rate=int(interface.ingress_policing_rate),
        policing_burst=int(interface.ingress_policing_burst),
    )


class ReadRow(command.ReadOnlyCommand):  # type: ignore[misc]
    """One column of the Open_vSwitch row or of a named row, as plain data."""

    def __init__(self, api: Any, table: str, name: str | None, column: str) -> None:
        super().__init__(api)
        self.table, self.name, self.column = table, name, column

    def run_idl(self, txn: Any) -> None:
        rows = self.api._tables[self.table].rows.values()
        row = next((r for r in rows if self.name is None or r.name == self.name), None)
        value = getattr(row, self.column) if row is not None else None
        self.result = dict(value) if isinstance(value, Mapping) else _scalar(value)


class ConfigureChassis(_Command):
    """Set keys of ``Open_vSwitch:external_ids`` (ovn-controller's settings), and remove
    the keys of ``remove``."""

    def __init__(self, api: Any, settings: Mapping[str, str],
                 remove: Iterable[str] = ()) -> None:
        super().__init__(api)
        self.settings = dict(settings)
        self.remove = frozenset(remove)

    def run_idl(self, txn: Any) -> None:
        row = next(iter(self.api._tables["Open_vSwitch"].rows.values()))
        merged = {key: value for key, value in {**row.external_ids, **self.settings}.items()
                  if key not in self.remove}
        if merged != dict(row.external_ids):
            row.external_ids = merged


class EnsureBridge(_Command):
    """The integration bridge; its datapath type is only chosen when it is created."""

    def __init__(self, api: Any, name: str, datapath_type: str) -> None:
        super().__init__(api)
        self.name, self.datapath_type = name, datapath_type

    def run_idl(self, txn: Any) -> None:
        bridge = idlutils.row_by_value(self.api.idl, "Bridge", "name", self.name, None)
        if bridge is not None:
            self.result = bridge.datapath_type or "system"
            return
        interface = txn.insert(self.api._tables["Interface"])
        interface.name = self.name
        interface.type = "internal"
        port = txn.insert(self.api._tables["Port"])
        port.name = self.name
        port.interfaces = [interface]
        bridge = txn.insert(self.api._tables["Bridge"])
        bridge.name = self.name
        bridge.ports = [port]
        bridge.datapath_type = self.datapath_type
        bridge.fail_mode = ["secure"]
        bridge.other_config = {"disable-in-band": "true"}
        bridge.external_ids = {OWNER: OWNER_VALUE}
        row = next(iter(self.api._tables["Open_vSwitch"].rows.values()))
        row.addvalue("bridges", bridge)
        self.result = self.datapath_type


class EnsureInternalPort(_Command):
    """An internal port (``ovn0``) bound to a logical port, with a fixed MAC."""

    def __init__(self, api: Any, bridge: str, name: str, iface_id: str, mac: str,
                 mtu: int) -> None:
        super().__init__(api)
        self.bridge, self.name, self.iface_id, self.mac, self.mtu = (
            bridge, name, iface_id, mac, mtu)

    def run_idl(self, txn: Any) -> None:
        port = self.port_row(self.name)
        ids = {IFACE_ID: self.iface_id, OWNER: OWNER_VALUE}
        if port is None:
            interface = txn.insert(self.api._tables["Interface"])
            interface.name = self.name
            interface.type = "internal"
            interface.external_ids = ids
            interface.mac = [self.mac]
            interface.mtu_request = [self.mtu]
            port = txn.insert(self.api._tables["Port"])
            port.name = self.name
            port.interfaces = [interface]
            port.external_ids = {OWNER: OWNER_VALUE}
            bridge = idlutils.row_by_value(self.api.idl, "Bridge", "name", self.bridge)
            bridge.addvalue("ports", port)
            return
        interface = port.interfaces[0]
        if interface.external_ids.get(IFACE_ID) != self.iface_id:
            interface.external_ids = {**interface.external_ids, **ids}
        if _scalar(interface.mac) != self.mac:
            interface.mac = [self.mac]
        if _scalar(interface.mtu_request) != self.mtu:
            interface.mtu_request = [self.mtu]


# --------------------------------------------------------------------------- the IDL


@dataclass
class _Waiters:
    """Futures waiting for an interface's ``ovn-installed``, by interface name."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    by_name: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = field(
        default_factory=dict)

    def add(self, name: str, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        with self.lock:
            self.by_name.setdefault(name, []).append((loop, future))
        return future

    def discard(self, name: str, future: asyncio.Future[None]) -> None:
        with self.lock:
            remaining = [(loop, f) for loop, f in self.by_name.get(name, []) if f is not future]
            if remaining:
                self.by_name[name] = remaining
            else:
                self.by_name.pop(name, None)

    def settle(self, name: str, error: str | None = None) -> None:
        with self.lock:
            waiting = self.by_name.pop(name, [])
        for loop, future in waiting:
            loop.call_soon_threadsafe(_resolve, future, error)

    def pending(self, name: str) -> bool:
        with self.lock:
            return name in self.by_name


def _resolve(future: asyncio.Future[None], error: str | None) -> None:
    if future.done():
        return
    if error:
        future.set_exception(OvsError(error))
    else:
        future.set_result(None)


class _NotifyingIdl(connection.OvsdbIdl):  # type: ignore[misc]
    """The IDL, telling waiters when an interface becomes installed (or fails)."""

    def __init__(self, remote: str, helper: Any, waiters: _Waiters) -> None:
        super().__init__(remote, helper)
        self.waiters = waiters

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        if event == "delete" or row._table.name != "Interface":
            return
        name = row.name
        if not self.waiters.pending(name):
            return
        if row.external_ids.get(INSTALLED) == "true":
            self.waiters.settle(name)
        elif _scalar(row.error):
            self.waiters.settle(name, f"interface {name}: {_scalar(row.error)}")


class _Transaction(transaction.Transaction):  # type: ignore[misc]
    """A transaction that does not wait for ovs-vswitchd to apply it (ovs-vsctl's
    ``--no-wait``): pod ports wait for ``ovn-installed`` instead, which comes later."""

    def pre_commit(self, txn: Any) -> None:
        txn.expected_ifaces = set()


class _Api(own_connection(impl_idl.OvsdbIdl)):  # type: ignore[misc]
    """ovsdbapp's Open_vSwitch API with its connection per instance (two agents in one
    process must not share one) and transactions that do not wait for vswitchd."""

    def create_transaction(self, check_error: bool = False, log_errors: bool = True,
                           **kwargs: Any) -> Any:
        return _Transaction(self, self.ovsdb_connection, check_error=check_error,
                            log_errors=log_errors)


class Ovs:
    """The Open_vSwitch database of this node."""

    def __init__(self, remote: str, timeout_s: float = 10.0, workers: int = 16) -> None:
        self.remote = remote
        self.timeout_s = timeout_s
        self.waiters = _Waiters()
        self.api: Any = None
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "ovsdb")

    async def _call(self, job: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    async def start(self) -> None:
        try:
            self.api = await self._call(self._connect)
        except Exception as exc:
            raise OvsError(f"cannot connect to the Open_vSwitch database {self.remote}: "
                           f"{exc}") from exc

    def _connect(self) -> Any:
        helper = idlutils.get_schema_helper(self.remote, "Open_vSwitch")
        for table, columns in TABLES.items():
            helper.register_columns(table, list(columns))
        idl = _NotifyingIdl(self.remote, helper, self.waiters)
        return _Api(connection.Connection(idl, timeout=self.timeout_s))

    async def stop(self) -> None:
        if self.api is not None:
            await self._call(lambda: self.api.ovsdb_connection.stop(self.timeout_s))
            self.api = None
        self._pool.shutdown(wait=False)

    async def transact(self, *commands: Any) -> list[Any]:
        def run() -> list[Any]:
            with self.api.transaction(check_error=True, log_errors=False) as txn:
                for cmd in commands:
                    txn.add(cmd)
            return [cmd.result for cmd in commands]

        try:
            return await self._call(run)
        except OvsError:
            raise
        except Exception as exc:
            raise OvsError(f"OVSDB transaction failed: {type(exc).__name__}: {exc}") from exc

    async def read(self, cmd: Any) -> Any:
        try:
            return await self._call(lambda: cmd.execute(check_error=True, log_errors=False))
        except Exception as exc:
            raise OvsError(f"reading the Open_vSwitch database: {exc}") from exc

    # ------------------------------------------------------------- pod ports

    async def ensure_pod_port(self, bridge: str, name: str, external_ids: Mapping[str, str],
                              mtu: int, qos: QosPlan) -> None:
        await self.transact(EnsurePodPort(self.api, bridge, name, external_ids, mtu, qos))

    async def set_qos(self, name: str, qos: QosPlan) -> None:
        await self.transact(SetPortQos(self.api, name, qos))

    async def delete_port(self, name: str) -> bool:
        (deleted,) = await self.transact(DeletePodPort(self.api, name))
        return bool(deleted)

    async def port(self, name: str) -> PortRecord | None:
        records: list[PortRecord] = await self.read(ReadPorts(self.api, [name]))
        return records[0] if records else None

    async def pod_ports(self) -> list[PortRecord]:
        """Every port podnet owns on this node."""
        records: list[PortRecord] = await self.read(ReadPorts(self.api))
        return records

    def watch_installed(self, name: str) -> asyncio.Future[None]:
        """A future resolved once ``name`` is installed; call before the port is made."""
        return self.waiters.add(name, asyncio.get_running_loop())

    async def wait_installed(self, name: str, future: asyncio.Future[None],
                             timeout_s: float) -> None:
        """Wait for a :meth:`watch_installed` future; raises ``TimeoutError``."""
        try:
            record = await self.port(name)
            if record is not None and record.installed:
                return
            async with asyncio.timeout(timeout_s):
                await future
        finally:
            self.waiters.discard(name, future)

    # -------------------------------------------------------------- bootstrap

    async def chassis_settings(self) -> dict[str, str]:
        value = await self.read(ReadRow(self.api, "Open_vSwitch", None, "external_ids"))
        return dict(value or {})

    async def configure_chassis(self, settings: Mapping[str, str],
                                remove: Iterable[str] = ()) -> None:
        await self.transact(ConfigureChassis(self.api, settings, remove))

    async def ensure_bridge(self, name: str, datapath_type: str) -> str:
        """Create the bridge if missing; returns the datapath type it has."""
        (actual,) = await self.transact(EnsureBridge(self.api, name, datapath_type))
        return str(actual)

    async def ensure_internal_port(self, bridge: str, name: str, iface_id: str, mac: str,
                                   mtu: int) -> None:
        await self.transact(EnsureInternalPort(self.api, bridge, name, iface_id, mac, mtu))
