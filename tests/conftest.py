"""Shared fixtures: a real redis-server per test session, a fresh key prefix per test.

Nothing here is faked: the server is Debian's redis-server, started in a temporary
directory and stopped by the PID we started.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ipam.settings import IpamSettings, RedisSettings
from ipam.store import Ipam
from podnet.daemons import RedisServer

pytest_plugins = ["tests.ovn_fixtures"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_settings(redis_server: RedisServer) -> RedisSettings:
    """Settings with a prefix of this test's own, so tests never see each other's keys."""
    return RedisSettings(url=redis_server.url, prefix=f"t{uuid.uuid4().hex[:10]}:")


@pytest.fixture
async def ipam(redis_settings: RedisSettings) -> AsyncIterator[Ipam]:
    client = Ipam.connect(redis_settings, IpamSettings())
    yield client
    await client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, for tests that kill or restart it."""
    with RedisServer(tmp_path / "redis") as server:
        yield server
