"""Helpers for tests that run ``podnet up``: settings nothing else on the machine uses,
and a list of whatever of a lab is still on the machine (there must be nothing after
``podnet down``, which ``removed_after`` checks)."""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from podnet.daemons import free_port
from podnet.lab import LabSettings, down
from podnet.lab.settings import CLUSTER_PORT_STEP

QUIET_PORTS = (20000, 32000)
"""Below the kernel's ephemeral range (32768 on): a client probing a port of the lab that
does not listen yet can connect to itself there (TCP simultaneous open, when the kernel
picks that very port as its source) and read its own request back as the answer."""
REDIS_OFFSETS = (0, 1, 2, 10, 11, 12)
"""The ports from ``redis_port`` on that ``--ha`` uses (three servers, three sentinels)."""


def quiet_port(offsets: tuple[int, ...] = (0,)) -> int:
    """A port outside the ephemeral range with every ``port + offset`` free now."""
    while True:
        port = random.randrange(*QUIET_PORTS)
        try:
            with contextlib.ExitStack() as stack:
                for offset in offsets:
                    probe = stack.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port


def lab_settings(state_dir: Path, manifests: Path, **overrides: object) -> LabSettings:
    """Settings of a lab of this test alone: free ports, a unique name prefix. The Redis
    ports (probed through the sentinels before they run) are outside the ephemeral
    range, for every cluster of ``clusters``."""
    clusters = int(str(overrides.get("clusters", 1)))
    redis_offsets = tuple(offset + cluster * CLUSTER_PORT_STEP for cluster in range(clusters)
                          for offset in REDIS_OFFSETS)
    values: dict[str, object] = {
        "state_dir": state_dir, "redis_port": quiet_port(redis_offsets),
        "ipam_listen": f"127.0.0.1:{free_port()}",
        "apiserver_listen": f"127.0.0.1:{free_port()}",
        "webhook_listen": f"127.0.0.1:{free_port()}",
        "sync_listen": f"127.0.0.1:{free_port()}",
        "ic_listen": f"127.0.0.1:{free_port()}",
        "ic_nb_port": free_port(), "ic_sb_port": free_port(),
        "manifests": (manifests,), "prefix": f"pl{uuid.uuid4().hex[:6]}", "wait_s": 30.0,
    }
    values.update(overrides)
    return LabSettings(**values)  # type: ignore[arg-type]


@contextlib.contextmanager
def removed_after(settings: LabSettings) -> Iterator[LabSettings]:
    """``settings``, and on the way out ``podnet down`` and the proof that nothing of the
    lab is left on the machine."""
    try:
        yield settings
    finally:
        down(settings)
        assert leftovers(settings) == []


def leftovers(settings: LabSettings) -> list[str]:
    """Processes, network namespaces and links of the lab that still exist."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(settings.state_dir) in cmdline and state != "Z":
            found.append(f"process {proc.name}: {cmdline.strip()}")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout.split()
    found += [f"netns {name}" for name in netns if name.startswith(settings.prefix)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    found += [f"link {line.split(':')[1].strip()}" for line in links
              if settings.prefix in line.split(":")[1]]
    if settings.state_dir.exists():
        found.append(f"directory {settings.state_dir}")
    return found
