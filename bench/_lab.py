"""A whole podnet of one benchmark run's own: ``podnet up`` on free ports, under a name
prefix and in a state directory nothing else uses, removed again on the way out."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from podnet.daemons import free_port
from podnet.lab import LabSettings, down, up


@contextlib.contextmanager
def bench_lab(name: str, manifests: str, nodes: int, keep: bool = False,
              wait_s: float = 60.0, ha: bool = False) -> Iterator[tuple[LabSettings, float]]:
    """The lab's settings and how long ``up`` took. ``up``'s output goes to ``up.log``
    beside the state directory (its tail is shown if ``up`` fails); with ``keep`` the lab
    is left running and the command to remove it is printed."""
    state = Path(tempfile.mkdtemp(prefix=f"podnet-{name}-", dir="/tmp"))
    folder = state / "manifests"
    folder.mkdir()
    (folder / f"{name}.yaml").write_text(manifests)
    settings = LabSettings(
        state_dir=state / "state", redis_port=free_port(),
        ipam_listen=f"127.0.0.1:{free_port()}", apiserver_listen=f"127.0.0.1:{free_port()}",
        webhook_listen=f"127.0.0.1:{free_port()}", sync_listen=f"127.0.0.1:{free_port()}",
        manifests=(folder,), nodes=nodes, prefix=f"p{name[0]}{uuid.uuid4().hex[:6]}",
        wait_s=wait_s, ha=ha)
    started = time.monotonic()
    try:
        try:
            with (state / "up.log").open("w") as log, contextlib.redirect_stdout(log):
                up(settings)
        except BaseException:
            print((state / "up.log").read_text()[-4000:], file=sys.stderr)
            raise
        yield settings, time.monotonic() - started
    finally:
        if keep:
            print(f"kept: podnet down --state-dir {settings.state_dir}")
        else:
            with (state / "down.log").open("w") as log, contextlib.redirect_stdout(log):
                down(settings)
            for leftover in (*state.glob("*.log"), folder / f"{name}.yaml"):
                leftover.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
                state.rmdir()
