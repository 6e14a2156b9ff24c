"""An OVSDB database clustered on raft: three ``ovsdb-server`` processes, as OVN central
runs in production (Kube-OVN's ovn-central, the OVN-IC databases).

podnet's sync worker, ``podnet trace`` and ovn-controller take a comma-separated list of
members; python-ovs connects to the leader and follows it when it changes. What that
costs (a transaction lost with the leader, a resync) has to be seen against real
members, so this module makes them: each member in its own data file and process, with
its own client port and raft port on loopback, started and killed by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from podnet.daemons import free_port, require_binary
from podnet.ovn import OvnError, OvsDaemon, run, wait_for

LEADER = "Role: leader"


@dataclass
class RaftMember:
    """One member of a clustered database."""

    index: int
    daemon: OvsDaemon
    client_port: int
    raft_port: int
    db: Path

    @property
    def remote(self) -> str:
        return f"tcp:127.0.0.1:{self.client_port}"

    @property
    def raft_address(self) -> str:
        return f"tcp:127.0.0.1:{self.raft_port}"


@dataclass
class RaftDatabase:
    """A database (``name``, e.g. ``OVN_Northbound``) of ``schema`` on ``size`` members."""

    directory: Path
    schema: Path
    name: str
    size: int = 3
    prefix: str = "db"
    members: list[RaftMember] = field(init=False)

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()
        self.members = [self._member(i) for i in range(self.size)]

    def _member(self, index: int) -> RaftMember:
        client, raft = free_port(), free_port()
        db = self.directory / f"{self.prefix}{index}.db"
        daemon = OvsDaemon(f"{self.prefix}{index}", "ovsdb-server", self.directory, args=[
            f"--remote=ptcp:{client}:127.0.0.1",
            f"--remote=punix:{self.directory / f'{self.prefix}{index}.sock'}", str(db)])
        return RaftMember(index, daemon, client, raft, db)

    @property
    def remote(self) -> str:
        """Every member, as clients take them (python-ovs finds the leader)."""
        return ",".join(member.remote for member in self.members)

    def create(self) -> None:
        """Make the data files: the first member creates the cluster, the rest join it."""
        tool = require_binary("ovsdb-tool")
        self.directory.mkdir(parents=True, exist_ok=True)
        first, *others = self.members
        if not first.db.exists():
            run([tool, "create-cluster", str(first.db), str(self.schema), first.raft_address])
        for member in others:
            if not member.db.exists():
                run([tool, "join-cluster", str(member.db), self.name, member.raft_address,
                     first.raft_address])

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
