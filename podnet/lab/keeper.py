"""Keep a simulated node's ``ovs-vswitchd`` running, as a node's service manager would.

OVS 3.1's userspace conntrack can abort vswitchd (docs/datapath-crash.md); on a real node
systemd or vswitchd's own ``--monitor`` starts it again. The lab starts its daemons with
``--detach`` and nobody watches them, so one crash would leave the node's pods cut off
until the next ``podnet up``. One keeper per node (``python -m podnet.lab.keeper``) polls
the vswitchd pidfile, starts vswitchd again on the datapath it left (its taps and OVSDB
rows survive, so the pods' ports come back with the same ofports) and records each
restart with the cause read from vswitchd's log, for ``podnet status``.

The keeper stops when the node's ovsdb-server is gone (the node was stopped) or on
SIGTERM; ``stop_node`` stops it first, so a deliberate stop is never undone.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from podnet.ovn import OvnError, OvsDaemon, OvsNode

RECORD = "vswitchd-restarts.jsonl"
POLL_S = 0.25
_EMER = re.compile(r"\|EMER\|(?P<what>.*)$")
_SIGNAL = re.compile(r"terminating with signal (?P<what>\d+ \([^)]*\))")


@dataclass(frozen=True)
class Restart:
    """One death of vswitchd and its restart."""

    died_pid: int
    restarted_at: float
    cause: str
    pid: int | None
    """The new vswitchd's PID; None when it would not start (``error`` says why)."""
    error: str = ""


def death_cause(log: Path, since: int = 0) -> str:
    """Why vswitchd died, from what its log says after byte offset ``since``: the last
    emergency line (a failed assertion), a fatal signal it caught, or nothing (SIGKILL or
    the OOM killer leave no line)."""
    try:
        with log.open("rb") as stream:
            stream.seek(since)
            tail = stream.read().decode(errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in reversed(tail):
        if match := _EMER.search(line):
            return match["what"].strip()
        if match := _SIGNAL.search(line):
            return f"signal {match['what']}"
    return "killed without a word in its log (SIGKILL or the OOM killer)"


def restarts(node_directory: Path) -> list[Restart]:
    """The restarts the node's keeper recorded, oldest first."""
    try:
        lines = (node_directory / RECORD).read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            found.append(Restart(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line cut short by a crash of the keeper itself
    return found


def summary(node_directory: Path) -> str:
    """One line for ``podnet status``: how often vswitchd was restarted, when, and why."""
    found = restarts(node_directory)
    if not found:
        return "vswitchd never restarted"
    last = found[-1]
    when = time.strftime("%H:%M:%S", time.localtime(last.restarted_at))
    outcome = f"now pid {last.pid}" if last.pid else f"restart failed: {last.error}"
    times = "once" if len(found) == 1 else f"{len(found)} times"
    return f"vswitchd restarted {times}, last at {when} ({last.cause}; {outcome})"


def _log_size(daemon: OvsDaemon) -> int:
    try:
        return daemon.logfile.stat().st_size
    except OSError:
        return 0


def _record(node_directory: Path, restart: Restart) -> None:
    with (node_directory / RECORD).open("a") as out:
        out.write(json.dumps(asdict(restart)) + "\n")


def _revive(node: OvsNode, died_pid: int, log_offset: int) -> Restart:
    cause = death_cause(node.vswitchd.logfile, log_offset)
    try:
        pid: int | None = node.restart_vswitchd()
        error = ""
    except OvnError as exc:
        pid, error = None, str(exc).splitlines()[0]
    return Restart(died_pid, time.time(), cause, pid, error)


def keep(node: OvsNode, poll_s: float = POLL_S) -> None:
    """Watch the node's vswitchd until its ovsdb-server stops, restarting it when it dies
    (a restart that fails is recorded and tried again a second later)."""
    known = node.vswitchd.pid()
    offset = _log_size(node.vswitchd)
    while node.ovsdb.pid() is not None:
        current = node.vswitchd.pid()
        if current is None and known is not None:
            restart = _revive(node, known, offset)
            _record(node.directory, restart)
            if restart.pid is None:
                time.sleep(1.0)
                continue
            current = restart.pid
        if current is not None and current != known:
            known, offset = current, _log_size(node.vswitchd)  # its cause starts here
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, required=True, help="the node's directory")
    parser.add_argument("--name", required=True, help="the node's name (its system-id)")
    parser.add_argument("--netns", required=True, help="the node's network namespace")
    parser.add_argument("--ovn-remote", required=True)
    parser.add_argument("--encap-ip", required=True)
    args = parser.parse_args(argv)

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    keep(OvsNode(args.directory, name=args.name, system_id=args.name,
                 ovn_remote=args.ovn_remote, encap_ip=args.encap_ip, netns=args.netns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
