"""OVN central clustered on raft: NB and SB each on three ``ovsdb-server`` processes and
two ``ovn-northd`` in active/standby, as OVN central runs in production (Kube-OVN's
ovn-central, the OVN-IC databases).

podnet's sync worker, ``podnet trace`` and ovn-controller take a comma-separated list of
members; python-ovs connects to the leader and follows it when it changes. What that
costs (a transaction lost with the leader, a resync) has to be seen against real
members, so this module makes them: each member in its own data file and process,
clients on its unix socket (reachable from the lab's node namespaces, which have their
own loopback), raft between members on loopback TCP, started and killed by PID. The raft
addresses are written into the data files when they are made, so a restart needs none.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from podnet.daemons import free_port, require_binary
from podnet.ovn import NB_SCHEMA, SB_SCHEMA, OvnError, OvsDaemon, _ctl, run, wait_for

LEADER = "Role: leader"


@dataclass
class RaftMember:
    """One member of a clustered database."""

    index: int
    daemon: OvsDaemon
    socket: Path
    db: Path

    @property
    def remote(self) -> str:
        return f"unix:{self.socket}"


@dataclass
class RaftDatabase:
    """A database (``name``, e.g. ``OVN_Northbound``) of ``schema`` on ``size`` members."""

    directory: Path
    schema: Path
    name: str
    size: int = 3
    prefix: str = "db"
    client_remotes: Sequence[str] = ()
    """Per member, one more passive remote for clients (``ptcp:PORT:IP``), beside its
    unix socket: the OVN-IC databases are reached over TCP from every AZ."""
    netns: str | None = None
    """The network namespace the members run in (the current one when None)."""
    members: list[RaftMember] = field(init=False)

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()
        if self.client_remotes and len(self.client_remotes) != self.size:
            raise OvnError(f"{len(self.client_remotes)} client remotes for {self.size} members")
        self.members = [self._member(i) for i in range(self.size)]

    def _member(self, index: int) -> RaftMember:
        name = f"{self.prefix}{index}"
        db, socket = self.directory / f"{name}.db", self.directory / f"{name}.sock"
        remotes = [f"--remote=punix:{socket}"]
        if self.client_remotes:
            remotes.append(f"--remote={self.client_remotes[index]}")
        daemon = OvsDaemon(name, "ovsdb-server", self.directory, netns=self.netns,
                           args=[*remotes, str(db)])
        return RaftMember(index, daemon, socket, db)

    @property
    def remote(self) -> str:
        """Every member, as clients take them (python-ovs finds the leader)."""
        return ",".join(member.remote for member in self.members)

    def create(self) -> None:
        """Make the data files: the first member creates the cluster, the rest join it."""
        if all(member.db.exists() for member in self.members):
            return
        tool = require_binary("ovsdb-tool")
        self.directory.mkdir(parents=True, exist_ok=True)
        for member in self.members:
            member.db.unlink(missing_ok=True)  # half made: start again
        first, *others = self.members
        founder = f"tcp:127.0.0.1:{free_port()}"
        run([tool, "create-cluster", str(first.db), str(self.schema), founder])
        for member in others:
            run([tool, "join-cluster", str(member.db), self.name,
                 f"tcp:127.0.0.1:{free_port()}", founder])

    def start(self, timeout_s: float = 30.0) -> RaftDatabase:
        """Start every member that is not running, and wait until one leads."""
        self.create()
        for member in self.members:
            member.daemon.start()
        wait_for(lambda: self.leader() is not None, timeout_s, f"a {self.name} raft leader",
                 self._statuses)
        return self

    def stop(self) -> None:
        for member in self.members:
            member.daemon.stop()

    def role(self, member: RaftMember) -> str:
        """The member's ``cluster/status`` (empty when it does not answer)."""
        with contextlib.suppress(OvnError):
            return member.daemon.appctl("cluster/status", self.name, timeout_s=2)
        return ""

    def _statuses(self) -> str:
        return "\n".join(f"{m.daemon.name}: {self.role(m) or '(no answer)'}"
                         for m in self.members)

    def leader(self) -> RaftMember | None:
        return next((m for m in self.members if LEADER in self.role(m)), None)

    def kill(self, member: RaftMember) -> None:
        """SIGKILL the member (a machine lost), by the PID it recorded."""
        pid = member.daemon.pid()
        if pid is None:
            raise OvnError(f"{member.daemon.name} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while member.daemon.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        member.daemon.pidfile.unlink(missing_ok=True)

    def __enter__(self) -> RaftDatabase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RaftCentral:
    """OVN central on raft: what ``OvnCentral`` offers, with every database clustered."""

    directory: Path
    size: int = 3
    nb: RaftDatabase = field(init=False)
    sb: RaftDatabase = field(init=False)
    northds: tuple[OvsDaemon, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()
        self.nb = RaftDatabase(self.directory, NB_SCHEMA, "OVN_Northbound", self.size, "nb")
        self.sb = RaftDatabase(self.directory, SB_SCHEMA, "OVN_Southbound", self.size, "sb")
        self.northds = tuple(OvsDaemon(
            f"ovn-northd-{index}", "ovn-northd", self.directory,
            args=[f"--ovnnb-db={self.nb.remote}", f"--ovnsb-db={self.sb.remote}"],
            env={"OVN_RUNDIR": str(self.directory)}) for index in range(2))

    @property
    def nb_remote(self) -> str:
        return self.nb.remote

    @property
    def sb_remote(self) -> str:
        return self.sb.remote

    @property
    def daemons(self) -> tuple[OvsDaemon, ...]:
        return (*(m.daemon for m in self.nb.members), *(m.daemon for m in self.sb.members),
                *self.northds)

    def pids(self) -> dict[str, int]:
        return {d.name: pid for d in self.daemons if (pid := d.pid()) is not None}

    def start(self, timeout_s: float = 30.0) -> RaftCentral:
        self.nb.start(timeout_s)
        self.sb.start(timeout_s)
        for northd in self.northds:
            northd.start()
        wait_for(lambda: self.active_northd() is not None, timeout_s, "an active ovn-northd",
                 lambda: "\n".join(f"{d.name}: {self._northd_status(d)}" for d in self.northds))
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        for daemon in self.northds:
            daemon.stop(timeout_s)
        self.sb.stop()
        self.nb.stop()

    def _northd_status(self, northd: OvsDaemon) -> str:
        with contextlib.suppress(OvnError):
            return northd.appctl("status", timeout_s=2).strip()
        return ""

    def active_northd(self) -> OvsDaemon | None:
        return next((d for d in self.northds if "active" in self._northd_status(d)), None)

    def roles(self) -> dict[str, str]:
        """Each daemon's part: raft leader or follower, northd active or standby."""
        found = {}
        for db in (self.nb, self.sb):
            for member in db.members:
                status = db.role(member)
                role = next((line.split(":", 1)[1].strip() for line in status.splitlines()
                             if line.startswith("Role:")), "")
                found[member.daemon.name] = role or "-"
        for northd in self.northds:
            status = self._northd_status(northd)
            found[northd.name] = status.split(":", 1)[-1].strip() if status else "-"
        return found

    def nbctl(self, *args: str, timeout_s: float = 10.0) -> str:
        return _ctl("ovn-nbctl", self.nb_remote, args, timeout_s)

    def sbctl(self, *args: str, timeout_s: float = 10.0) -> str:
        return _ctl("ovn-sbctl", self.sb_remote, args, timeout_s)

    def __enter__(self) -> RaftCentral:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
