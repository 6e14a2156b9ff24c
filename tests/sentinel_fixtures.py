"""A real replicated Redis under Sentinel on loopback: a primary, two replicas and three
sentinels, each a process of its own in its own directory, stopped by the PID we started.

Sentinel is tuned to notice a dead primary within a second (the shipped default is
thirty), so a failover takes a few seconds of test time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from podnet.daemons import free_port
from podnet.redis_ha import MASTER, DataServer, SentinelServer, sentinel_url


@dataclass
class SentinelCluster:
    directory: Path
    primary_options: tuple[str, ...] = ()
    servers: list[DataServer] = field(default_factory=list)
    sentinels: list[SentinelServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return sentinel_url([s.port for s in self.sentinels])

    def start(self) -> SentinelCluster:
        # Each is listed before it starts, so a failed start still stops what ran.
        primary = DataServer(self.directory / "redis-0", options=self.primary_options)
        self.servers = [primary] + [
            DataServer(self.directory / f"redis-{n}", replica_of=primary.port) for n in (1, 2)]
        self.sentinels = [SentinelServer(self.directory / f"sentinel-{n}", primary=primary.port)
                          for n in range(3)]
        for server in [*self.servers, *self.sentinels]:
            server.start()
        self.wait_settled(primary.port)
        return self

    def stop(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.stop()

    def server_on(self, port: int) -> DataServer:
        return next(s for s in self.servers if s.port == port)

    def primary_port(self) -> int:
        """The primary's port as the sentinels name it (the first that answers)."""
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            with redis.Redis(port=sentinel.port, socket_timeout=1.0) as client:
                try:
                    _, port = client.sentinel_get_master_addr_by_name(MASTER)
                except redis.exceptions.RedisError:
                    continue
                return int(port)
        raise AssertionError("no sentinel answers")

    def wait_settled(self, primary: int, timeout_s: float = 30.0) -> None:
        """Until every sentinel names ``primary``, knows the other sentinels and sees
        both replicas up, and the primary has both replicas online."""
        deadline = time.monotonic() + timeout_s
        while not self._settled(primary):
            if time.monotonic() > deadline:
                raise AssertionError(f"sentinels did not settle on port {primary}")
            time.sleep(0.1)

    def _settled(self, primary: int) -> bool:
        try:
            for sentinel in self.sentinels:
                with redis.Redis(port=sentinel.port, socket_timeout=1.0,
                                 decode_responses=True) as client:
                    state = client.sentinel_master(MASTER)
                    replicas = client.sentinel_slaves(MASTER)
                if int(state["port"]) != primary or state["num-other-sentinels"] < 2:
                    return False
                up = [r for r in replicas if not (r["is_sdown"] or r["is_odown"])]
                if len(up) < 2:
                    return False
            with redis.Redis(port=primary, socket_timeout=1.0, decode_responses=True) as client:
                info = client.info("replication")
            online = [k for k, v in info.items()
                      if k.startswith("slave") and isinstance(v, dict)
                      and v.get("state") == "online"]
            return info["role"] == "master" and len(online) >= 2
        except redis.exceptions.RedisError:
            return False


def config_options(config: str, prefix: str = "") -> tuple[str, ...]:
    """A redis.conf's directives (those starting with ``prefix``) as command-line
    options (``--name value ...``)."""
    options: list[str] = []
    for line in config.splitlines():
        if line.strip().startswith(prefix) and not line.lstrip().startswith("#"):
            name, *values = line.split()
            options += [f"--{name}", *values]
    return tuple(options)


def admin(port: int) -> redis.Redis:
    """A plain client of one server (not through Sentinel), for the test's own looks."""
    return redis.Redis(port=port, socket_timeout=2.0, decode_responses=True)


__all__ = ["DataServer", "SentinelCluster", "admin", "config_options", "free_port"]
