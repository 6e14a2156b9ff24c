"""Replica acknowledgements (``min_replica_acks``): a script's write counts as done only
once a replica holds it; fewer is ``StoreUnavailable``, and the retry under the same
token finds whatever the write left."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipam import errors
from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from podnet.daemons import RedisServer
from tests.sentinel_fixtures import DataServer, admin


def settings(url: str, prefix: str, acks: int) -> RedisSettings:
    return RedisSettings(url=url, prefix=prefix, min_replica_acks=acks,
                         replica_ack_timeout_ms=200)


async def test_without_a_replica_to_acknowledge_a_reservation_is_unavailable_and_its_retry_safe(
    own_redis: RedisServer,
) -> None:
    prefix = f"w{uuid.uuid4().hex[:8]}:"
    plain = Ipam.connect(settings(own_redis.url, prefix, 0))
    acked = Ipam.connect(settings(own_redis.url, prefix, 1))
    try:
        await plain.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
        with pytest.raises(errors.StoreUnavailable, match="acknowledged by 0 replicas"):
            await acked.reserve("s", "token")
        kept = await plain.reserve("s", "token")  # the same token: the same address
        assert str(kept.ips[0]) == "10.0.0.2"
        assert [str(a.ips[0]) for a in await plain.reservations("s")] == ["10.0.0.2"]
    finally:
        await plain.close()
        await acked.close()


@pytest.fixture
def with_replica(tmp_path: Path) -> Iterator[tuple[RedisServer, DataServer]]:
    with RedisServer(tmp_path / "primary") as primary:
        replica = DataServer(tmp_path / "replica", replica_of=primary.port)
        try:
            replica.start()
            yield primary, replica
        finally:
            replica.stop()


@pytest.mark.slow
async def test_acknowledged_reservations_are_on_the_replica_even_after_a_flushed_script_cache(
    with_replica: tuple[RedisServer, DataServer],
) -> None:
    primary, replica = with_replica
    prefix = f"w{uuid.uuid4().hex[:8]}:"
    ipam = Ipam.connect(settings(primary.url, prefix, 1))
    try:
        while True:  # until the replica has synced and acknowledges
            try:
                await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/22"))
                break
            except errors.StoreUnavailable:
                await asyncio.sleep(0.05)
        with admin(primary.port) as direct:
            direct.script_flush()
        made = await asyncio.gather(*(ipam.reserve("s", f"t{i}") for i in range(200)))
        alone = await ipam.reserve("s", "alone")
        with admin(replica.port) as copy:
            held = copy.hlen(ipam.keys.subnet_key("s", "alloc"))
        assert held == 201 and len({a.ips for a in [*made, alone]}) == 201
    finally:
        await ipam.close()
