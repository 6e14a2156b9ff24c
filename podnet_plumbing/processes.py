"""What ``/proc`` says of a PID: whether it runs, and with which command line.

Every daemon podnet starts (its own, OVS's, OVN's) is tracked by the PID in a pidfile
and stopped by that PID only, after checking the PID still belongs to what was started:
a pidfile can outlive its process and the PID be given to another. These two readings
are what those checks rest on.
"""

from __future__ import annotations

from pathlib import Path


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def command_line(pid: int) -> list[str]:
    """The process's arguments, program first (empty when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part for part in raw.decode(errors="replace").split("\0") if part]
