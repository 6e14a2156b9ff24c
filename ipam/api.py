"""The IPAM's read-only query endpoint: what holds which address, and how full subnets are.

Operators and dashboards need to see the address index without Redis access or
knowledge of its key layout, so this endpoint serves it as JSON (and Prometheus text),
while every answer still comes from ``Ipam`` methods: the handlers only parse the
request and shape the reply. The views (``subnet_list``, ``ip_page``, ...) are plain
async functions over ``Ipam`` so that ``podnet ipam`` shows exactly what the endpoint
serves.

Every failure is a JSON body ``{"error": {"code": ..., "message": ...}}``: a middleware
maps the IPAM's exceptions to statuses (a bad value is 400, an unknown subnet 404, an
unreachable Redis 503), so a caller can tell a bad request from a broken store and
never gets a 500 for bad input.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import NotRequired, TypedDict

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram

from ipam import errors
from ipam.addresses import parse_ip
from ipam.openapi import DEFAULT_PAGE_LIMIT, MAX_CURSOR, MAX_PAGE_LIMIT, openapi_document
from ipam.records import SubnetUsage
from ipam.store import Ipam
from ipam.subnet import validate_name

log = logging.getLogger(__name__)
_DIGITS = re.compile("[0-9]+")

API_PREFIX = "/api/v1"

_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

JsonObject = dict[str, object]


# ------------------------------------------------------------------- wire formats


class ErrorDetail(TypedDict):
    code: str
    message: str
    field: NotRequired[str]


class ErrorBody(TypedDict):
    error: ErrorDetail


class IpPage(TypedDict):
    """One page of a subnet's allocations; ``next_cursor`` is 0 on the last page."""

    items: list[JsonObject]
    next_cursor: int


class NotFound(LookupError):
    """A lookup that found nothing: 404 on the endpoint, exit status 1 in the CLI."""


# -------------------------------------------------------------------------- views


def subnet_detail_json(usage: SubnetUsage) -> JsonObject:
    """A subnet's utilisation with the spec fields that decide who gets its addresses."""
    return {**usage.to_json(), **usage.spec.policy_fields()}


async def subnet_usages(ipam: Ipam) -> list[SubnetUsage]:
    """Every registered subnet's utilisation (a subnet deleted meanwhile is left out)."""
    usages: list[SubnetUsage] = []
    for name in await ipam.subnet_names():
        try:
            usages.append(await ipam.usage(name))
        except errors.UnknownSubnet:
            continue
    return usages


async def subnet_list(ipam: Ipam) -> list[JsonObject]:
    return [usage.to_json() for usage in await subnet_usages(ipam)]


async def subnet_detail(ipam: Ipam, name: str) -> JsonObject:
    validate_name("subnet", name)
    return subnet_detail_json(await ipam.usage(name))


async def ip_page(ipam: Ipam, subnet: str, cursor: int, limit: int) -> IpPage:
    validate_name("subnet", subnet)
    page = await ipam.allocations(subnet, cursor, limit)
    return {
        "items": [allocation.to_json() for allocation in page.allocations],
        "next_cursor": page.next_cursor,
    }


async def ip_owner(ipam: Ipam, text: str) -> JsonObject:
    address = parse_ip("ip", text)
    found = await ipam.lookup_ip(address)
    if found is None:
        raise NotFound(f"no allocation holds IP {address}")
    return found.to_json()


async def pod_allocation(ipam: Ipam, namespace: str, name: str) -> JsonObject:
    found = await ipam.lookup_pod(namespace, name)
    if found is None:
        raise NotFound(f"pod {namespace}/{name} holds no address")
    return found.to_json()


def parse_bounded_int(name: str, text: str | None, default: int, low: int, high: int) -> int:
    """A query parameter that must be an integer in ``low..high``; names it otherwise."""
    if text is None:
        return default
    reason = f"must be an integer from {low} to {high}"
    if not _DIGITS.fullmatch(text) or len(text) > len(str(high)):
        # int() would also take " 5", "+5", "5_0" and other scripts' digits ("٣").
        raise errors.MalformedValue(name, text, reason)
    value = int(text)
    if not low <= value <= high:
        raise errors.MalformedValue(name, text, reason)
    return value


# ------------------------------------------------------------------------- errors

_STATUSES: tuple[tuple[type[errors.IpamError], int, str], ...] = (
    (errors.InvalidInput, 400, "invalid_input"),
    (errors.UnknownSubnet, 404, "unknown_subnet"),
    (errors.UnknownPool, 404, "unknown_pool"),
    (errors.UnknownReservation, 404, "unknown_reservation"),
    (errors.AllocationConflict, 409, "conflict"),
    (errors.Exhausted, 409, "exhausted"),
    (errors.Fenced, 409, "fenced"),
    (errors.StoreUnavailable, 503, "store_unavailable"),
)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def error_status(exc: errors.IpamError) -> tuple[int, str]:
    """The HTTP status and error code an IPAM error is answered with."""
    for kind, status, code in _STATUSES:
        if isinstance(exc, kind):
            return status, code
    return 500, "ipam_error"


def error_body(code: str, message: str, field: str = "") -> ErrorBody:
    detail: ErrorDetail = {"code": code, "message": message}
    if field:
        detail["field"] = field
    return {"error": detail}


