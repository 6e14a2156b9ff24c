"""The lab's Redis with ``--ha``: three data servers (one primary, two replicas) and three
sentinels, each a process that outlives ``podnet up``, tracked by its pidfile.

Ports follow the lab's ``redis_port``: data servers on it and the next two, sentinels
on ``+10`` to ``+12``. Every component is given the Sentinel URL and finds the primary
through the sentinels. A data server that starts again (after a crash, or a kill of the
soak) asks the sentinels who is primary and comes back as its replica, so the old
primary never serves writes again; only on the very first start, when no sentinel
answers yet, is the first server the primary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from podnet.daemons import BackgroundProcess, DaemonError
from podnet.redis_ha import (
    DataServer,
    SentinelServer,
    primary_by_sentinels,
    role_of,
    sentinel_url,
)

SIZE = 3
SENTINEL_OFFSET = 10


@dataclass(frozen=True)
class RedisGroup:
    """The data servers and sentinels of one lab (``state_dir``, ``base_port``)."""

    state_dir: Path
    base_port: int

    @property
    def ports(self) -> list[int]:
        return [self.base_port + index for index in range(SIZE)]

    @property
    def sentinel_ports(self) -> list[int]:
        return [self.base_port + SENTINEL_OFFSET + index for index in range(SIZE)]

    @property
    def url(self) -> str:
        return sentinel_url(self.sentinel_ports)

    def server(self, index: int, replica_of: int = 0) -> DataServer:
        directory = self.state_dir / ("redis" if index == 0 else f"redis-{index}")
        return DataServer(directory, port=self.ports[index], replica_of=replica_of)

    def sentinel(self, index: int) -> SentinelServer:
        return SentinelServer(self.state_dir / f"sentinel-{index}",
                              port=self.sentinel_ports[index], primary=self.ports[0])

    def processes(self) -> dict[str, BackgroundProcess]:
        """Every process of the group, by name (``redis`` is the first data server)."""
        names = ["redis", *(f"redis-{i}" for i in range(1, SIZE)),
                 *(f"sentinel-{i}" for i in range(SIZE))]
        return {name: BackgroundProcess(name, self.state_dir) for name in names}

    def start(self, timeout_s: float = 30.0) -> list[str]:
        """Start what does not run; the names started."""
        started, processes = [], self.processes()
        primary = primary_by_sentinels(self.sentinel_ports) or self.ports[0]
        for index in range(SIZE):
            name = "redis" if index == 0 else f"redis-{index}"
            if processes[name].pid() is None:
                port = self.ports[index]
                server = self.server(index, replica_of=0 if port == primary else primary)
                server.directory.mkdir(parents=True, exist_ok=True)
                processes[name].start(server.argv())
                server.wait_ready()
                started.append(name)
        for index in range(SIZE):
            name = f"sentinel-{index}"
            if processes[name].pid() is None:
                sentinel = self.sentinel(index)
                sentinel.write_config()
                processes[name].start(sentinel.argv())
                started.append(name)
        self.wait_primary(timeout_s)
        return started

    def wait_primary(self, timeout_s: float) -> int:
        """Until the sentinels name a primary that says it is one; its port."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            primary = primary_by_sentinels(self.sentinel_ports)
            if primary is not None and role_of(primary) == "master":
                return primary
            time.sleep(0.1)
        raise DaemonError(f"no Redis primary named by the sentinels on "
                          f"{self.sentinel_ports} after {timeout_s:.0f} s")

    def roles(self) -> dict[str, str]:
        """``primary``/``replica`` of each data server, ``sentinel`` of the rest."""
        found = {}
        for index, port in enumerate(self.ports):
            role = role_of(port)
            found["redis" if index == 0 else f"redis-{index}"] = {
                "master": "primary", "slave": "replica"}.get(role, role)
        found.update({f"sentinel-{i}": "sentinel" for i in range(SIZE)})
        return found

    def primary_process(self) -> BackgroundProcess | None:
        """The process of the data server the sentinels name primary now."""
        primary = primary_by_sentinels(self.sentinel_ports)
        if primary is None:
            return None
        index = self.ports.index(primary)
        return self.processes()["redis" if index == 0 else f"redis-{index}"]
