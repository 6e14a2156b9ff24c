"""Real OVN and Open vSwitch daemons, each in a directory podnet owns, stopped by PID.

``podnet up`` and the tests need a working OVN without touching the system's own
``/var/run/openvswitch`` or ``/var/run/ovn`` and without service scripts (``ovn-ctl``,
``systemctl``), so that several copies can run side by side and nothing outside the
directory is left behind. Three facts drive the shape of this module:

* Daemons of one kind side by side need their own ``--pidfile`` and ``--unixctl``, and
  their own ``OVS_RUNDIR``/``OVN_RUNDIR``: ``ovs-vswitchd`` puts its ``<bridge>.mgmt``
  sockets there and ``ovn-controller`` (which has no ``--unixctl`` option) finds them
  there and puts its own control socket there.
* Without the kernel's openvswitch module the datapath is userspace
  (``datapath_type=netdev``). Its bridges are persistent tap devices of the network
  namespace, so one namespace holds one such OVS, and ``ovs-vswitchd`` is stopped with
  ``exit --cleanup`` or its taps outlive it. Several nodes on one machine are therefore
  network namespaces, joined by an :class:`Underlay`; userspace Geneve needs the node's
  underlay address on a netdev bridge (``br-phy``) and an OVS route through it.
* Every daemon is started with ``--detach``: the command returns once the daemon is
  ready (or failed), and the daemon records its PID in the pidfile we named. ``stop``
  signals only a PID whose command line names that pidfile, so a reused PID is never hit,
  and another process (``podnet down``) can stop what ``podnet up`` started.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from podnet.daemons import DaemonError, free_port, require_binary
from podnet_plumbing.processes import command_line, running

NB_SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
SB_SCHEMA = Path("/usr/share/ovn/ovn-sb.ovsschema")
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")

INTEGRATION_BRIDGE = "br-int"
UNDERLAY_BRIDGE = "br-phy"


class OvnError(DaemonError):
    """An OVN/OVS daemon or command failed; the message carries its output or log tail."""


# --- commands ---------------------------------------------------------------------------


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside network namespace ``netns`` (as is when ``netns`` is None)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> str:
    """Run a command to completion and return its stdout; raise :class:`OvnError` on failure."""
    full = in_netns(netns, argv)
    try:
        done = subprocess.run(
            full, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OvnError(f"{' '.join(full)} did not finish in {timeout_s}s") from exc
    if done.returncode != 0:
        raise OvnError(
            f"{' '.join(full)} exited with {done.returncode}: {done.stderr.strip()}"
        )
    return done.stdout


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_for(
    check: Callable[[], bool], timeout_s: float, what: str, diagnose: Callable[[], str]
) -> None:
    """Poll ``check`` until true; raise :class:`OvnError` with ``diagnose()`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            raise OvnError(f"{what} not ready after {timeout_s}s\n{diagnose()}")
        time.sleep(0.05)


# --- processes --------------------------------------------------------------------------


@dataclass
class OvsDaemon:
    """One OVS-library daemon (ovsdb-server, ovs-vswitchd, ovn-northd, ovn-controller).

    Its files are ``<directory>/<name>.pid``, ``.log``, ``.ctl`` (control socket, unless
    the program has no ``--unixctl``) and ``.out`` (what it printed while starting).
    """

    name: str
    program: str
    directory: Path
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    netns: str | None = None
    unixctl: bool = True
    graceful_exit: Sequence[str] = ()
    """``ovs-appctl`` command that stops it cleanly; SIGTERM when empty."""

    @property
    def pidfile(self) -> Path:
        return self.directory / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def ctl(self) -> Path:
        """The control socket (``ovs-appctl -t``); ovn-controller names it by its PID."""
        if self.unixctl:
            return self.directory / f"{self.name}.ctl"
        return self.directory / f"{self.program}.{self.pid() or 0}.ctl"

    def argv(self) -> list[str]:
        argv = [
            require_binary(self.program), *self.args,
            f"--pidfile={self.pidfile}", f"--log-file={self.logfile}",
            "--detach", "--no-chdir",
        ]
        if self.unixctl:
            argv.append(f"--unixctl={self.ctl}")
        return argv

    def pid(self) -> int | None:
        """The PID of our running daemon: recorded in our pidfile and naming it."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        ours = f"--pidfile={self.pidfile}" in command_line(pid)
        return pid if ours and running(pid) else None

    def start(self) -> int:
        """Start the daemon unless it already runs; returns its PID once it is up."""
        running = self.pid()
        if running is not None:
            return running
        self.directory.mkdir(parents=True, exist_ok=True)
        out = self.directory / f"{self.name}.out"
        with out.open("wb") as sink:
            try:
                returncode = subprocess.run(
                    in_netns(self.netns, self.argv()), stdin=subprocess.DEVNULL, stdout=sink,
                    stderr=subprocess.STDOUT, env={**os.environ, **self.env}, timeout=60,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                returncode = -1
        pid = self.pid()
        if returncode != 0 or pid is None:
            raise OvnError(
                f"{self.name} failed to start (exit {returncode}):\n"
                f"{log_tail(out)}\n--- {self.logfile}:\n{log_tail(self.logfile)}"
            )
        return pid

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop our daemon (clean exit, then SIGTERM, then SIGKILL); whether one ran."""
        pid = self.pid()
        if pid is None:
            return False
        if self.graceful_exit:
            with contextlib.suppress(OvnError):
                self.appctl(*self.graceful_exit, timeout_s=timeout_s)
        else:
            _signal(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout_s):
            _signal(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout_s):
                _signal(pid, signal.SIGKILL)
                _wait_gone(pid, timeout_s)
        self.pidfile.unlink(missing_ok=True)
        return True

    def appctl(self, *args: str, timeout_s: float = 10.0) -> str:
        """Run ``ovs-appctl`` against this daemon's control socket."""
        argv = [require_binary("ovs-appctl"), f"--timeout={max(1, int(timeout_s))}",
                "-t", str(self.ctl), *args]
        return run(argv, netns=self.netns, env=self.env, timeout_s=timeout_s + 5)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def create_db(path: Path, schema: Path) -> None:
    """Create an OVSDB file from ``schema`` unless it exists (data survives restarts)."""
    if path.exists():
        return
    if not schema.exists():
        raise OvnError(f"schema {schema} is missing (install ovn-central/openvswitch-switch)")
    path.parent.mkdir(parents=True, exist_ok=True)
    run([require_binary("ovsdb-tool"), "create", str(path), str(schema)])


# --- OVN central ------------------------------------------------------------------------


@dataclass
class OvnCentral:
    """OVN's northbound and southbound databases and ``ovn-northd``, in ``directory``.

    Each database listens on a unix socket in the directory and on loopback TCP
    (``nb_port``/``sb_port``; ``None`` for no TCP). Data lives in ``ovnnb_db.db`` and
    ``ovnsb_db.db`` and survives ``stop``/``start``.
    """

    directory: Path
    nb_port: int | None = field(default_factory=free_port)
    sb_port: int | None = field(default_factory=free_port)
    listen_host: str = "127.0.0.1"
    nb_args: Sequence[str] = ()
    """More ``ovsdb-server`` options for the NB, e.g. an ``--remote=pssl:...`` with its
    ``--private-key``, ``--certificate`` and ``--ca-cert``."""
    nb: OvsDaemon = field(init=False)
    sb: OvsDaemon = field(init=False)
    northd: OvsDaemon = field(init=False)

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()
        self.nb = self._db_server("ovnnb_db", self.nb_port, self.nb_args)
        self.sb = self._db_server("ovnsb_db", self.sb_port)
        self.northd = OvsDaemon(
            "ovn-northd", "ovn-northd", self.directory,
            args=[f"--ovnnb-db={self.nb_remote}", f"--ovnsb-db={self.sb_remote}"],
            env={"OVN_RUNDIR": str(self.directory)},
        )

    def _db_server(self, name: str, port: int | None, extra: Sequence[str] = ()) -> OvsDaemon:
        remotes = [f"--remote=punix:{self.directory / f'{name}.sock'}"]
        if port is not None:
            remotes.append(f"--remote=ptcp:{port}:{self.listen_host}")
        return OvsDaemon(
            name, "ovsdb-server", self.directory,
            args=[*remotes, *extra, str(self.directory / f"{name}.db")],
        )

    @property
    def nb_remote(self) -> str:
        return f"unix:{self.directory / 'ovnnb_db.sock'}"

    @property
    def sb_remote(self) -> str:
        return f"unix:{self.directory / 'ovnsb_db.sock'}"

    @property
    def nb_tcp(self) -> str:
        return _tcp_remote(self.listen_host, self.nb_port, "northbound")

    @property
    def sb_tcp(self) -> str:
        return _tcp_remote(self.listen_host, self.sb_port, "southbound")

    @property
    def daemons(self) -> tuple[OvsDaemon, ...]:
        return (self.nb, self.sb, self.northd)

    def pids(self) -> dict[str, int]:
        """The running daemons by name."""
        return {d.name: pid for d in self.daemons if (pid := d.pid()) is not None}

    def start(self, timeout_s: float = 20.0) -> OvnCentral:
        """Start what is not running yet and wait until northd is active."""
        create_db(self.directory / "ovnnb_db.db", NB_SCHEMA)
        create_db(self.directory / "ovnsb_db.db", SB_SCHEMA)
        self._start_nb(timeout_s)
        self.sb.start()
        self._wait_db(self.sbctl, self.sb, timeout_s)
        self.northd.start()
        wait_for(self._northd_active, timeout_s, "ovn-northd", self._northd_diagnosis)
        return self

    def _start_nb(self, timeout_s: float) -> None:
        self.nb.start()
        self._wait_db(self.nbctl, self.nb, timeout_s)

    def _wait_db(self, ctl: Callable[..., str], daemon: OvsDaemon, timeout_s: float) -> None:
        def answers() -> bool:
            try:
                ctl("show", timeout_s=2)
            except OvnError:
                return False
            return True

        wait_for(answers, timeout_s, daemon.name, lambda: log_tail(daemon.logfile))

    def _northd_active(self) -> bool:
        try:
            return "active" in self.northd.appctl("status", timeout_s=2)
        except OvnError:
            return False

    def _northd_diagnosis(self) -> str:
        return f"--- {self.northd.logfile}:\n{log_tail(self.northd.logfile)}"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop northd, then both databases, by the PIDs in our pidfiles."""
        for daemon in (self.northd, self.nb, self.sb):
            daemon.stop(timeout_s)

    def restart_nb(self, timeout_s: float = 20.0) -> None:
        """Stop and start the northbound server alone, keeping its database file."""
        self.nb.stop()
        self._start_nb(timeout_s)

    def nbctl(self, *args: str, timeout_s: float = 10.0) -> str:
        """Run ``ovn-nbctl`` against the northbound database."""
        return _ctl("ovn-nbctl", self.nb_remote, args, timeout_s)

    def sbctl(self, *args: str, timeout_s: float = 10.0) -> str:
        """Run ``ovn-sbctl`` against the southbound database."""
        return _ctl("ovn-sbctl", self.sb_remote, args, timeout_s)

    def appctl(self, target: str, *args: str) -> str:
        """``ovs-appctl`` for ``nb``, ``sb`` or ``northd``."""
        daemons = {"nb": self.nb, "sb": self.sb, "northd": self.northd}
        return daemons[target].appctl(*args)

    def __enter__(self) -> OvnCentral:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tcp_remote(host: str, port: int | None, which: str) -> str:
    if port is None:
        raise OvnError(f"the {which} database was configured without a TCP port")
    return f"tcp:{host}:{port}"


def _ctl(program: str, remote: str, args: Sequence[str], timeout_s: float) -> str:
    argv = [require_binary(program), f"--db={remote}", f"--timeout={max(1, int(timeout_s))}",
            *args]
    return run(argv, timeout_s=timeout_s + 5)


# --- OVS node ---------------------------------------------------------------------------


@dataclass
class OvsNode:
    """One OVN chassis: Open_vSwitch ovsdb-server, ``ovs-vswitchd`` and ``ovn-controller``.

    With ``netns`` every daemon runs in that network namespace (created by ``start`` if
    missing, deleted by ``stop`` if ``start`` created it); otherwise in the current one,
    which then must hold no other userspace OVS.
    """

    directory: Path
    name: str
    system_id: str
    ovn_remote: str
    encap_ip: str = "127.0.0.1"
    netns: str | None = None
    ovsdb: OvsDaemon = field(init=False)
    vswitchd: OvsDaemon = field(init=False)
    controller: OvsDaemon = field(init=False)
    created_netns: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()
        env = {"OVS_RUNDIR": str(self.directory), "OVN_RUNDIR": str(self.directory)}
        self.ovsdb = OvsDaemon(
            "ovsdb-server", "ovsdb-server", self.directory, netns=self.netns, env=env,
            args=[f"--remote=punix:{self.db_socket}", str(self.directory / "conf.db")],
        )
        self.vswitchd = OvsDaemon(
            "ovs-vswitchd", "ovs-vswitchd", self.directory, netns=self.netns, env=env,
            args=[self.db_remote], graceful_exit=("exit", "--cleanup"),
        )
        self.controller = OvsDaemon(
            "ovn-controller", "ovn-controller", self.directory, netns=self.netns, env=env,
            args=[self.db_remote], unixctl=False,
        )

    @property
    def db_socket(self) -> Path:
        return self.directory / "db.sock"

    @property
    def db_remote(self) -> str:
        return f"unix:{self.db_socket}"

    @property
    def daemons(self) -> tuple[OvsDaemon, ...]:
        return (self.ovsdb, self.vswitchd, self.controller)

    def pids(self) -> dict[str, int]:
        """The running daemons by name."""
        return {d.name: pid for d in self.daemons if (pid := d.pid()) is not None}

    def start(self, timeout_s: float = 20.0) -> OvsNode:
        """Start the node and wait until its chassis is registered in the southbound DB."""
        self._prepare_namespace()
        create_db(self.directory / "conf.db", OVS_SCHEMA)
        self.ovsdb.start()
        self.vsctl("--no-wait", "init")
        self.vswitchd.start()
        self._configure()
        self.controller.start()
        wait_for(self.chassis_registered, timeout_s, f"chassis {self.system_id}",
                 self._controller_diagnosis)
        return self

    def restart_vswitchd(self) -> int:
        """Start ``ovs-vswitchd`` again after it died, on the datapath it left behind.

        A dead vswitchd leaves its netdev taps and every OVSDB row in place, so the new
        one re-opens the same ports with the same ofports (pods keep their plumbing) and
        ovn-controller reconnects and installs its flows again: nothing to clean first.
        """
        return self.vswitchd.start()

    def _prepare_namespace(self) -> None:
        if self.netns and not netns_exists(self.netns):
            netns_add(self.netns)
            self.created_netns = True
        if self.vswitchd.pid() is None and link_exists("ovs-netdev", self.netns):
            where = f"network namespace {self.netns}" if self.netns else "this namespace"
            raise OvnError(
                f"a userspace OVS datapath (ovs-netdev) already exists in {where}: another "
                "ovs-vswitchd runs there or one was killed without cleanup "
                "(then remove its taps: ip link del ovs-netdev, ip link del br-int)"
            )

    def _configure(self) -> None:
        self.vsctl(
            "set", "Open_vSwitch", ".",
            f"external_ids:system-id={self.system_id}",
            f"external_ids:hostname={self.name}",
            f"external_ids:ovn-remote={self.ovn_remote}",
            "external_ids:ovn-encap-type=geneve",
            f"external_ids:ovn-encap-ip={self.encap_ip}",
            "external_ids:ovn-bridge-datapath-type=netdev",
        )
        self.vsctl(
            "--may-exist", "add-br", INTEGRATION_BRIDGE, "--", "set", "Bridge",
            INTEGRATION_BRIDGE, "datapath_type=netdev", "fail-mode=secure",
            "other-config:disable-in-band=true",
        )

    def chassis_registered(self) -> bool:
        """Whether the southbound DB lists this node's chassis."""
        try:
            out = self.sbctl("--bare", "--columns=name", "find", "Chassis",
                             f"name={self.system_id}", timeout_s=2)
        except OvnError:
            return False
        return out.strip() == self.system_id

    def _controller_diagnosis(self) -> str:
        return f"--- {self.controller.logfile}:\n{log_tail(self.controller.logfile)}"

    def stop(self, timeout_s: float = 5.0, remove_bridges: bool = False) -> None:
        """Stop ovn-controller, vswitchd and ovsdb-server by PID (bridges too, if asked)."""
        if remove_bridges and self.ovsdb.pid() is not None:
            for bridge in (INTEGRATION_BRIDGE, UNDERLAY_BRIDGE):
                with contextlib.suppress(OvnError):
                    self.vsctl("--if-exists", "del-br", bridge)
        for daemon in (self.controller, self.vswitchd, self.ovsdb):
            daemon.stop(timeout_s)
        if self.created_netns and self.netns:
            netns_delete(self.netns)
            self.created_netns = False

    def forget_chassis(self) -> None:
        """Delete this node's chassis from the southbound DB (after ``stop``)."""
        self.sbctl("--if-exists", "chassis-del", self.system_id)

    def vsctl(self, *args: str, timeout_s: float = 10.0) -> str:
        """Run ``ovs-vsctl`` against this node's Open_vSwitch database."""
        argv = [require_binary("ovs-vsctl"), f"--db={self.db_remote}",
                f"--timeout={max(1, int(timeout_s))}", *args]
        return run(argv, netns=self.netns, timeout_s=timeout_s + 5)

    def sbctl(self, *args: str, timeout_s: float = 10.0) -> str:
        """Run ``ovn-sbctl`` against the southbound DB this node's controller uses."""
        argv = [require_binary("ovn-sbctl"), f"--db={self.ovn_remote}",
                f"--timeout={max(1, int(timeout_s))}", *args]
        return run(argv, netns=self.netns, timeout_s=timeout_s + 5)

    def appctl(self, target: str, *args: str) -> str:
        """``ovs-appctl`` for ``ovsdb-server``, ``ovs-vswitchd`` or ``ovn-controller``."""
        daemons = {d.name: d for d in self.daemons}
        return daemons[target].appctl(*args)

    def exec(self, *argv: str, timeout_s: float = 30.0) -> str:
        """Run a command in this node's network namespace."""
        return run(argv, netns=self.netns, timeout_s=timeout_s)

    def wait_port_installed(self, interface: str, timeout_s: float = 10.0) -> None:
        """Wait until ovn-controller has installed the flows of ``interface``'s port."""
        self.vsctl("wait-until", "Interface", interface,
                   "external_ids:ovn-installed=true", timeout_s=timeout_s)

    def add_underlay(self, nic: str, address: str) -> None:
        """Carry Geneve over ``nic``: a netdev ``br-phy`` holding it, ``address`` on br-phy.

        The userspace datapath sends tunnel packets by its own routing table, so the
        underlay network is routed to ``br-phy`` explicitly.
        """
        iface = ipaddress.ip_interface(address)
        self.vsctl("--may-exist", "add-br", UNDERLAY_BRIDGE, "--", "set", "Bridge",
                   UNDERLAY_BRIDGE, "datapath_type=netdev", "--",
                   "--may-exist", "add-port", UNDERLAY_BRIDGE, nic)
        self.exec("ip", "addr", "replace", str(iface), "dev", UNDERLAY_BRIDGE)
        self.exec("ip", "link", "set", UNDERLAY_BRIDGE, "up")
        self.appctl("ovs-vswitchd", "ovs/route/add", str(iface.network), UNDERLAY_BRIDGE)

    def __enter__(self) -> OvsNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- network namespaces and links ---------------------------------------------------------


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def netns_add(name: str) -> None:
    """Create network namespace ``name`` with its loopback up."""
    run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], netns=name)


def netns_delete(name: str) -> None:
    if netns_exists(name):
        run(["ip", "netns", "delete", name])


def link_exists(name: str, netns: str | None = None) -> bool:
    try:
        run(["ip", "link", "show", "dev", name], netns=netns)
    except OvnError:
        return False
    return True


def delete_link(name: str, netns: str | None = None) -> None:
    """Delete a link if it exists (a veth takes its peer with it, possibly just now)."""
    if not link_exists(name, netns):
        return
    try:
        run(["ip", "link", "del", "dev", name], netns=netns)
    except OvnError:
        if link_exists(name, netns):
            raise


def disable_tx_offload(dev: str, netns: str | None = None) -> None:
    """Turn TX checksum offload off: the userspace datapath needs it or TCP fails."""
    run(["ethtool", "-K", dev, "tx", "off"], netns=netns)


@dataclass
class Underlay:
    """The nodes' physical network: a Linux bridge in the current namespace.

    ``attach`` joins a node (which runs in a network namespace) by a veth pair and gives
    it ``address`` (an interface address in this network) on its ``br-phy``.
    """

    bridge: str
    links: list[str] = field(default_factory=list)

    def create(self) -> Underlay:
        if not link_exists(self.bridge):
            run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "link", "set", self.bridge, "up"])
        return self

    def attach(self, node: OvsNode, address: str) -> None:
        if not node.netns:
            raise OvnError(f"node {node.name} runs in no network namespace of its own")
        host_end = f"{self.bridge[:11]}-{len(self.links)}"
        node_end = "underlay0"
        run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end,
             "netns", node.netns])
        self.links.append(host_end)
        run(["ip", "link", "set", host_end, "master", self.bridge, "up"])
        disable_tx_offload(host_end)
        node.exec("ip", "link", "set", node_end, "up")
        disable_tx_offload(node_end, node.netns)
        node.add_underlay(node_end, address)

    def delete(self) -> None:
        for link in self.links:
            delete_link(link)
        self.links.clear()
        delete_link(self.bridge)


class Central(Protocol):
    """OVN central as the lab uses it, single (``OvnCentral``) or on raft
    (``podnet.ovn_raft.RaftCentral``)."""

    directory: Path

    @property
    def nb_remote(self) -> str: ...

    @property
    def sb_remote(self) -> str: ...

    @property
    def daemons(self) -> tuple[OvsDaemon, ...]: ...

    def pids(self) -> dict[str, int]: ...

    def start(self, timeout_s: float = ...) -> Central: ...

    def stop(self, timeout_s: float = ...) -> None: ...

    def nbctl(self, *args: str, timeout_s: float = ...) -> str: ...

    def sbctl(self, *args: str, timeout_s: float = ...) -> str: ...
