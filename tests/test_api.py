"""The query endpoint against a real Redis: what operators and dashboards rely on.

Each test talks HTTP to the app on a loopback port (aiohttp's ``TestServer``), so
routing, the error middleware and JSON encoding are exercised as a client sees them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from ipam import errors
from ipam.api import error_status, make_app
from ipam.records import Allocation
from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from podnet.daemons import RedisServer
from tests.metrics_lint import lint

Client = TestClient[web.Request, web.Application]

BLUE_EXCLUDED = ["10.10.0.10..10.10.0.19"]
BLUE_USABLE = 256 - 3 - 10  # network, gateway, broadcast and ten excluded addresses


async def seed_blue(ipam: Ipam) -> list[Allocation]:
    """Subnet ``blue`` with one bound pod and two reservations (one of a named pod)."""
    await ipam.ensure_subnet(
        build_subnet(
            "blue", "10.10.0.0/24", exclude_ips=BLUE_EXCLUDED, namespaces=["team-a"],
            nat_outgoing=True, node_selector={"zone": "a"},
        )
    )
    bound = await ipam.reserve("blue", "tok-web-0", namespace="shop", name="web-0")
    await ipam.bind("blue", "tok-web-0", uid="uid-web-0", namespace="shop", name="web-0")
    named = await ipam.reserve("blue", "tok-web-1", namespace="shop", name="web-1")
    anonymous = await ipam.reserve("blue", "tok-anon")
    return [bound, named, anonymous]


@pytest.fixture
async def client(ipam: Ipam) -> AsyncIterator[Client]:
    async with TestClient(TestServer(make_app(ipam))) as test_client:
        yield test_client


async def get_json(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def test_subnet_list_reports_utilisation_after_reservations(
    client: Client, ipam: Ipam
) -> None:
    await seed_blue(ipam)
    subnets = await get_json(client, "/api/v1/subnets")
    assert [s["name"] for s in subnets] == ["blue"]
    blue = subnets[0]
    assert blue["cidrBlock"] == "10.10.0.0/24"
    assert (blue["total"], blue["used"], blue["reserved"]) == (BLUE_USABLE, 1, 2)
    assert (blue["free"], blue["excluded"]) == (BLUE_USABLE - 3, 13)


async def test_subnet_list_is_empty_without_subnets(client: Client) -> None:
    assert await get_json(client, "/api/v1/subnets") == []


async def test_subnet_detail_adds_the_spec_fields(client: Client, ipam: Ipam) -> None:
    await seed_blue(ipam)
    blue = await get_json(client, "/api/v1/subnets/blue")
    assert (blue["used"], blue["reserved"]) == (1, 2)
    assert blue["namespaces"] == ["team-a"]
    assert blue["natOutgoing"] is True
    assert blue["gatewayType"] == "distributed"
    assert blue["nodeSelector"] == {"zone": "a"}
    assert blue["private"] is False
    assert blue["excludeIps"] == BLUE_EXCLUDED


async def test_unknown_subnet_is_a_json_404(client: Client) -> None:
    for path in ("/api/v1/subnets/nosuch", "/api/v1/subnets/nosuch/ips"):
        body = await get_json(client, path, status=404)
        assert body["error"]["code"] == "unknown_subnet"
        assert "nosuch" in body["error"]["message"]


async def test_a_malformed_subnet_name_is_a_json_400(client: Client) -> None:
    body = await get_json(client, "/api/v1/subnets/Not_A_Name", status=400)
    assert body["error"]["code"] == "invalid_input"
    assert body["error"]["field"] == "subnet"


async def test_paging_through_ips_with_the_cursor_collects_every_allocation(
    client: Client, ipam: Ipam
) -> None:
    await ipam.ensure_subnet(build_subnet("wide", "10.20.0.0/24"))
    # More than Redis keeps in a compact hash, so HSCAN really pages.
    reserved = {str((await ipam.reserve("wide", f"tok-{n}")).ips[0]) for n in range(200)}
    collected: list[str] = []
    cursor, pages = 0, 0
    while True:
        page = await get_json(client, f"/api/v1/subnets/wide/ips?cursor={cursor}&limit=50")
        collected += [ip for item in page["items"] for ip in item["ips"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor == 0:
            break
    assert pages > 1
    assert sorted(collected) == sorted(reserved)
    assert len(collected) == len(set(collected)) == 200


async def test_an_allocation_page_carries_the_allocation_fields(
    client: Client, ipam: Ipam
) -> None:
    await seed_blue(ipam)
    page = await get_json(client, "/api/v1/subnets/blue/ips")
    assert page["next_cursor"] == 0
    by_token = {item["reservation"]: item for item in page["items"]}
    web_0 = by_token["tok-web-0"]
    assert web_0["state"] == "bound"
    assert web_0["owner"] == {"namespace": "shop", "name": "web-0", "uid": "uid-web-0"}
    assert web_0["mac"] and web_0["since_ms"] > 0
    assert by_token["tok-anon"]["state"] == "reserved"
    assert by_token["tok-anon"]["owner"] is None


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("limit", "0"), ("limit", "1001"), ("limit", "ten"), ("cursor", "-1"), ("cursor", "x"),
     ("cursor", str(2**64)), ("cursor", "1.5"), ("limit", "%D9%A3"), ("limit", "%2B5"),
     ("limit", "%205"), ("limit", "5%0A"), ("limit", "5_0"), ("cursor", "0" * 30)],
    ids=["zero", "too-big", "word", "negative", "letter", "beyond-64-bits", "fraction",
         "arabic-digit", "plus-sign", "leading-space", "trailing-newline", "underscore",
         "thirty-zeros"],
)
async def test_bad_paging_parameters_are_a_400_naming_the_parameter(
    client: Client, ipam: Ipam, parameter: str, value: str
) -> None:
    await seed_blue(ipam)
    body = await get_json(client, f"/api/v1/subnets/blue/ips?{parameter}={value}", status=400)
    assert body["error"]["field"] == parameter
    assert body["error"]["message"].startswith(f"{parameter} {unquote(value)}:")


async def test_the_openapi_bounds_of_the_paging_parameters_are_the_servers(
    client: Client, ipam: Ipam
) -> None:
    await seed_blue(ipam)
    document = await get_json(client, "/api/v1/openapi.json")
    parameters = {p["name"]: p["schema"] for p in
                  document["paths"]["/api/v1/subnets/{name}/ips"]["get"]["parameters"]
                  if p["in"] == "query"}
    for name, schema in parameters.items():
        for edge in (schema["minimum"], schema["maximum"]):
            await get_json(client, f"/api/v1/subnets/blue/ips?{name}={edge}")
        await get_json(client, f"/api/v1/subnets/blue/ips?{name}={schema['maximum'] + 1}",
                       status=400)
        await get_json(client, f"/api/v1/subnets/blue/ips?{name}={schema['minimum'] - 1}",
                       status=400)


async def test_ip_lookup_finds_the_allocation_holding_it(client: Client, ipam: Ipam) -> None:
    bound, _, _ = await seed_blue(ipam)
    address = str(bound.ips[0])
    found = await get_json(client, f"/api/v1/ips/{address}")
    assert found["ips"] == [address]
    assert found["owner"]["name"] == "web-0"


async def test_an_ip_nobody_holds_is_a_json_404(client: Client, ipam: Ipam) -> None:
    await seed_blue(ipam)
    for address in ("10.10.0.250", "192.0.2.1", "fd00::1"):
        body = await get_json(client, f"/api/v1/ips/{address}", status=404)
        assert body["error"] == {
            "code": "not_found", "message": f"no allocation holds IP {address}",
        }


async def test_a_malformed_ip_is_a_json_400(client: Client) -> None:
    body = await get_json(client, "/api/v1/ips/10.10.0.300", status=400)
    assert body["error"]["field"] == "ip"
    assert "not a valid IP address" in body["error"]["message"]


async def test_pod_lookup_finds_bound_and_reserved_pods(client: Client, ipam: Ipam) -> None:
    _, named, _ = await seed_blue(ipam)
    bound = await get_json(client, "/api/v1/pods/shop/web-0")
    assert bound["state"] == "bound"
    reserved = await get_json(client, "/api/v1/pods/shop/web-1")
    assert reserved["ips"] == named.ip_strings()
    body = await get_json(client, "/api/v1/pods/shop/web-9", status=404)
    assert body["error"]["message"] == "pod shop/web-9 holds no address"


async def test_openapi_document_describes_every_route(client: Client) -> None:
    document = await get_json(client, "/api/v1/openapi.json")
    assert document["openapi"].startswith("3.0")
    assert client.app is not None
    routes = {resource.canonical for resource in client.app.router.resources()}
    assert routes == set(document["paths"])
    assert all("get" in operations for operations in document["paths"].values())


async def test_openapi_references_all_resolve(client: Client) -> None:
    document = await get_json(client, "/api/v1/openapi.json")
    schemas = document["components"]["schemas"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [ref for value in node.values() for ref in refs(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in refs(value)]
        return []

    names = {ref.removeprefix("#/components/schemas/") for ref in refs(document)}
    assert names and names <= set(schemas)


async def test_openapi_schemas_require_exactly_what_the_endpoint_returns(
    client: Client, ipam: Ipam
) -> None:
    await seed_blue(ipam)
    schemas = (await get_json(client, "/api/v1/openapi.json"))["components"]["schemas"]
    usage = (await get_json(client, "/api/v1/subnets"))[0]
    detail = await get_json(client, "/api/v1/subnets/blue")
    page = await get_json(client, "/api/v1/subnets/blue/ips")
    assert set(schemas["SubnetUsage"]["required"]) == set(usage)
    assert set(schemas["FamilyUsage"]["required"]) == set(usage["families"][0])
    assert set(schemas["SubnetDetail"]["required"]) == set(detail)
    assert set(schemas["IpPage"]["required"]) == set(page)
    assert set(schemas["Allocation"]["required"]) == set(page["items"][0])


async def test_metrics_expose_the_utilisation_of_each_subnet(client: Client, ipam: Ipam) -> None:
    await seed_blue(ipam)
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert lint(await response.text()) == []  # what promtool check metrics would say
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    }

    def addresses(state: str) -> float:
        labels = (("family", "IPv4"), ("state", state), ("subnet", "blue"))
        return samples[("podnet_ipam_subnet_addresses", labels)]

    assert (addresses("used"), addresses("reserved"), addresses("free")) == (
        1, 2, BLUE_USABLE - 3,
    )
    assert samples[("podnet_ipam_store_up", ())] == 1
    allocations = (("event", "allocations"), ("subnet", "blue"))
    assert samples[("podnet_ipam_cluster_events_total", allocations)] == 3  # a counter
    healthz = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
    assert samples[("podnet_ipam_api_request_seconds_count", healthz)] == 1


async def test_healthz_is_ok(client: Client) -> None:
    assert await get_json(client, "/healthz") == {"status": "ok"}


async def test_readyz_is_503_while_redis_is_down_and_ok_once_it_is_back(
    own_redis: RedisServer,
) -> None:
    ipam = Ipam.connect(RedisSettings(url=own_redis.url, prefix="ready:"))
    async with TestClient(TestServer(make_app(ipam, owns_ipam=True))) as client:
        assert await get_json(client, "/readyz") == {"status": "ok"}
        own_redis.stop()
        body = await get_json(client, "/readyz", status=503)
        assert body["error"]["code"] == "store_unavailable"
        body = await get_json(client, "/api/v1/subnets", status=503)
        assert body["error"]["code"] == "store_unavailable"
        assert await get_json(client, "/healthz") == {"status": "ok"}
        metrics = await client.get("/metrics")
        assert metrics.status == 200
        assert "podnet_ipam_store_up 0.0" in await metrics.text()
        own_redis.start()
        assert await get_json(client, "/readyz") == {"status": "ok"}


async def test_unknown_route_is_a_json_404(client: Client) -> None:
    body = await get_json(client, "/api/v1/nothing-here", status=404)
    assert body["error"] == {
        "code": "not_found",
        "message": "no such endpoint: /api/v1/nothing-here (see /api/v1/openapi.json)",
    }


async def test_a_wrong_method_is_a_json_405(client: Client) -> None:
    response = await client.post("/api/v1/subnets")
    assert response.status == 405
    assert response.headers["Allow"] == "GET,HEAD"
    assert (await response.json())["error"] == {
        "code": "method_not_allowed",
        "message": "POST is not allowed on /api/v1/subnets (allowed: GET,HEAD)",
    }


async def test_requests_are_logged(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ipam.api"):
        await client.get("/api/v1/ips/nonsense")
    assert any("GET /api/v1/ips/nonsense 400" in r.getMessage() for r in caplog.records)


async def test_an_ipam_serves_a_new_app_once_the_previous_one_stopped(ipam: Ipam) -> None:
    for _ in range(2):
        async with TestClient(TestServer(make_app(ipam))) as client:
            assert (await client.get("/metrics")).status == 200


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.MalformedValue("limit", "x", "bad"), 400, "invalid_input"),
        (errors.SubnetOverlap("spec.cidrBlock", "x", "overlaps"), 400, "invalid_input"),
        (errors.UnknownSubnet("blue"), 404, "unknown_subnet"),
        (errors.UnknownPool("pool"), 404, "unknown_pool"),
        (errors.Fenced("blue"), 409, "fenced"),
        (errors.StoreUnavailable("redis: down"), 503, "store_unavailable"),
        (errors.IpamError("unexpected"), 500, "ipam_error"),
    ],
)
def test_each_ipam_error_has_its_status(
    error: errors.IpamError, status: int, code: str
) -> None:
    assert error_status(error) == (status, code)
