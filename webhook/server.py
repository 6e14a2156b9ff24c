"""The webhook's HTTPS process: aiohttp routes over the pure core and the IPAM.

kube-apiserver only calls webhooks over TLS, so there is no plain-HTTP mode. The
certificate is usually a mounted Secret that cert-manager rotates, so the files are
checked periodically and loaded into the *same* ``SSLContext``: new handshakes use the
new certificate, connections already open keep theirs, and nothing restarts.

Bodies are bounded (kube-apiserver's own limit is about 3 MiB per object; a review
carries up to two objects), refused with 413 before they are read whole. A body that is
not an AdmissionReview is a 400 with a JSON message: a 500 would say podnet is broken.

Routes: ``/mutate-pods`` (addresses at admission), ``/validate-subnets``,
``/validate-ippools``, ``/validate-workloads`` (pod templates podnet cannot honour),
``/validate-pods`` (pod updates may not rewrite podnet's annotations),
``/validate-ic-config`` (``kube-system/ovn-ic-config``'s values), the
scheduler extender's ``/scheduler/filter`` and ``/scheduler/prioritize`` (see
``webhook.extender``; their bodies carry whole Node lists, so their own, larger bound
applies), and ``/healthz``, ``/readyz``, ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ipam import errors
from ipam.settings import IpamSettings
from ipam.store import Ipam
from podnet_plumbing.heap import settle_heap
from podnet_plumbing.kube import KubeError, kube_client
from podnet_plumbing.tasks import raise_if_cancelled
from webhook.admit import AdmitContext, Answer, CatalogCache, admit_pod
from webhook.decide import metadata_of
from webhook.errors import ConfigError, MalformedArgs, MalformedReview
from webhook.extender import (
    ExtenderArgs,
    Node,
    Placement,
    filter_error,
    filter_nodes,
    parse_extender_args,
    placement_of,
    prioritize,
)
from webhook.kube_source import ConfigSource, KubeSource
from webhook.manifests import ManifestSource
from webhook.memo import RedisReviewMemo
from webhook.metrics import WebhookMetrics
from webhook.review import AdmissionRequest, parse_review, review_response
from webhook.settings import ServerSettings
from webhook.validate import (
    cluster_networks,
    validate_ic_config,
    validate_ippool,
    validate_pod_update,
    validate_subnet,
    validate_workload,
)

log = logging.getLogger(__name__)
Handler = Callable[[AdmissionRequest], Awaitable[Answer]]
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SPARE_CONNECTIONS = 8
"""IPAM connections left for validation, the extender and the manifest rescan."""


def make_ssl_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server context refusing anything older than TLS 1.2; with ``client_ca``, client
    certificates signed by it are asked for and checked (``require_client_certificate``
    refuses the requests that came without one)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-cert {cert} / --tls-key {key}: cannot load: {exc}") from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--client-ca {client_ca}: cannot load: {exc}") from exc
        # Optional at the handshake: kubelet's probes of /healthz and /readyz carry no
        # client certificate; every other route refuses a request without one.
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


OPEN_PATHS = frozenset({"/healthz", "/readyz"})


@web.middleware
async def require_client_certificate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """With ``--client-ca``, only a client with a certificate of that CA (the API server)
    reaches the admission and extender routes and the metrics."""
    if request.path in OPEN_PATHS or request.transport is None or \
            request.transport.get_extra_info("peercert"):
        return await handler(request)
    return web.json_response({"message": "a client certificate is required (--client-ca)"},
                             status=403)


class CertificateReloader:
    """Loads rotated certificate files into the live context (keeps the old on error)."""

    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        self.context = context
        self.cert = cert
        self.key = key
        self._stamp = self._current()

    def _current(self) -> tuple[int, int]:
        try:
            return self.cert.stat().st_mtime_ns, self.key.stat().st_mtime_ns
        except OSError:
            return (0, 0)

    def check(self) -> bool:
        stamp = self._current()
        if stamp in (self._stamp, (0, 0)):
            return False
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            log.warning("certificate not reloaded (keeping the previous one): %s", exc)
            return False
        self._stamp = stamp
        log.info("certificate reloaded from %s", self.cert)
        return True


@dataclass
class WebhookState:
    ipam: Ipam
    settings: ServerSettings
    context: AdmitContext
    manifests: ConfigSource
    metrics: WebhookMetrics
    nodes: Mapping[str, Node] = field(default_factory=dict)
    """Nodes the server knows (for extender requests that carry only node names)."""


def build_app(state: WebhookState) -> web.Application:
    middlewares = [require_client_certificate] if state.settings.client_ca else []
    app = web.Application(client_max_size=state.settings.max_body_bytes,
                          middlewares=middlewares)
    settings = state.settings.webhook

    # Each admission holds at most one connection of the IPAM's pool at a time; bounding
    # admissions in progress below the pool's size makes a burst wait for a connection
    # instead of failing with "too many connections" (a denial the user would see).
    slots = asyncio.Semaphore(max(1, state.settings.redis.max_connections - _SPARE_CONNECTIONS))

    async def mutate_pods(review: AdmissionRequest) -> Answer:
        async with slots:
            return await admit_pod(review, state.ipam, settings, state.context)

    async def subnets(review: AdmissionRequest) -> Answer:
        taken = cluster_networks(settings.service_cidrs, state.manifests.node_addresses())
        answer = await validate_subnet(review, state.ipam, taken)
        state.context.catalog.invalidate()
        return answer

    async def ippools(review: AdmissionRequest) -> Answer:
        return await validate_ippool(
            review, state.ipam, refresh=lambda: state.manifests.refresh(state.ipam))

    async def workloads(review: AdmissionRequest) -> Answer:
        return validate_workload(review)

    async def ic_config(review: AdmissionRequest) -> Answer:
        return validate_ic_config(review)

    async def pod_updates(review: AdmissionRequest) -> Answer:
        return validate_pod_update(review, settings)

    def filtered(args: ExtenderArgs, placement: Placement) -> object:
        return filter_nodes(args, placement)

    def scored(args: ExtenderArgs, placement: Placement) -> object:
        return prioritize(args.nodes, placement)

    app.router.add_post("/mutate-pods", _review_route(state, "mutate-pods", mutate_pods))
    app.router.add_post("/validate-subnets", _review_route(state, "validate-subnets", subnets))
    app.router.add_post("/validate-ippools", _review_route(state, "validate-ippools", ippools))
    app.router.add_post(
        "/validate-workloads", _review_route(state, "validate-workloads", workloads)
    )
    app.router.add_post("/validate-pods", _review_route(state, "validate-pods", pod_updates))
    app.router.add_post(
        "/validate-ic-config", _review_route(state, "validate-ic-config", ic_config))
    app.router.add_post("/scheduler/filter", _scheduler_route(state, "filter", filtered))
    app.router.add_post("/scheduler/prioritize", _scheduler_route(state, "prioritize", scored))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz(state))
    app.router.add_get("/metrics", _metrics(state))
    return app


def _review_route(
    state: WebhookState, endpoint: str, handle: Handler
) -> Route:
    limit = state.settings.max_body_bytes

    async def route(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if request.content_length is not None and request.content_length > limit:
            state.metrics.observe(endpoint, "too_large", time.perf_counter() - started)
            return _too_large(limit)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            state.metrics.observe(endpoint, "too_large", time.perf_counter() - started)
            return _too_large(limit)
        def malformed(exc: MalformedReview) -> web.Response:
            state.metrics.observe(endpoint, "malformed", time.perf_counter() - started)
            return web.json_response({"message": f"not an AdmissionReview: {exc}"}, status=400)

        try:
            review = parse_review(body)
        except MalformedReview as exc:
            return malformed(exc)
        try:
            answer = await handle(review)
        except MalformedReview as exc:
            return malformed(exc)
        except Exception:
            log.exception("%s: review %s of %s %s/%s failed", endpoint, review.uid, review.kind,
                          review.namespace, review.name)
            state.metrics.observe(endpoint, "error", time.perf_counter() - started)
            return _json_response(review_response(
                review.uid, False, code=500,
                message="podnet failed on this request (its webhook logged why); "
                "nothing was reserved for it, retry"))
        state.metrics.observe(endpoint, answer.outcome, time.perf_counter() - started)
        return _json_response(answer.review)

    return route


def _json_response(body: object) -> web.Response:
    """``web.json_response`` with orjson: every admission's answer goes through here."""
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None once it exceeds ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _scheduler_route(
    state: WebhookState, verb: str, answer: Callable[[ExtenderArgs, Placement], object]
) -> Route:
    """A scheduler extender verb: ExtenderArgs in, the verb's result out (400 if malformed).

    A filter that cannot read the catalog answers with ``Error`` set, which makes the
    scheduler retry the pod later; prioritize has no error field and answers 503, which
    the scheduler logs and ignores.
    """
    endpoint = f"scheduler-{verb}"
    limit = state.settings.max_extender_body_bytes

    async def route(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()

        def done(outcome: str, body: Any, status: int = 200) -> web.Response:
            state.metrics.observe(endpoint, outcome, time.perf_counter() - started)
            return web.json_response(body, status=status)

        body = await _read_bounded(request, limit)
        if body is None:
            state.metrics.observe(endpoint, "too_large", time.perf_counter() - started)
            return _too_large(limit)
        try:
            args = parse_extender_args(body, state.nodes)
        except MalformedArgs as exc:
            return done("malformed", {"message": f"not ExtenderArgs: {exc}"}, 400)
        try:
            catalog = await state.context.catalog.get(state.ipam)
        except errors.IpamError as exc:
            message = f"podnet could not read its subnets: {exc}"
            if verb == "filter":
                return done("unavailable", filter_error(message))
            return done("unavailable", {"message": message}, 503)
        try:
            namespace = state.context.namespaces(args.namespace)
            placement = placement_of(args.pod, namespace, catalog, state.settings.webhook)
            return done("answered", answer(args, placement))
        except Exception:
            log.exception("scheduler %s of pod %s/%s failed", verb, args.namespace,
                          metadata_of(args.pod).get("name"))
            message = "podnet failed on this request (its webhook logged why)"
            if verb == "filter":
                return done("error", filter_error(message))
            return done("error", {"message": message}, 500)

    return route


def _too_large(limit: int) -> web.Response:
    message = f"body exceeds {limit} bytes"
    return web.json_response({"message": message}, status=413, headers={"Connection": "close"})


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _readyz(state: WebhookState) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def readyz(_: web.Request) -> web.Response:
        try:
            await state.ipam.ping()
        except errors.StoreUnavailable as exc:
            return web.json_response({"status": "unready", "reason": str(exc)}, status=503)
        if not state.manifests.loaded:
            return web.json_response(
                {"status": "unready", "reason": "manifests not registered yet"}, status=503
            )
        return web.json_response({"status": "ready", "manifestProblems": state.manifests.problems})

    return readyz


def _metrics(state: WebhookState) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metrics(_: web.Request) -> web.Response:
        body = state.metrics.render() + state.ipam.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


@dataclass
class RunningWebhook:
    state: WebhookState
    host: str
    port: int
    ssl_context: ssl.SSLContext
    reloader: CertificateReloader

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


async def _every(seconds: float, step: Callable[[], Awaitable[object]], what: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
            raise_if_cancelled()  # redis-py may have swallowed it (see podnet_plumbing.tasks)
        except errors.IpamError as exc:
            log.warning("%s failed, retrying in %ss: %s", what, seconds, exc)
        except Exception:
            log.exception("%s failed (a bug), retrying in %ss", what, seconds)


@contextlib.asynccontextmanager
async def running_webhook(settings: ServerSettings) -> AsyncIterator[RunningWebhook]:
    """Serve until the block exits; port 0 picks a free port (see ``RunningWebhook.port``)."""
    ssl_context = make_ssl_context(settings.tls_cert, settings.tls_key, settings.client_ca)
    reloader = CertificateReloader(ssl_context, settings.tls_cert, settings.tls_key)
    manifests = _config_source(settings)
    policy = settings.webhook
    ipam = Ipam.connect(settings.redis, IpamSettings(
        reservation_ttl_s=policy.reservation_ttl_s, require_rebuilt=policy.require_rebuilt))
    memo = RedisReviewMemo.connect(settings.redis, policy.review_memo_ttl_s)
    context = AdmitContext(memo, CatalogCache(policy.catalog_cache_s), manifests.namespace)
    state = WebhookState(ipam, settings, context, manifests, WebhookMetrics())
    # lingering_time bounds how long an unread (oversized) body is drained after a 413.
    runner = web.AppRunner(build_app(state), access_log=None, lingering_time=1.0)
    tasks: list[asyncio.Task[None]] = []
    try:
        if isinstance(manifests, KubeSource):
            await manifests.start()
            with contextlib.suppress(TimeoutError):
                await manifests.wait_synced(10.0)
        try:
            await manifests.refresh(ipam)
        except errors.StoreUnavailable as exc:
            log.warning("manifests not registered yet (store unavailable): %s", exc)
        await runner.setup()
        site = web.TCPSite(
            runner, settings.host, settings.port, ssl_context=ssl_context, backlog=1024
        )
        await site.start()
        host, port = _bound_address(runner, settings)

        # Refreshing a KubeSource with no change costs nothing, so follow it closely.
        rescan_s = min(settings.rescan_s, 1.0) if settings.from_kube else settings.rescan_s

        async def rescan() -> None:
            if await manifests.refresh(ipam):
                context.catalog.invalidate()

        async def reload_certificate() -> None:
            reloader.check()

        tasks = [
            asyncio.create_task(_every(rescan_s, rescan, "manifest rescan")),
            asyncio.create_task(
                _every(settings.tls_reload_s, reload_certificate, "certificate check")
            ),
        ]
        log.info("podnet webhook serving on https://%s:%s", host, port)
        yield RunningWebhook(state, host, port, ssl_context, reloader)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        if isinstance(manifests, KubeSource):
            await manifests.close()
        await memo.close()
        await ipam.close()


def _config_source(settings: ServerSettings) -> ConfigSource:
    """The manifests folder, or the Kubernetes API with ``--kubeconfig``/``--in-cluster``."""
    if not settings.from_kube:
        return ManifestSource(settings.manifests)
    try:
        api = kube_client(settings.kubeconfig, True if settings.in_cluster else None)
    except KubeError as exc:
        raise ConfigError(str(exc)) from exc
    return KubeSource(api)


def _bound_address(runner: web.AppRunner, settings: ServerSettings) -> tuple[str, int]:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return str(address[0]), int(address[1])
    return settings.host, settings.port


YOUNG_GC_THRESHOLD = 20_000
"""Allocations between young collections while serving (CPython's default is 700): an
admission allocates hundreds of containers, nearly all freed by reference counting, and
with the default a young collection walked every admission in flight every few dozen."""


async def serve(settings: ServerSettings) -> None:
    """Run the webhook until cancelled."""
    async with running_webhook(settings):
        settle_heap(YOUNG_GC_THRESHOLD)
        await asyncio.Event().wait()
