"""The sync worker's /metrics, /healthz and /readyz, served over real steps: the local
Kubernetes API, a real Redis and a real OVN NB/SB with ovn-northd (as tests/test_sync.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipam.cli import url_of
from ipam.settings import RedisSettings
from podnet.daemons import RedisServer
from podnet.ovn import OvnCentral
from podnet_sync.http import HttpSettings, make_sync_app, serving
from podnet_sync.metrics import SyncMetrics
from podnet_sync.worker import SyncWorker
from tests.metrics_lint import lint
from tests.test_sync import Cluster, watched_worker
from tests.waiting import eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnCentral]:
    with OvnCentral(tmp_path_factory.mktemp("sync-http-central")) as started:
        yield started


@dataclass
class Served:
    cluster: Cluster
    url: str
    session: aiohttp.ClientSession

    @property
    def worker(self) -> SyncWorker:
        return self.cluster.worker

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(f"{self.url}{path}") as response:
            return response.status, await response.text()

    async def readiness(self) -> tuple[int, Any]:
        async with self.session.get(f"{self.url}/readyz") as response:
            return response.status, await response.json()

    async def metrics(self) -> Samples:
        status, text = await self.get("/metrics")
        assert status == 200
        assert lint(text) == []  # what promtool check metrics would say
        return {(sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@asynccontextmanager
async def served_worker(central: OvnCentral, redis: RedisSettings) -> AsyncIterator[Served]:
    """A worker (not running: tests step it) with its HTTP endpoint on a free port."""
    async with watched_worker(central, redis) as cluster:
        metrics = SyncMetrics()
        metrics.attach(cluster.worker)
        async with (serving(make_sync_app(metrics, cluster.ipam),
                            HttpSettings("127.0.0.1", 0)) as (host, port),
                    aiohttp.ClientSession() as session):
            yield Served(cluster, url_of(host, port), session)


@pytest.fixture
async def served(central: OvnCentral, redis_settings: RedisSettings) -> AsyncIterator[Served]:
    async with served_worker(central, redis_settings) as endpoint:
        yield endpoint


async def test_the_worker_is_live_at_once_and_ready_after_its_first_full_step(
    served: Served,
) -> None:
    assert (await served.get("/healthz"))[0] == 200
    status, body = await served.readiness()
    assert (status, body) == (503, {"status": "unready",
                                    "reason": "no full step has succeeded yet"})
    await served.worker.step()
    assert await served.readiness() == (200, {"status": "ready"})


async def test_metrics_count_a_full_step_and_an_event_step_with_what_they_changed(
    served: Served,
) -> None:
    before = time.time()
    assert (await served.worker.step()).full
    await served.cluster.admit("web-0")
    await eventually(lambda: ("default", "web-0") in served.worker.dirty.pods)
    event = await served.worker.step()
    assert not event.full and event.bound == 1
    samples = await served.metrics()
    assert sample(samples, "podnet_sync_steps_total", kind="full") == 1
    assert sample(samples, "podnet_sync_steps_total", kind="event") == 1
    assert sample(samples, "podnet_sync_step_seconds_count", kind="event") == 1
    assert sample(samples, "podnet_sync_ovn_rows_total",
                  kind="switch_ports", action="created") >= 4  # node, router links, pod
    assert sample(samples, "podnet_sync_ipam_addresses_total", action="bound") == 1
    assert sample(samples, "podnet_sync_routed_patches_total") == 1
    assert sample(samples, "podnet_sync_step_failures_total") == 0
    assert sample(samples, "podnet_sync_index_objects", kind="pods") == 1
    assert sample(samples, "podnet_sync_index_objects", kind="services") == 0
    assert before <= sample(samples, "podnet_sync_last_full_success_timestamp_seconds") \
        <= time.time()
    assert any(name == "podnet_ipam_operations_total" for name, _ in samples)  # the client's


async def test_a_failing_step_makes_the_worker_unready_until_a_step_succeeds_again(
    central: OvnCentral, own_redis: RedisServer,
) -> None:
    redis = RedisSettings(url=own_redis.url, prefix="failing:")
    async with served_worker(central, redis) as endpoint:
        await endpoint.worker.step()
        own_redis.stop()
        endpoint.worker.mark("Resync", full=True)
        runner = asyncio.create_task(endpoint.worker.run())
        try:
            status, body = await eventually(_unready(endpoint), what="unready")
            assert status == 503 and body["reason"].startswith("the last step failed: ")
            assert sample(await endpoint.metrics(), "podnet_sync_step_failures_total") >= 1
            own_redis.start()
            await eventually(_ready(endpoint), what="ready again")
        finally:
            runner.cancel()


def _unready(endpoint: Served) -> Any:
    async def check() -> tuple[int, Any] | None:
        status, body = await endpoint.readiness()
        return (status, body) if status == 503 else None
    return check


def _ready(endpoint: Served) -> Any:
    async def check() -> bool:
        return (await endpoint.readiness())[0] == 200
    return check
