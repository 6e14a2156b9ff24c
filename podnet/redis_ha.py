"""Redis replicated under Sentinel: the servers' command lines and the questions asked of
the sentinels, shared by ``podnet up --ha`` and the failover tests.

A data server may replicate another; a sentinel watches the primary named ``podnet``
and is tuned to notice a dead one within a second (the shipped manifests keep Redis's
thirty), so a failover on loopback takes a few seconds. Which server is primary is the
sentinels' to say; a server that starts again asks them, so an old primary never comes
back as one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from podnet.daemons import RedisServer, require_binary

MASTER = "podnet"
DOWN_AFTER_MS = 1000


@dataclass
class DataServer(RedisServer):
    """A redis-server that may replicate another and takes extra options."""

    replica_of: int = 0
    options: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        args = [*super().argv(), *self.options]
        if self.replica_of:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return args


@dataclass
class SentinelServer(RedisServer):
    """``redis-server sentinel.conf --sentinel``, watching the primary on ``primary``."""

    primary: int = 0

    @property
    def config(self) -> Path:
        return self.directory / "sentinel.conf"

    def argv(self) -> list[str]:
        return [require_binary("redis-server"), str(self.config), "--sentinel"]

    def start(self, timeout_s: float = 10.0) -> SentinelServer:
        self.write_config()
        super().start(timeout_s)
        return self

    def write_config(self) -> None:
        """The first configuration (Sentinel rewrites it with what it learns)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.config.exists():
            self.config.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.directory}\n"
                f"logfile {self.directory / 'sentinel.log'}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} 5000\n"
                f"sentinel parallel-syncs {MASTER} 2\n")



def sentinel_url(ports: Sequence[int], db: int = 0, scheme: str = "redis+sentinel") -> str:
    """The ``--redis`` URL of the group the sentinels on ``ports`` watch."""
    return f"{scheme}://{','.join(f'127.0.0.1:{port}' for port in ports)}/{MASTER}/{db}"


def primary_by_sentinels(ports: Sequence[int]) -> int | None:
    """The primary's port as the first sentinel that answers names it (None: none does)."""
    for port in ports:
        with redis.Redis(port=port, socket_timeout=1.0) as client, \
                contextlib.suppress(redis.exceptions.RedisError, TypeError, ValueError):
            _, primary = client.sentinel_get_master_addr_by_name(MASTER)
            return int(primary)
    return None


def role_of(port: int) -> str:
    """``master`` or ``slave`` as the server on ``port`` says (empty if it does not)."""
    with redis.Redis(port=port, socket_timeout=1.0, decode_responses=True) as client, \
            contextlib.suppress(redis.exceptions.RedisError):
        return str(client.info("replication").get("role", ""))
    return ""
