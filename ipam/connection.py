"""The one place a podnet process makes its Redis client, whatever ``--redis`` names.

Every component (webhook, sync worker, query endpoint, node agent) and every store
beside the IPAM (the webhook's review memo) connects here, so they all get the same
behaviour from the same settings: timeouts, retries of a dropped connection with
backoff (every operation is idempotent), a bounded pool that makes a burst wait rather
than fail, the password file's password when the URL has none, and text replies.

For a Sentinel URL the client asks the sentinels which server is the primary each time
it opens a connection, and redis-py drops a connection whose server has become a
replica; so after a failover the same client, with no restart, writes to the new
primary once its retries reach it.

For a Cluster URL the client is redis-py's ``RedisCluster``: it learns which node serves
which slot from the nodes the URL names, sends each command (and each script, whose keys
share one subnet's hash tag) to the primary of its slot, follows ``MOVED`` and ``ASK``
while a slot moves, and learns the shards again after a failover.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff

from ipam.redis_url import (
    ClusterUrl,
    SentinelUrl,
    is_cluster_url,
    is_sentinel_url,
    parse_cluster_url,
    parse_sentinel_url,
)
from ipam.settings import RedisSettings

RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""A client of one Redis (plain or through Sentinel) or of a Redis Cluster."""


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Connections to the primary Sentinel names, in a pool that waits when it is full
    (as the pool of a plain URL does) instead of failing."""


class SentinelClient(aioredis.Redis):
    """A client of the primary Sentinel names; closing it closes its sentinel
    connections too."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            await self.sentinel_manager.aclose()


def redis_client(settings: RedisSettings) -> RedisClient:
    """A client of the Redis ``settings.url`` names (see ``RedisSettings.url``)."""
    if is_cluster_url(settings.url):
        return _cluster_client(parse_cluster_url(settings.url), settings)
    if is_sentinel_url(settings.url):
        return _sentinel_client(parse_sentinel_url(settings.url), settings)
    pool = BlockingConnectionPool.from_url(
        settings.url,
        password=settings.password or None,  # the URL's own, if any, comes first
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout_s,
        **_common(settings),
    )
    return aioredis.Redis(connection_pool=pool)


def _common(settings: RedisSettings) -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_timeout_s,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), settings.retries),
        "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    }


def _sentinel_client(target: SentinelUrl, settings: RedisSettings) -> aioredis.Redis:
    options = _query_options(target)
    tls = {"ssl": True} if target.tls else {}
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        list(target.sentinels),
        # The sentinels are asked over the same transport, without the servers'
        # credentials (a sentinel has its own, and usually none).
        sentinel_kwargs={
            "socket_timeout": settings.socket_timeout_s,
            "socket_connect_timeout": settings.socket_timeout_s,
            **tls,
            **{key: value for key, value in options.items() if key.startswith("ssl")},
        },
    )
    client = sentinel.master_for(
        target.master,
        redis_class=SentinelClient,
        connection_pool_class=_BlockingSentinelPool,
        username=target.username or None,
        password=target.password or settings.password or None,
        max_connections=settings.max_connections,
        timeout=settings.socket_timeout_s,
        **{**_common(settings), **options, **tls, "db": target.db},
    )
    assert isinstance(client, SentinelClient)
    client.sentinel_manager = sentinel
    return client


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


async def close_client(client: RedisClient) -> None:
    """Close ``client`` and every connection it opened."""
    await client.aclose()
    if isinstance(client, aioredis.Redis):
        await client.connection_pool.disconnect()


def _cluster_client(target: ClusterUrl, settings: RedisSettings) -> RedisCluster:
    common = _common(settings)
    tls = {"ssl": True} if target.tls else {}
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username or None,
        password=target.password or settings.password or None,
        # Per node: the cluster client fails a call when a node's pool is full rather
        # than waiting, so a node gets the bound a single server gets.
        max_connections=settings.max_connections,
        # The client's own retries cover a node that went away: it asks the cluster
        # for the shards again and sends the command to the new primary of its slot.
        retry=common.pop("retry"),
        **{**common, **_query_options(target), **tls},
    )


def _query_options(target: SentinelUrl | ClusterUrl) -> dict[str, Any]:
    """The query parameters, read as redis-py reads them in a ``rediss://`` URL (so
    both forms take the same ones, ``ssl_ca_certs`` and the rest)."""
    if not target.query:
        return {}
    scheme = "rediss" if target.tls else "redis"
    parsed = parse_url(f"{scheme}://localhost/?{target.query}")
    ignored = {"host", "port", "path", "db", "connection_class", "username", "password"}
    return {str(key): value for key, value in parsed.items() if key not in ignored}
