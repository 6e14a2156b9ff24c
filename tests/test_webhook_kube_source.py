"""The webhook's KubeSource: Subnets, IPPools and Namespaces from the Kubernetes API.

The API is the local fixture (tests/kube_api.py), the IPAM is real Redis, and pods go
through the webhook's admission path exactly as a review from kube-apiserver would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest

from ipam.settings import RedisSettings
from ipam.store import Ipam
from podnet_plumbing.kube import BackoffSettings, WatchSettings
from tests.kube_api import RESOURCES, KubeApi
from tests.test_webhook_server import annotations_of, patch_of, pod, review
from tests.waiting import eventually
from webhook.admit import AdmitContext, CatalogCache, admit_pod
from webhook.kube_source import KubeSource
from webhook.memo import RedisReviewMemo
from webhook.patch import apply_patch
from webhook.review import parse_review
from webhook.settings import WebhookSettings

FAST = WatchSettings(backoff=BackoffSettings(initial_s=0.05, max_s=0.2), stop_timeout_s=2.0)


def subnet(name: str, cidr: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"cidrBlock": cidr, **spec}}


def namespace(name: str, **annotations: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "annotations": annotations}}


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi() as server:
        yield server


@pytest.fixture
async def source(api: KubeApi) -> AsyncIterator[KubeSource]:
    with api.client() as kube:
        async with KubeSource(kube, FAST) as followed:
            yield followed


class Admission:
    """The webhook's admit path over the IPAM, with namespaces from ``source``."""

    def __init__(self, ipam: Ipam, redis: RedisSettings, source: KubeSource) -> None:
        self.ipam = ipam
        self.memo = RedisReviewMemo.connect(replace(redis, socket_timeout_s=2.0), 600)
        self.context = AdmitContext(self.memo, CatalogCache(0.0), source.namespace)

    async def admit(self, obj: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(review(obj)).encode()
        answer = await admit_pod(parse_review(body), self.ipam, WebhookSettings(), self.context)
        response = answer.review["response"]
        assert response["allowed"], response.get("status")
        return apply_patch(obj, patch_of(answer.review))


@pytest.fixture
async def admission(
    ipam: Ipam, redis_settings: RedisSettings, source: KubeSource
) -> AsyncIterator[Admission]:
    helper = Admission(ipam, redis_settings, source)
    yield helper
    await helper.memo.close()


async def refreshed(source: KubeSource, ipam: Ipam, subnets: int, pools: int = 0) -> None:
    """Refresh once the source has seen ``subnets`` and ``pools`` objects."""
    await eventually(lambda: (len(source.subnets.store), len(source.pools.store)) == (
        subnets, pools))
    assert await source.refresh(ipam)


async def test_a_subnet_created_in_the_api_becomes_allocatable_through_admission(
    api: KubeApi, ipam: Ipam, source: KubeSource, admission: Admission
) -> None:
    await source.wait_synced(5)
    assert await source.refresh(ipam) and source.loaded
    assert await source.refresh(ipam) is False  # nothing changed, nothing done
    api.create(subnet("zone-b", "10.30.0.0/24"))
    api.create(namespace("edge", **{"ovn.kubernetes.io/logical_switch": "zone-b"}))
    await eventually(lambda: source.namespace("edge").annotations != {})
    await refreshed(source, ipam, 1)
    assert "zone-b" in await ipam.subnet_names()
    stored = await admission.admit(pod(name="web-0", namespace="edge"))
    written = annotations_of(stored)
    assert written["ovn.kubernetes.io/logical_switch"] == "zone-b"
    assert written["ovn.kubernetes.io/ip_address"].startswith("10.30.0.")
    assert written["ovn.kubernetes.io/cidr"] == "10.30.0.0/24"


async def test_an_ippool_from_the_api_is_registered_and_a_bad_subnet_is_a_named_problem(
    api: KubeApi, ipam: Ipam, source: KubeSource, admission: Admission
) -> None:
    api.create(subnet("zone-c", "10.40.0.0/24"))
    api.create(subnet("zz-clash", "10.40.0.128/25"))  # registered after zone-c, by name
    api.create({"apiVersion": "kubeovn.io/v1", "kind": "IPPool", "metadata": {"name": "db"},
                "spec": {"subnet": "zone-c", "ips": ["10.40.0.10", "10.40.0.11"]}})
    await refreshed(source, ipam, 2, 1)
    assert [p.name for p in await ipam.pools()] == ["db"]
    assert len(source.problems) == 1
    assert source.problems[0].startswith("kube-apiserver: Subnet zz-clash: ")
    assert "overlaps" in source.problems[0]
    stored = await admission.admit(pod(annotations={"ovn.kubernetes.io/ip_pool": "db"}))
    assert annotations_of(stored)["ovn.kubernetes.io/ip_address"] in ("10.40.0.10", "10.40.0.11")


async def test_a_subnet_deleted_in_the_api_leaves_the_ipam_unless_addresses_are_in_use(
    api: KubeApi, ipam: Ipam, source: KubeSource, admission: Admission
) -> None:
    api.create(subnet("idle", "10.50.0.0/24"))
    api.create(subnet("busy", "10.51.0.0/24"))
    await refreshed(source, ipam, 2)
    await admission.admit(pod(annotations={"ovn.kubernetes.io/logical_switch": "busy"}))
    api.delete("Subnet", "idle")
    api.delete("Subnet", "busy")
    await refreshed(source, ipam, 0)
    names = await ipam.subnet_names()
    assert "idle" not in names and "busy" in names
    assert any(p.startswith("kube-apiserver: Subnet busy was deleted but is kept")
               for p in source.problems)


async def test_refresh_waits_for_the_first_lists_before_registering_anything(
    api: KubeApi, ipam: Ipam
) -> None:
    api.stop()
    with api.client() as kube:
        async with KubeSource(kube, FAST) as source:
            assert await source.refresh(ipam) is False and not source.loaded
            api.start()
            await source.wait_synced(5)
            assert await source.refresh(ipam) and source.loaded
    assert "ovn-default" in await ipam.subnet_names()


async def test_a_kind_the_api_does_not_serve_is_a_problem_and_nothing_is_registered(
    ipam: Ipam,
) -> None:
    without_pools = [r for r in RESOURCES if r.kind != "IPPool"]
    with KubeApi(without_pools) as api, api.client() as kube:
        async with KubeSource(kube, FAST) as source:
            await eventually(lambda: source.pools.stats.errors > 0)
            assert await source.refresh(ipam) is False and not source.loaded
    assert len(source.problems) == 1
    assert source.problems[0].startswith("kube-apiserver: cannot list IPPool: NotFound")
    assert "(HTTP 404)" in source.problems[0]
