"""A Sentinel failover under a running sync worker: allocation is fenced on the new
primary and resumes by itself, because the worker sees the new replication ID and
rebuilds the index at once, without waiting for its next periodic resync."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ipam import errors
from ipam.settings import IpamSettings, RedisSettings
from ipam.store import Ipam
from podnet.ovn import OvnCentral
from tests.sentinel_fixtures import SentinelCluster
from tests.test_sync import central, watched_worker
from tests.waiting import cancelled

pytestmark = pytest.mark.slow
__all__ = ["central"]  # the module-scoped OVN central fixture


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(tmp_path)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


async def first_reservation(ipam: Ipam, timeout_s: float = 60.0) -> tuple[int, float]:
    """Reserve until one is made, as a webhook retries; (refusals, seconds)."""
    began, refusals = time.monotonic(), 0
    while True:
        try:
            await ipam.reserve("apps", f"after-{refusals}")
            return refusals, time.monotonic() - began
        except (errors.Fenced, errors.StoreUnavailable):
            refusals += 1
        assert time.monotonic() - began < timeout_s, "allocation never resumed"
        await asyncio.sleep(0.05)


async def test_after_a_failover_the_worker_rebuilds_at_once_and_allocation_resumes(
    central: OvnCentral, sentinels: SentinelCluster
) -> None:
    redis = RedisSettings(url=sentinels.url, prefix=f"f{uuid.uuid4().hex[:8]}:",
                          socket_timeout_s=1.0)
    async with watched_worker(central, redis) as cluster:
        await cluster.worker.step()
        runner = asyncio.create_task(cluster.worker.run())
        webhook = Ipam.connect(replace(redis), IpamSettings(require_rebuilt=True))
        try:
            cluster.store_pod("before", "apps", await webhook.reserve("apps", "tok-before"),
                              "tok-before")
            old = sentinels.primary_port()
            sentinels.server_on(old).stop(kill=True)  # kill -9 of the primary
            refusals, took = await first_reservation(webhook)
            print(f"\nallocation back {took:.2f} s after the primary was killed "
                  f"({refusals} refusals on the way)")
            assert sentinels.primary_port() != old
            held = await webhook.lookup_token("tok-before", "apps")
            assert held is not None  # the rebuilt index still holds the running pod
        finally:
            await cancelled(runner)
            await webhook.close()
