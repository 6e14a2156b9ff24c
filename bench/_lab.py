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
def bench_lab(name: str, manifests: str | Path, nodes: int, keep: bool = False,
              wait_s: float = 60.0, ha: bool = False, clusters: int = 1
              ) -> Iterator[tuple[LabSettings, float]]:
    """The lab's settings and how long ``up`` took. ``manifests`` is the text of one
    manifest file, or a folder of them used as it is; ``clusters`` > 1 runs
    ``up --clusters N`` (the IC controller and IC databases on free ports too). ``up``'s
    output goes to ``up.log`` beside the state directory (its tail is shown if ``up``
    fails); with ``keep`` the lab is left running and the command to remove it is
    printed."""
    state = Path(tempfile.mkdtemp(prefix=f"podnet-{name}-", dir="/tmp"))
    folder = state / "manifests"
    if isinstance(manifests, Path):
        chosen = manifests
    else:
        folder.mkdir()
        (folder / f"{name}.yaml").write_text(manifests)
        chosen = folder
    settings = LabSettings(
        state_dir=state / "state", redis_port=free_port(),
        ipam_listen=f"127.0.0.1:{free_port()}", apiserver_listen=f"127.0.0.1:{free_port()}",
        webhook_listen=f"127.0.0.1:{free_port()}", sync_listen=f"127.0.0.1:{free_port()}",
        ic_listen=f"127.0.0.1:{free_port()}", ic_nb_port=free_port(), ic_sb_port=free_port(),
        manifests=(chosen,), nodes=nodes, prefix=f"p{name[0]}{uuid.uuid4().hex[:6]}",
        wait_s=wait_s, ha=ha, clusters=clusters)
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
                if folder.exists():
                    folder.rmdir()
                state.rmdir()
