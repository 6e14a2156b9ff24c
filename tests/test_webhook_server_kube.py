"""The webhook process following Subnets and Namespaces in the Kubernetes API (fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from ipam.settings import RedisSettings
from ipam.store import Ipam
from tests.kube_api import KubeApi
from tests.test_webhook_server import annotations_of, patch_of, pod, review
from tests.tls import client_context, make_certificate
from webhook.patch import apply_patch
from webhook.server import running_webhook
from webhook.settings import ServerSettings


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi() as server:
        yield server


def kubeconfig_for(api: KubeApi, path: Path) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        f"clusters: [{{name: t, cluster: {{server: '{api.url}'}}}}]\n"
        "users: [{name: t, user: {token: x}}]\n"
        "contexts: [{name: t, context: {cluster: t, user: t}}]\n"
    )
    return path


async def test_with_a_kubeconfig_the_webhook_allocates_from_subnets_created_in_the_api(
    api: KubeApi, tmp_path: Path, redis_settings: RedisSettings, ipam: Ipam
) -> None:
    cert, key = make_certificate(tmp_path / "tls")
    settings = ServerSettings(
        tls_cert=cert, tls_key=key, host="127.0.0.1", port=0, redis=redis_settings,
        kubeconfig=kubeconfig_for(api, tmp_path / "kubeconfig"),
    )
    connector = aiohttp.TCPConnector(ssl=client_context(cert))
    async with running_webhook(settings) as running, aiohttp.ClientSession(
        connector=connector
    ) as session:
        api.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                    "metadata": {"name": "zone-k"}, "spec": {"cidrBlock": "10.70.0.0/24"}})
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": "kx", "annotations": {"ovn.kubernetes.io/logical_switch": "zone-k"}}})
        for _ in range(100):
            if "zone-k" in await ipam.subnet_names():
                break
            await asyncio.sleep(0.05)
        obj = pod(name="web-0", namespace="kx")
        async with session.post(running.url + "/mutate-pods", json=review(obj)) as response:
            answer = await response.json()
        async with session.get(running.url + "/readyz") as ready:
            assert ready.status == 200
    stored = apply_patch(obj, patch_of(answer))
    assert annotations_of(stored)["ovn.kubernetes.io/ip_address"].startswith("10.70.0.")


async def test_an_ippool_applied_right_after_its_subnet_is_validated_against_it(
    api: KubeApi, tmp_path: Path, redis_settings: RedisSettings
) -> None:
    cert, key = make_certificate(tmp_path / "tls")
    settings = ServerSettings(
        tls_cert=cert, tls_key=key, host="127.0.0.1", port=0, redis=redis_settings,
        kubeconfig=kubeconfig_for(api, tmp_path / "kubeconfig"), rescan_s=60.0,
    )
    connector = aiohttp.TCPConnector(ssl=client_context(cert))
    pool = {"apiVersion": "kubeovn.io/v1", "kind": "IPPool", "metadata": {"name": "p"},
            "spec": {"subnet": "zone-p", "ips": ["10.71.0.10..10.71.0.20"]}}
    async with running_webhook(settings) as running, aiohttp.ClientSession(
        connector=connector
    ) as session:
        api.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                    "metadata": {"name": "zone-p"}, "spec": {"cidrBlock": "10.71.0.0/24"}})
        body = review(pool, kind="IPPool", group="kubeovn.io", resource="ippools")
        async with session.post(running.url + "/validate-ippools", json=body) as response:
            answer = await response.json()
    assert answer["response"]["allowed"] is True


async def test_a_subnet_over_a_nodes_address_in_the_api_is_refused_naming_the_node(
    api: KubeApi, tmp_path: Path, redis_settings: RedisSettings
) -> None:
    cert, key = make_certificate(tmp_path / "tls")
    settings = ServerSettings(
        tls_cert=cert, tls_key=key, host="127.0.0.1", port=0, redis=redis_settings,
        kubeconfig=kubeconfig_for(api, tmp_path / "kubeconfig"),
    )
    api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.21"}]}})
    connector = aiohttp.TCPConnector(ssl=client_context(cert))
    subnet = {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "over"},
              "spec": {"cidrBlock": "192.0.2.0/24"}}
    async with running_webhook(settings) as running, aiohttp.ClientSession(
        connector=connector
    ) as session:
        body = review(subnet, kind="Subnet", group="kubeovn.io", resource="subnets")
        async with session.post(running.url + "/validate-subnets", json=body) as response:
            answer = await response.json()
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["message"] == (
        "spec.cidrBlock 192.0.2.0/24: subnet over overlaps the address of node worker-1 "
        "(192.0.2.21/32)")
