"""One ``ovn-ic`` per availability zone, supervised by PID.

``ovn-ic`` is the OVN daemon that copies an AZ's transit-switch ports, gateways and
routes to the IC databases and learns the other AZs' back. podnet-ic starts it with
``--detach`` and files of its own under the state directory (``ovn-ic.pid``, ``.log``,
``.ctl``; one controller serves one AZ, so a state directory holds one). On every
reconcile it checks that the PID in that pidfile is alive and is the ``ovn-ic``
started with exactly these arguments (so a reused PID is never taken for it, and
changed databases mean a restart), starts it again if not, and stops it by that PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from podnet_plumbing.processes import command_line, running


class IcDaemonError(RuntimeError):
    """``ovn-ic`` could not be started; the message carries its output."""


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass(frozen=True)
class IcDaemon:
    """``ovn-ic`` for AZ ``az`` between the local NB/SB and the IC NB/SB."""

    state_dir: Path
    az: str
    ovn_nb: str
    ovn_sb: str
    ic_nb: str
    ic_sb: str
    program: str = "ovn-ic"

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", self.state_dir.resolve())

    name = "ovn-ic"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    @property
    def ctl(self) -> Path:
        return self.state_dir / f"{self.name}.ctl"

    def _binary(self) -> str:
        found = shutil.which(self.program) or shutil.which(
            self.program, path="/usr/bin:/usr/sbin:/bin:/sbin")
        if found is None:
            raise IcDaemonError(f"{self.program} is not installed (Debian: ovn-ic)")
        return found

    def arguments(self) -> list[str]:
        """What ``ovn-ic`` runs with, after the program name."""
        return [
            f"--ovnnb-db={self.ovn_nb}", f"--ovnsb-db={self.ovn_sb}",
            f"--ic-nb-db={self.ic_nb}", f"--ic-sb-db={self.ic_sb}",
            f"--pidfile={self.pidfile}", f"--log-file={self.logfile}",
            f"--unixctl={self.ctl}", "--detach", "--no-chdir",
        ]

    def pid(self) -> int | None:
        """The PID of our ``ovn-ic`` (recorded in our pidfile, naming it), if it runs."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if f"--pidfile={self.pidfile}" not in command_line(pid) or not running(pid):
            return None
        return pid

    def current(self) -> bool:
        """Whether ours runs with exactly today's arguments."""
        pid = self.pid()
        return pid is not None and command_line(pid)[1:] == self.arguments()

    def ensure(self) -> int | None:
        """Start ``ovn-ic`` unless it runs with these arguments (restarting one that runs
        with others); the PID of a fresh start, None when nothing had to be done."""
        if self.current():
            return None
        self.stop()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [self._binary(), *self.arguments()], capture_output=True, text=True,
                stdin=subprocess.DEVNULL, timeout=30, check=False,
                env={**os.environ, "OVN_RUNDIR": str(self.state_dir)})
        except subprocess.TimeoutExpired as exc:
            raise IcDaemonError(f"{self.name} did not start within 30 s") from exc
        pid = self.pid()
        if done.returncode != 0 or pid is None:
            raise IcDaemonError(
                f"{self.name} failed to start (exit {done.returncode}): "
                f"{done.stderr.strip()}\n{_tail(self.logfile)}")
        return pid

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop ours by PID (SIGTERM, then SIGKILL); whether one ran."""
        pid = self.pid()
        if pid is None:
            return False
        for number in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)
            deadline = time.monotonic() + timeout_s
            while running(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not running(pid):
                break
        self.pidfile.unlink(missing_ok=True)
        return True


def stop_any(state_dir: Path) -> bool:
    """Stop the ``ovn-ic`` we started in ``state_dir``, whatever its AZ and databases
    (on teardown); whether one ran."""
    return IcDaemon(state_dir, "", "", "", "", "").stop()
