"""The sync worker's HTTP side: ``/metrics``, ``/healthz`` and ``/readyz``.

The worker serves nothing else, but Kubernetes needs probes to tell a stuck worker
from a working one and Prometheus needs a scrape target. ``/healthz`` answers while the
process runs (the event loop turns); ``/readyz`` only once a full resync has succeeded
and while the last step did not fail (see ``SyncMetrics.readiness``). ``/metrics`` is
the worker's own metrics followed by those of its IPAM client (operation counts and
latencies), as the webhook serves them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ipam.api import get_healthz
from ipam.store import Ipam
from podnet_sync.metrics import SyncMetrics

Route = Callable[[web.Request], Awaitable[web.Response]]
DEFAULT_SYNC_LISTEN = "0.0.0.0:9477"
"""Distinct from the webhook's 8443 and the IPAM endpoint's 8080: the worker runs with
host networking."""


@dataclass(frozen=True)
class HttpSettings:
    host: str
    port: int
    """0 picks a free port (see :func:`serving`)."""


def make_sync_app(metrics: SyncMetrics, ipam: Ipam) -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", _metrics(metrics, ipam))
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/readyz", _readyz(metrics))
    return app


def _metrics(metrics: SyncMetrics, ipam: Ipam) -> Route:
    async def get_metrics(_: web.Request) -> web.Response:
        body = metrics.render() + ipam.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return get_metrics


def _readyz(metrics: SyncMetrics) -> Route:
    async def get_readyz(_: web.Request) -> web.Response:
        readiness = metrics.readiness()
        if not readiness.ready:
            return web.json_response({"status": "unready", "reason": readiness.reason},
                                     status=503)
        return web.json_response({"status": "ready"})

    return get_readyz


@contextlib.asynccontextmanager
async def serving(app: web.Application,
                  settings: HttpSettings) -> AsyncIterator[tuple[str, int]]:
    """Serve ``app`` until the block exits; yields the address it is bound to."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
        except OSError as exc:
            where = f"[{settings.host}]" if ":" in settings.host else settings.host
            raise OSError(f"cannot listen on {where}:{settings.port}: "
                          f"{exc.strerror or exc}") from exc
        yield _bound_address(runner, settings)
    finally:
        await runner.cleanup()


def _bound_address(runner: web.AppRunner, settings: HttpSettings) -> tuple[str, int]:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return str(address[0]), int(address[1])
    return settings.host, settings.port
