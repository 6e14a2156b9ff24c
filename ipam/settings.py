"""Settings of the IPAM, passed in explicitly (no globals, no environment lookups)."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class IpamSettings:
    """Allocation policy."""

    reservation_ttl_s: float = 600.0
    """How long a reservation made at admission waits for its pod to be stored."""
    expire_batch: int = 1000
    """Most reservations one expiry pass releases per subnet."""
