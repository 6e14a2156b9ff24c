"""Settings of the IPAM, passed in explicitly (no globals, no environment lookups)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class RedisSettings:
    """Where the IPAM keeps its index.

    ``url`` takes every form redis-py knows: ``redis://[user:password@]host:port/db``,
    ``rediss://`` for TLS (``?ssl_ca_certs=...``), ``unix:///path/redis.sock?db=0``.
    ``prefix`` starts every key, so several clusters can share one Redis.
    """

    url: str = DEFAULT_REDIS_URL
    prefix: str = "podnet:"
    socket_timeout_s: float = 5.0
    max_connections: int = 64
    retries: int = 3
    """Retries of an operation whose connection failed (all operations are idempotent)."""
    password: str = field(default="", repr=False)
    """The password when the URL has none (read from a file by the command line)."""


@dataclass(frozen=True)
class IpamSettings:
    """Allocation policy."""

    reservation_ttl_s: float = 600.0
    """How long a reservation made at admission waits for its pod to be stored."""
    expire_batch: int = 1000
    """Most reservations one expiry pass releases per subnet."""
    require_rebuilt: bool = False
    """Refuse new reservations in a subnet until the sync worker has rebuilt its index
    from the live pods on the Redis serving it now. Redis replication is asynchronous and
    a restart without persistence forgets, so after a failover or restart the index may
    miss addresses that pods hold; handing them out again would duplicate them. The
    deployed webhook turns this on; it is off for library use and tests."""
