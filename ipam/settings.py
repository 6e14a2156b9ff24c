"""Settings of the IPAM, passed in explicitly (no globals, no environment lookups)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class RedisSettings:
    """Where the IPAM keeps its index.

    ``url`` takes every form redis-py knows: ``redis://[user:password@]host:port/db``,
    ``rediss://`` for TLS (``?ssl_ca_certs=...``), ``unix:///path/redis.sock?db=0``; and
    the primary that Redis Sentinel names, ``redis+sentinel://[user:password@]host1:26379,
    host2:26379/<master-name>/<db>`` (``rediss+sentinel://`` for TLS), read by
    ``ipam.redis_url``.
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
    min_replica_acks: int = 0
    """Replicas that must hold a script's writes before it counts as done (Redis
    ``WAIT``); fewer within ``replica_ack_timeout_ms`` is ``StoreUnavailable``, never a
    success. 0 is off (one Redis has no replica to ask); with replicas and Sentinel, 1
    keeps an acknowledged allocation through a failover to the most up-to-date replica."""
    replica_ack_timeout_ms: int = 1000
    """How long ``WAIT`` waits for ``min_replica_acks`` replicas."""


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