def error_response(
    status: int, code: str, message: str, field: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(error_body(code, message, field), status=status, headers=headers)


def _ipam_error_response(exc: errors.IpamError) -> web.Response:
    status, code = error_status(exc)
    if status >= 500:
        log.warning("answering %d: %s", status, exc)
    field = exc.field if isinstance(exc, errors.InvalidInput) else ""
    return error_response(status, code, str(exc), field)


def _http_error_response(request: web.Request, exc: web.HTTPException) -> web.Response:
    allowed = exc.headers.get("Allow")
    if exc.status == 404:
        message = f"no such endpoint: {request.path} (see {API_PREFIX}/openapi.json)"
    elif exc.status == 405:
        message = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
    else:
        message = exc.reason
    code = _HTTP_CODES.get(exc.status, "http_error")
    return error_response(
        exc.status, code, message, headers={"Allow": allowed} if allowed else None
    )


# ------------------------------------------------------------------------ metrics


class ApiMetrics:
    """The endpoint's own metrics, on the IPAM's registry while the app runs."""

    def __init__(self) -> None:
        self.requests = Histogram(
            "podnet_ipam_api_request_seconds", "Latency of query endpoint requests.",
            ["route", "method", "status"], buckets=_REQUEST_BUCKETS, registry=None,
        )
        self.store_up = Gauge(
            "podnet_ipam_store_up", "1 if the last scrape could read the IPAM's Redis.",
            registry=None,
        )

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self.requests)
        registry.register(self.store_up)

    def unregister(self, registry: CollectorRegistry) -> None:
        registry.unregister(self.requests)
        registry.unregister(self.store_up)


IPAM_KEY = web.AppKey("ipam", Ipam)
API_METRICS_KEY = web.AppKey("api_metrics", ApiMetrics)
OWNS_IPAM_KEY = web.AppKey("owns_ipam", bool)


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure in JSON, time the request and log it."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except errors.IpamError as exc:
        response = _ipam_error_response(exc)
    except NotFound as exc:
        response = error_response(404, "not_found", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _http_error_response(request, exc)
    except Exception:
        log.exception("%s %s failed", request.method, request.path_qs)
        response = error_response(500, "internal", "internal error (see the server log)")
    elapsed = time.perf_counter() - started
    request.app[API_METRICS_KEY].requests.labels(
        _route_label(request), request.method, str(response.status)
    ).observe(elapsed)
    log.info(
        "%s %s %d %.1fms", request.method, request.path_qs, response.status, 1000 * elapsed
    )
    return response


# ----------------------------------------------------------------------- handlers


def _ipam(request: web.Request) -> Ipam:
    return request.app[IPAM_KEY]


async def get_subnets(request: web.Request) -> web.Response:
    return web.json_response(await subnet_list(_ipam(request)))


async def get_subnet(request: web.Request) -> web.Response:
    return web.json_response(await subnet_detail(_ipam(request), request.match_info["name"]))


async def get_subnet_ips(request: web.Request) -> web.Response:
    query = request.query
    cursor = parse_bounded_int("cursor", query.get("cursor"), 0, 0, MAX_CURSOR)
    limit = parse_bounded_int("limit", query.get("limit"), DEFAULT_PAGE_LIMIT, 1, MAX_PAGE_LIMIT)
    page = await ip_page(_ipam(request), request.match_info["name"], cursor, limit)
    return web.json_response(page)


async def get_ip(request: web.Request) -> web.Response:
    return web.json_response(await ip_owner(_ipam(request), request.match_info["ip"]))


async def get_pod(request: web.Request) -> web.Response:
    info = request.match_info
    return web.json_response(await pod_allocation(_ipam(request), info["namespace"], info["name"]))


async def get_openapi(request: web.Request) -> web.Response:
    del request
    return web.json_response(openapi_document())


async def get_metrics(request: web.Request) -> web.Response:
    ipam = _ipam(request)
    store_up = request.app[API_METRICS_KEY].store_up
    try:
        usages = [
            (usage, await ipam.counters(usage.spec.name)) for usage in await subnet_usages(ipam)
        ]
    except errors.StoreUnavailable as exc:
        log.warning("metrics without subnet utilisation: %s", exc)
        usages = []
        store_up.set(0)
    else:
        store_up.set(1)
    ipam.metrics.record_usage(usages)
    return web.Response(body=ipam.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def get_healthz(request: web.Request) -> web.Response:
    del request
    return web.json_response({"status": "ok"})


async def get_readyz(request: web.Request) -> web.Response:
    await _ipam(request).ping()
    return web.json_response({"status": "ok"})


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Put the endpoint's metrics on the IPAM's registry; close the IPAM if the app owns it."""
    ipam, metrics = app[IPAM_KEY], app[API_METRICS_KEY]
    try:
        metrics.register(ipam.metrics.registry)
        try:
            yield
        finally:
            metrics.unregister(ipam.metrics.registry)
    finally:
        if app[OWNS_IPAM_KEY]:
            await ipam.close()


def make_app(ipam: Ipam, *, owns_ipam: bool = False) -> web.Application:
    """The query endpoint over ``ipam``; with ``owns_ipam`` it closes ``ipam`` on cleanup.

    The endpoint's request metrics join ``ipam.metrics.registry`` while the app runs,
    so run one app per ``Ipam`` at a time.
    """
    app = web.Application(middlewares=[json_errors])
    app[IPAM_KEY] = ipam
    app[API_METRICS_KEY] = ApiMetrics()
    app[OWNS_IPAM_KEY] = owns_ipam
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get(f"{API_PREFIX}/subnets", get_subnets)
    app.router.add_get(f"{API_PREFIX}/subnets/{{name}}", get_subnet)
    app.router.add_get(f"{API_PREFIX}/subnets/{{name}}/ips", get_subnet_ips)
    app.router.add_get(f"{API_PREFIX}/ips/{{ip}}", get_ip)
    app.router.add_get(f"{API_PREFIX}/pods/{{namespace}}/{{name}}", get_pod)
    app.router.add_get(f"{API_PREFIX}/openapi.json", get_openapi)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/readyz", get_readyz)
    return app
