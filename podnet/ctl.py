"""``podnet nbctl|sbctl|ic-nbctl|ic-sbctl ARGS...``: OVN's ctl tools against the lab's
databases, as ``kubectl ko nbctl`` runs them against a cluster's.

The database comes from ``--db`` (any remote list the tool takes), else from the lab
that ``podnet up`` recorded in ``--state-dir``: cluster ``--cluster``'s NB or SB, or the
IC databases of an interconnected lab. ARGS are handed to the tool as they are, as
separate arguments (never through a shell); the tool's output and exit status are
podnet's.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from podnet.daemons import DaemonError, require_binary
from podnet.lab.settings import DEFAULT_STATE_DIR, LabSettings

TOOLS = {
    "nbctl": ("ovn-nbctl", "this cluster's OVN northbound database"),
    "sbctl": ("ovn-sbctl", "this cluster's OVN southbound database"),
    "ic-nbctl": ("ovn-ic-nbctl", "the OVN-IC northbound database"),
    "ic-sbctl": ("ovn-ic-sbctl", "the OVN-IC southbound database"),
}
_REMOTE = re.compile(r"^(tcp|ssl):(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$|^unix:/\S+$")


class CtlError(ValueError):
    """The database could not be found or the remote is not one; says which and why."""


def check_remote(remote: str) -> str:
    """A comma-separated remote list, each part ``tcp:``/``ssl:HOST:PORT`` or ``unix:PATH``."""
    parts = [part.strip() for part in remote.split(",")]
    for part in parts:
        if not _REMOTE.match(part):
            raise CtlError(f"--db {remote!r}: {part!r} is not tcp:HOST:PORT, ssl:HOST:PORT "
                           "or unix:PATH")
    return ",".join(parts)


def lab_remote(command: str, state_dir: Path, cluster: int) -> str:
    """The remote of ``command``'s database in the lab recorded in ``state_dir``."""
    first = LabSettings.recorded(state_dir)
    if first is None:
        raise CtlError(f"--state-dir {state_dir}: no lab recorded there (podnet up); "
                       "give --db")
    if command.startswith("ic-"):
        if first.clusters < 2:
            raise CtlError(f"the lab in {state_dir} runs one cluster: no IC databases")
        from podnet.lab.interconnect import ic_databases

        databases = ic_databases(first)
        return databases.nb_remote if command == "ic-nbctl" else databases.sb_remote
    try:
        settings = first.for_cluster(cluster)
    except ValueError as exc:
        raise CtlError(f"--cluster {cluster}: {exc}") from exc
    central = settings.central()
    return central.nb_remote if command == "nbctl" else central.sb_remote


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for command, (tool, what) in TOOLS.items():
        parser = commands.add_parser(
            command, help=f"run {tool} against {what} (as kubectl ko {command})",
            description=f"Run {tool} ARGS... against {what}: --db, else the lab recorded "
            "in --state-dir. Put -- before ARGS that start with a dash.")
        parser.add_argument("--db", metavar="REMOTE[,REMOTE...]",
                            help="the database (tcp:HOST:PORT, ssl:HOST:PORT or unix:PATH)")
        parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                            help="the lab podnet up recorded (default %(default)s)")
        parser.add_argument("--cluster", type=int, default=1, metavar="N",
                            help="which cluster of an interconnected lab (default 1)")
        parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                            help=f"{tool}'s own arguments")
        parser.set_defaults(handler=_main, ctl_command=command)


def _main(args: argparse.Namespace) -> int:
    tool = TOOLS[args.ctl_command][0]
    extra = list(args.args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    try:
        remote = (check_remote(args.db) if args.db
                  else lab_remote(args.ctl_command, args.state_dir, args.cluster))
        binary = require_binary(tool)
    except (CtlError, DaemonError) as exc:
        print(f"podnet: error: {exc}", file=sys.stderr)
        return 2
    return subprocess.run([binary, f"--db={remote}", *extra], check=False).returncode
