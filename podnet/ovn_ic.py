"""The OVN interconnection databases (IC NB and IC SB), as real daemons stopped by PID.

Every availability zone's ``ovn-ic`` reaches the IC databases over TCP, with the
addresses a Kube-OVN user writes into ``ovn-ic-config`` (``ic-db-host``, ``ic-nb-port``,
``ic-sb-port``): one host, or a comma-separated raft cluster whose members all listen on
the same ports. So :class:`IcDatabase` listens on ``ports`` of each address in ``hosts``:

* one host: one standalone ``ovsdb-server`` per database, made with the IC schema;
* three (or any odd number of) hosts: each database on a raft cluster
  (:class:`podnet.ovn_raft.RaftDatabase`), member ``i`` listening for clients on
  ``hosts[i]``. On one machine the members take distinct loopback addresses
  (``127.0.0.1``, ``127.0.0.2``, ``127.0.0.3``), which Linux answers without setup.

Each server also listens on a unix socket in ``directory`` for local tools.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from podnet.daemons import free_port, require_binary
from podnet.ovn import OvnError, OvsDaemon, create_db, log_tail, run, wait_for
from podnet.ovn_raft import RaftDatabase

IC_NB_SCHEMA = Path("/usr/share/ovn/ovn-ic-nb.ovsschema")
IC_SB_SCHEMA = Path("/usr/share/ovn/ovn-ic-sb.ovsschema")
IC_NB_NAME = "OVN_IC_Northbound"
IC_SB_NAME = "OVN_IC_Southbound"
RAFT_HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
"""Three loopback addresses: a raft cluster of IC databases on one machine."""


def _check_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    if not hosts:
        raise OvnError("IcDatabase needs at least one host address")
    if len(hosts) % 2 == 0:
        raise OvnError(f"a raft cluster needs an odd number of members, not {len(hosts)}")
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError as exc:
            raise OvnError(f"IcDatabase host {host!r} is not an IP address") from exc
    if len(set(hosts)) != len(hosts):
        raise OvnError(f"IcDatabase hosts {', '.join(hosts)} repeat an address")
    return tuple(hosts)


def _tcp(host: str, port: int) -> str:
    return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


def _ptcp(host: str, port: int) -> str:
    return f"ptcp:{port}:[{host}]" if ":" in host else f"ptcp:{port}:{host}"


@dataclass
class _Standalone:
    """One database on one ovsdb-server (the shape :class:`RaftDatabase` has, reduced)."""

    directory: Path
    schema: Path
    name: str
    prefix: str
    client_remote: str
    netns: str | None
    daemon: OvsDaemon = field(init=False)

    def __post_init__(self) -> None:
        self.daemon = OvsDaemon(
            self.prefix, "ovsdb-server", self.directory, netns=self.netns,
            args=[f"--remote=punix:{self.socket}", f"--remote={self.client_remote}",
                  str(self.db)])

    @property
    def db(self) -> Path:
        return self.directory / f"{self.prefix}.db"

    @property
    def socket(self) -> Path:
        return self.directory / f"{self.prefix}.sock"

    @property
    def remote(self) -> str:
        return f"unix:{self.socket}"

    @property
    def daemons(self) -> tuple[OvsDaemon, ...]:
        return (self.daemon,)

    def start(self, timeout_s: float = 30.0) -> None:
        create_db(self.db, self.schema)
        self.daemon.start()

    def stop(self) -> None:
        self.daemon.stop()


@dataclass
class IcDatabase:
    """IC NB and IC SB on ``hosts`` (one: standalone; three: raft), ports ``nb_port``
    and ``sb_port`` on every host; data and logs in ``directory``.

    ``nb_remote``/``sb_remote`` are what ``ovn-ic --ic-nb-db``/``--ic-sb-db`` take;
    ``config_map_data`` is the ``ovn-ic-config`` an AZ needs to join.
    """

    directory: Path
    hosts: Sequence[str] = ("127.0.0.1",)
    nb_port: int = field(default_factory=free_port)
    sb_port: int = field(default_factory=free_port)
    netns: str | None = None
    """The network namespace the servers run in (the current one when None)."""
    nb: RaftDatabase | _Standalone = field(init=False)
    sb: RaftDatabase | _Standalone = field(init=False)

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()
        self.hosts = _check_hosts(self.hosts)
        self.nb = self._database(IC_NB_SCHEMA, IC_NB_NAME, "ovn_ic_nb_db", self.nb_port)
        self.sb = self._database(IC_SB_SCHEMA, IC_SB_NAME, "ovn_ic_sb_db", self.sb_port)

    @classmethod
    def clustered(cls, directory: Path, hosts: Sequence[str] = RAFT_HOSTS,
                  nb_port: int | None = None, sb_port: int | None = None,
                  netns: str | None = None) -> IcDatabase:
        """Both databases on a raft cluster of ``len(hosts)`` members."""
        return cls(directory, hosts, nb_port if nb_port is not None else free_port(),
                   sb_port if sb_port is not None else free_port(), netns)

    def _database(self, schema: Path, name: str, prefix: str,
                  port: int) -> RaftDatabase | _Standalone:
        if len(self.hosts) == 1:
            return _Standalone(self.directory, schema, name, prefix,
                               _ptcp(self.hosts[0], port), self.netns)
        return RaftDatabase(
            self.directory, schema, name, len(self.hosts), prefix=f"{prefix}-",
            client_remotes=[_ptcp(host, port) for host in self.hosts], netns=self.netns)

    @property
    def is_clustered(self) -> bool:
        return len(self.hosts) > 1

    @property
    def db_host(self) -> str:
        """``ic-db-host`` as ``ovn-ic-config`` spells it: the hosts, comma-separated."""
        return ",".join(self.hosts)

    @property
    def nb_remote(self) -> str:
        """The IC NB over TCP, every member: ``tcp:H1:P,tcp:H2:P,...``."""
        return ",".join(_tcp(host, self.nb_port) for host in self.hosts)

    @property
    def sb_remote(self) -> str:
        return ",".join(_tcp(host, self.sb_port) for host in self.hosts)

    @property
    def nb_unix(self) -> str:
        """The IC NB over the unix socket(s) in ``directory`` (for local tools)."""
        return self.nb.remote

    @property
    def sb_unix(self) -> str:
        return self.sb.remote

    def config_map_data(self, az_name: str, gw_nodes: Sequence[str],
                        auto_route: bool = True) -> dict[str, str]:
        """The data of ``kube-system/ovn-ic-config`` that joins AZ ``az_name`` to us."""
        return {
            "enable-ic": "true",
            "az-name": az_name,
            "ic-db-host": self.db_host,
            "ic-nb-port": str(self.nb_port),
            "ic-sb-port": str(self.sb_port),
            "gw-nodes": ",".join(gw_nodes),
            "auto-route": "true" if auto_route else "false",
        }

    @property
    def daemons(self) -> tuple[OvsDaemon, ...]:
        return tuple(_daemons(self.nb)) + tuple(_daemons(self.sb))

    def pids(self) -> dict[str, int]:
        """The running servers by name."""
        return {d.name: pid for d in self.daemons if (pid := d.pid()) is not None}

    def start(self, timeout_s: float = 30.0) -> IcDatabase:
        """Start what is not running and wait until both databases answer over TCP."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for database in (self.nb, self.sb):
            database.start(timeout_s)
        wait_for(_answers(self.nbctl), timeout_s, f"IC NB on {self.db_host}",
                 lambda: _diagnosis(_daemons(self.nb)))
        wait_for(_answers(self.sbctl), timeout_s, f"IC SB on {self.db_host}",
                 lambda: _diagnosis(_daemons(self.sb)))
        return self

    def stop(self) -> None:
        """Stop every server by the PID it recorded (data files stay)."""
        for database in (self.nb, self.sb):
            database.stop()

    def nbctl(self, *args: str, timeout_s: float = 10.0) -> str:
        """``ovn-ic-nbctl`` against the IC NB, over TCP as the AZs reach it."""
        return _ic_ctl("ovn-ic-nbctl", self.nb_remote, args, timeout_s, self.netns)

    def sbctl(self, *args: str, timeout_s: float = 10.0) -> str:
        """``ovn-ic-sbctl`` against the IC SB."""
        return _ic_ctl("ovn-ic-sbctl", self.sb_remote, args, timeout_s, self.netns)

    def __enter__(self) -> IcDatabase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _daemons(database: RaftDatabase | _Standalone) -> list[OvsDaemon]:
    if isinstance(database, RaftDatabase):
        return [member.daemon for member in database.members]
    return list(database.daemons)


def _answers(ctl: Callable[..., str]) -> Callable[[], bool]:
    def check() -> bool:
        with contextlib.suppress(OvnError):
            ctl("show", timeout_s=2)
            return True
        return False

    return check


def _diagnosis(daemons: Sequence[OvsDaemon]) -> str:
    return "\n".join(f"--- {d.logfile}:\n{log_tail(d.logfile)}" for d in daemons)


def _ic_ctl(program: str, remote: str, args: Sequence[str], timeout_s: float,
            netns: str | None) -> str:
    argv = [require_binary(program), f"--db={remote}", f"--timeout={max(1, int(timeout_s))}",
            *args]
    return run(argv, netns=netns, timeout_s=timeout_s + 5)
