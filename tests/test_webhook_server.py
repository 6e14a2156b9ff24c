"""The webhook end to end: a real HTTPS server, real Redis, reviews as kube-apiserver sends.

Each review below is shaped like the apiserver's (``admission.k8s.io/v1``, a request uid,
group/version/kind, resource, namespace, userInfo, options), and the patch that comes
back is applied to the pod to check what the stored pod would carry.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ipam.pool import parse_ippool
from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from podnet.daemons import RedisServer
from tests.metrics_lint import lint
from tests.tls import client_context, make_certificate
from webhook.patch import apply_patch
from webhook.server import RunningWebhook, running_webhook
from webhook.settings import ServerSettings

MANIFESTS = """\
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: zone-a
spec:
  cidrBlock: 10.20.0.0/24
  nodeSelector:
    podnet.io/zone: a
---
apiVersion: kubeovn.io/v1
kind: IPPool
metadata:
  name: db-pool
spec:
  subnet: zone-a
  ips: [10.20.0.10, 10.20.0.11]
---
apiVersion: v1
kind: Namespace
metadata:
  name: edge
  annotations:
    ovn.kubernetes.io/logical_switch: zone-a
"""

USER = {
    "username": "system:serviceaccount:kube-system:replicaset-controller",
    "uid": "8f3c1d2e-0000-4000-8000-000000000001",
    "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
               "system:authenticated"],
}


def pod(
    *,
    name: str | None = "web-0",
    namespace: str = "default",
    annotations: Mapping[str, str] | None = None,
    owner: tuple[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    generate_name: str | None = None,
    spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A pod as the apiserver holds it during mutating admission of a CREATE."""
    metadata: dict[str, Any] = {"namespace": namespace, "creationTimestamp": None}
    if name is not None:
        metadata["name"] = name
    if generate_name is not None:
        metadata["generateName"] = generate_name
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    if labels is not None:
        metadata["labels"] = dict(labels)
    if owner is not None:
        metadata["ownerReferences"] = [{
            "apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
            "uid": str(uuid.uuid4()), "controller": True, "blockOwnerDeletion": True,
        }]
    body: dict[str, Any] = {
        "containers": [{"name": "app", "image": "nginx:1.27", "resources": {}}],
        "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "schedulerName": "default-scheduler",
    }
    body.update(spec or {})
    return {"kind": "Pod", "apiVersion": "v1", "metadata": metadata, "spec": body,
            "status": {}}


def review(
    obj: Mapping[str, Any] | None,
    *,
    uid: str | None = None,
    operation: str = "CREATE",
    dry_run: bool = False,
    kind: str = "Pod",
    group: str = "",
    resource: str = "pods",
    old: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview exactly as kube-apiserver posts it."""
    gvk = {"group": group, "version": "v1", "kind": kind}
    gvr = {"group": group, "version": "v1", "resource": resource}
    metadata = (obj or old or {}).get("metadata", {})
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "namespace": metadata.get("namespace", ""),
        "operation": operation,
        "userInfo": USER,
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
        "options": {"kind": f"{operation.title()}Options", "apiVersion": "meta.k8s.io/v1"},
    }
    if metadata.get("name"):
        request["name"] = metadata["name"]
    if not request["namespace"]:
        del request["namespace"]
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}


def patch_of(answer: Mapping[str, Any]) -> list[Any]:
    response = answer["response"]
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    ops: list[Any] = json.loads(base64.b64decode(response["patch"]))
    return ops


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    found: dict[str, str] = obj["metadata"].get("annotations", {})
    return found


@dataclass
class Harness:
    running: RunningWebhook
    session: aiohttp.ClientSession
    ipam: Ipam
    cert: Path
    key: Path

    async def post(self, data: bytes, path: str = "/mutate-pods") -> tuple[int, Any]:
        async with self.session.post(
            self.running.url + path, data=data, headers={"Content-Type": "application/json"}
        ) as response:
            return response.status, await response.json()

    async def send(self, body: Mapping[str, Any], path: str = "/mutate-pods") -> dict[str, Any]:
        status, answer = await self.post(json.dumps(body).encode(), path)
        assert status == 200, answer
        assert answer["response"]["uid"] == body["request"]["uid"]
        result: dict[str, Any] = answer
        return result

    async def admit(self, obj: Mapping[str, Any], **options: Any) -> dict[str, Any]:
        """Admit ``obj`` and return it as the apiserver would store it."""
        answer = await self.send(review(obj, **options))
        assert answer["response"]["allowed"], answer["response"].get("status")
        return apply_patch(obj, patch_of(answer))

    async def denial(self, obj: Mapping[str, Any], **options: Any) -> dict[str, Any]:
        answer = await self.send(review(obj, **options))
        assert not answer["response"]["allowed"]
        assert "patch" not in answer["response"]
        status: dict[str, Any] = answer["response"]["status"]
        return status

    async def held(self, subnet: str = "ovn-default") -> int:
        usage = await self.ipam.usage(subnet)
        return usage.families[0].used + usage.families[0].reserved


def server_settings(
    tmp_path: Path, redis: RedisSettings, cert: Path, key: Path
) -> ServerSettings:
    folder = tmp_path / "manifests"
    folder.mkdir(exist_ok=True)
    (folder / "network.yaml").write_text(MANIFESTS)
    return ServerSettings(
        tls_cert=cert, tls_key=key, host="127.0.0.1", port=0, redis=redis,
        manifests=folder, rescan_s=0.2, tls_reload_s=0.1,
    )


@pytest.fixture
async def webhook(
    tmp_path: Path, redis_settings: RedisSettings, ipam: Ipam
) -> AsyncIterator[Harness]:
    cert, key = make_certificate(tmp_path / "tls")
    settings = server_settings(tmp_path, redis_settings, cert, key)
    connector = aiohttp.TCPConnector(ssl=client_context(cert))
    async with running_webhook(settings) as running, aiohttp.ClientSession(
        connector=connector
    ) as session:
        yield Harness(running, session, ipam, cert, key)


# ------------------------------------------------------------------- pods


async def test_a_named_pod_gets_its_address_mac_cidr_gateway_and_reservation(
    webhook: Harness,
) -> None:
    stored = await webhook.admit(pod(name="web-0"))
    written = annotations_of(stored)
    assert written["ovn.kubernetes.io/allocated"] == "true"
    assert written["ovn.kubernetes.io/cidr"] == "10.16.0.0/16"
    assert written["ovn.kubernetes.io/gateway"] == "10.16.0.1"
    assert written["ovn.kubernetes.io/logical_switch"] == "ovn-default"
    allocation = await webhook.ipam.lookup_token(written["podnet.io/reservation"])
    assert allocation is not None
    assert allocation.ip_strings() == [written["ovn.kubernetes.io/ip_address"]]
    assert allocation.mac == written["ovn.kubernetes.io/mac_address"]
    assert (allocation.namespace, allocation.name, allocation.state) == (
        "default", "web-0", "reserved"
    )


async def test_a_replicaset_pod_with_generate_name_and_no_name_or_uid_is_admitted(
    webhook: Harness,
) -> None:
    obj = pod(name=None, generate_name="web-7d4b9c8f5d-", owner=("ReplicaSet", "web-7d4b9c8f5d"),
              labels={"app": "web", "pod-template-hash": "7d4b9c8f5d"},
              annotations={"kubernetes.io/psp": "restricted"})
    stored = await webhook.admit(obj)
    written = annotations_of(stored)
    assert written["kubernetes.io/psp"] == "restricted"
    assert written["ovn.kubernetes.io/ip_address"].startswith("10.16.")
    assert "name" not in stored["metadata"]


async def test_a_statefulset_pod_gets_the_same_address_after_delete_and_recreate(
    webhook: Harness,
) -> None:
    first = await webhook.admit(pod(name="db-1", owner=("StatefulSet", "db")))
    token = annotations_of(first)["podnet.io/reservation"]
    # The sync worker binds it, then keeps the ordinal's address when the pod is deleted.
    await webhook.ipam.bind("ovn-default", token, uid="uid-1", namespace="default", name="db-1")
    await webhook.ipam.release("ovn-default", "token", token, keep_sticky=True)
    again = await webhook.admit(pod(name="db-1", owner=("StatefulSet", "db")))
    assert annotations_of(again)["ovn.kubernetes.io/ip_address"] == (
        annotations_of(first)["ovn.kubernetes.io/ip_address"]
    )
    assert annotations_of(again)["podnet.io/reservation"] != token


async def test_a_statefulset_pod_takes_the_pool_entry_of_its_ordinal(webhook: Harness) -> None:
    stored = await webhook.admit(pod(
        name="db-1", owner=("StatefulSet", "db"),
        annotations={"ovn.kubernetes.io/ip_pool": "db-pool"},
    ))
    assert annotations_of(stored)["ovn.kubernetes.io/ip_address"] == "10.20.0.11"
    status = await webhook.denial(pod(
        name="db-2", owner=("StatefulSet", "db"),
        annotations={"ovn.kubernetes.io/ip_pool": "db-pool"},
    ))
    assert status["message"] == (
        "StatefulSet ordinal 2 is past the end of ip_pool db-pool (2 entries)"
    )


async def test_a_daemonset_pod_keeps_its_match_fields_term_when_the_subnet_selector_is_merged(
    webhook: Harness,
) -> None:
    node_term = {"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}
    obj = pod(
        name=None, generate_name="agent-", namespace="edge", owner=("DaemonSet", "agent"),
        spec={"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [node_term]}}}},
    )
    stored = await webhook.admit(obj)
    terms = stored["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{
        **node_term,
        "matchExpressions": [{"key": "podnet.io/zone", "operator": "In", "values": ["a"]}],
    }]
    assert annotations_of(stored)["ovn.kubernetes.io/logical_switch"] == "zone-a"


async def test_a_static_ip_and_mac_are_given_exactly(webhook: Harness) -> None:
    stored = await webhook.admit(pod(annotations={
        "ovn.kubernetes.io/ip_address": "10.16.0.7",
        "ovn.kubernetes.io/mac_address": "02:00:00:aa:bb:cc",
    }))
    assert annotations_of(stored)["ovn.kubernetes.io/ip_address"] == "10.16.0.7"
    assert annotations_of(stored)["ovn.kubernetes.io/mac_address"] == "02:00:00:aa:bb:cc"


async def test_a_conflicting_static_ip_is_denied_naming_the_pod_that_holds_it(
    webhook: Harness,
) -> None:
    static = {"ovn.kubernetes.io/ip_address": "10.16.0.7"}
    await webhook.admit(pod(name="web-0", annotations=static))
    status = await webhook.denial(pod(name="web-1", annotations=static))
    assert status == {
        "code": 403,
        "message": "ovn.kubernetes.io/ip_address 10.16.0.7 is already used by pod default/web-0",
    }


async def test_a_malformed_static_ip_is_a_bad_request_naming_the_annotation(
    webhook: Harness,
) -> None:
    status = await webhook.denial(pod(annotations={"ovn.kubernetes.io/ip_address": "10.16.0"}))
    assert status["code"] == 400
    assert status["message"].startswith("ovn.kubernetes.io/ip_address 10.16.0:")


async def test_an_exhausted_pool_is_denied_with_the_workload_and_counts(webhook: Harness) -> None:
    def replica() -> dict[str, Any]:
        return pod(
            name=None, generate_name="web-5f6d7c8b9-", owner=("ReplicaSet", "web-5f6d7c8b9"),
            labels={"app": "web", "pod-template-hash": "5f6d7c8b9"},
            annotations={"ovn.kubernetes.io/ip_pool": "10.16.0.20,10.16.0.21"},
        )

    got = {annotations_of(await webhook.admit(replica()))["ovn.kubernetes.io/ip_address"]
           for _ in range(2)}
    assert got == {"10.16.0.20", "10.16.0.21"}
    status = await webhook.denial(replica())
    assert status["message"] == (
        "ip_pool of Deployment default/web is exhausted: 2 of 2 addresses in use"
    )


async def test_a_dry_run_is_checked_but_reserves_nothing(webhook: Harness) -> None:
    answer = await webhook.send(review(pod(name="web-9"), dry_run=True))
    assert answer["response"]["allowed"] and "patch" not in answer["response"]
    assert await webhook.held() == 0
    static = {"ovn.kubernetes.io/ip_address": "10.16.0.7"}
    await webhook.admit(pod(name="web-0", annotations=static))
    status = await webhook.denial(
        pod(name="web-1", annotations=static), dry_run=True
    )
    assert "already used by pod default/web-0" in status["message"]
    assert await webhook.held() == 1


async def test_a_reinvocation_on_the_patched_pod_returns_the_same_allocation(
    webhook: Harness,
) -> None:
    stored = await webhook.admit(pod(name="web-0"))
    again = await webhook.send(review(stored))
    assert again["response"]["allowed"] and patch_of(again) == []
    assert await webhook.held() == 1


async def test_a_reinvocation_after_the_token_expired_keeps_the_address_if_still_free(
    webhook: Harness,
) -> None:
    stored = await webhook.admit(pod(name="web-0"))
    token = annotations_of(stored)["podnet.io/reservation"]
    await webhook.ipam.release("ovn-default", "token", token)
    again = await webhook.admit(stored)
    assert annotations_of(again)["ovn.kubernetes.io/ip_address"] == (
        annotations_of(stored)["ovn.kubernetes.io/ip_address"]
    )
    assert annotations_of(again)["podnet.io/reservation"] != token
    assert await webhook.held() == 1


async def test_a_retried_review_gets_the_same_answer_and_reserves_once(webhook: Harness) -> None:
    body = review(pod(name=None, generate_name="web-", owner=("ReplicaSet", "web-1")))
    answers = await asyncio.gather(*(webhook.send(body) for _ in range(5)))
    assert all(a == answers[0] for a in answers)
    assert patch_of(answers[0])
    assert await webhook.held() == 1


async def test_a_retry_after_the_subnets_changed_gets_the_first_answer_and_frees_the_other(
    webhook: Harness,
) -> None:
    body = review(pod(name=None, generate_name="web-", namespace="moved",
                      owner=("ReplicaSet", "web-1")))
    first = await webhook.send(body)
    assert await webhook.held("ovn-default") == 1
    # Meanwhile namespace "moved" gets a subnet of its own: a fresh decision would differ.
    folder = webhook.running.state.settings.manifests
    assert folder is not None
    (folder / "moved.yaml").write_text(json.dumps(subnet("moved", "10.61.0.0/24",
                                                         namespaces=["moved"])))
    for _ in range(50):
        if "moved" in await webhook.ipam.subnet_names():
            break
        await asyncio.sleep(0.1)
    webhook.running.state.context.catalog.invalidate()
    again = await webhook.send(body)
    assert again == first
    assert await webhook.held("moved") == 0


async def test_a_burst_larger_than_the_redis_pool_waits_instead_of_failing(
    tmp_path: Path, redis_settings: RedisSettings
) -> None:
    cert, key = make_certificate(tmp_path / "tls")
    small = RedisSettings(url=redis_settings.url, prefix=redis_settings.prefix,
                          max_connections=10)
    settings = server_settings(tmp_path, small, cert, key)
    connector = aiohttp.TCPConnector(ssl=client_context(cert), limit=0)
    async with running_webhook(settings) as running, aiohttp.ClientSession(
        connector=connector
    ) as session:

        async def admit() -> bool:
            body = review(pod(name=None, generate_name="web-", owner=("ReplicaSet", "web-1")))
            async with session.post(running.url + "/mutate-pods", json=body) as response:
                answer = await response.json()
            return bool(answer["response"]["allowed"])

        assert all(await asyncio.gather(*(admit() for _ in range(60))))


async def test_an_update_is_allowed_unchanged(webhook: Harness) -> None:
    obj = pod(name="web-0")
    answer = await webhook.send(review(obj, operation="UPDATE", old=obj))
    assert answer["response"] == {"uid": answer["response"]["uid"], "allowed": True}


async def test_a_host_network_pod_is_admitted_without_a_patch(webhook: Harness) -> None:
    answer = await webhook.send(review(pod(spec={"hostNetwork": True})))
    assert answer["response"]["allowed"] and "patch" not in answer["response"]
    assert await webhook.held() == 0


async def test_pods_of_excluded_namespaces_are_admitted_unchanged(webhook: Harness) -> None:
    answer = await webhook.send(review(pod(namespace="kube-system")))
    assert answer["response"]["allowed"] and "patch" not in answer["response"]


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{\"apiVersion\": ", "not JSON"),
        (json.dumps({**review(pod()), "kind": "Pod"}).encode(), "kind"),
        (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                     "request": {k: v for k, v in review(pod())["request"].items()
                                 if k != "uid"}}).encode(), "uid"),
    ],
)
async def test_malformed_bodies_get_a_400_with_a_json_message(
    webhook: Harness, data: bytes, reason: str
) -> None:
    status, answer = await webhook.post(data)
    assert status == 400 and reason in answer["message"]


async def test_a_body_over_seven_mebibytes_gets_a_413(webhook: Harness) -> None:
    status, answer = await webhook.post(b" " * (7 * 1024 * 1024 + 1))
    assert status == 413 and "exceeds" in answer["message"]


async def test_a_streamed_body_over_the_limit_gets_a_413_too(webhook: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * (1024 * 1024)

    async with webhook.session.post(webhook.running.url + "/mutate-pods", data=chunks()) as resp:
        assert resp.status == 413


async def test_a_redis_outage_is_a_denial_that_says_so_not_a_500(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    cert, key = make_certificate(tmp_path / "tls")
    redis = RedisSettings(url=own_redis.url, prefix="down:", socket_timeout_s=1.0)
    settings = server_settings(tmp_path, redis, cert, key)
    connector = aiohttp.TCPConnector(ssl=client_context(cert))
    async with running_webhook(settings) as running, aiohttp.ClientSession(
        connector=connector
    ) as session:
        own_redis.stop()
        body = review(pod())
        async with session.post(running.url + "/mutate-pods", json=body) as response:
            assert response.status == 200
            answer = await response.json()
        async with session.get(running.url + "/readyz") as ready:
            assert ready.status == 503
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 403
    assert "could not reach its address store" in answer["response"]["status"]["message"]


# ---------------------------------------------------------- subnets and pools


def subnet(name: str, cidr: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"cidrBlock": cidr, **spec}}


def ippool(name: str, subnet_name: str, ips: list[str]) -> dict[str, Any]:
    return {"apiVersion": "kubeovn.io/v1", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"subnet": subnet_name, "ips": ips}}


async def validate(
    webhook: Harness, path: str, obj: Mapping[str, Any] | None, kind: str, **options: Any
) -> dict[str, Any]:
    resource = "subnets" if kind == "Subnet" else "ippools"
    body = review(obj, kind=kind, group="kubeovn.io", resource=resource, **options)
    response: dict[str, Any] = (await webhook.send(body, path))["response"]
    return response


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (subnet("s", "10.50.0.0/33"), "spec.cidrBlock 10.50.0.0/33: is not a valid CIDR"),
        (subnet("s", "10.16.128.0/24"), "overlaps subnet ovn-default"),
        (subnet("s", "10.50.0.0/24", gateway="10.51.0.1"), "spec.gateway 10.51.0.1: is outside"),
        (subnet("s", "10.50.0.0/24", excludeIps=["10.50.0.9..10.50.0.2"]),
         "spec.excludeIps[0] 10.50.0.9..10.50.0.2"),
        (subnet("s", "10.50.0.0/24", vlan="vlan10"), "spec.vlan"),
    ],
)
async def test_a_bad_subnet_is_refused_naming_the_field(
    webhook: Harness, obj: dict[str, Any], message: str
) -> None:
    response = await validate(webhook, "/validate-subnets", obj, "Subnet")
    assert not response["allowed"]
    assert message in response["status"]["message"]


@pytest.mark.parametrize(("cidr", "reason"), [
    ("0.0.0.0/0", "spec.cidrBlock 0.0.0.0/0: is wider than /8, the widest pod subnet"),
    ("::/0", "spec.cidrBlock ::/0: is wider than /32, the widest pod subnet"),
    ("fc00::/8", "spec.cidrBlock fc00::/8: is wider than /32, the widest pod subnet"),
    ("127.1.0.0/16", "spec.cidrBlock 127.1.0.0/16: overlaps 127.0.0.0/8, which is loopback"),
    ("169.254.0.0/24", "overlaps 169.254.0.0/16, which is link-local"),
    ("fe80::/64", "overlaps fe80::/10, which is link-local"),
    ("100.64.8.0/24", "spec.cidrBlock 100.64.8.0/24: subnet s overlaps the join subnet "
                      "(100.64.0.0/16)"),
    ("10.96.4.0/24", "spec.cidrBlock 10.96.4.0/24: subnet s overlaps the Service CIDR "
                     "(10.96.0.0/12)"),
])
async def test_a_subnet_that_would_take_the_nodes_own_routes_is_refused(
    webhook: Harness, cidr: str, reason: str
) -> None:
    response = await validate(webhook, "/validate-subnets", subnet("s", cidr), "Subnet")
    assert not response["allowed"] and response["status"]["code"] == 400
    assert reason in response["status"]["message"]


async def test_an_ippool_change_that_would_strand_a_pods_address_is_refused(
    webhook: Harness,
) -> None:
    await webhook.ipam.ensure_pool(parse_ippool(ippool("grow", "ovn-default", ["10.16.7.0/30"])))
    stored = await webhook.admit(pod(annotations={"ovn.kubernetes.io/ip_pool": "grow"}))
    held = annotations_of(stored)["ovn.kubernetes.io/ip_address"]
    moved = await validate(webhook, "/validate-ippools",
                           ippool("grow", "ovn-default", ["10.16.8.0/30"]), "IPPool",
                           operation="UPDATE")
    assert not moved["allowed"]
    assert moved["status"]["message"] == (
        "spec.ips: IPPool grow would no longer hold the address of 1 address in use (by pod "
        "default/web-0); delete those pods first")
    grown = await validate(webhook, "/validate-ippools",
                           ippool("grow", "ovn-default", ["10.16.7.0/29"]), "IPPool",
                           operation="UPDATE")
    assert grown["allowed"] and held.startswith("10.16.7.")


async def test_a_good_subnet_is_allowed(webhook: Harness) -> None:
    response = await validate(webhook, "/validate-subnets", subnet("s", "10.50.0.0/24"), "Subnet")
    assert response["allowed"]


async def test_deleting_a_subnet_in_use_says_how_many_and_names_holders(
    webhook: Harness,
) -> None:
    await webhook.admit(pod(name="web-0"))
    await webhook.admit(pod(name="web-1"))
    old = subnet("ovn-default", "10.16.0.0/16")
    response = await validate(
        webhook, "/validate-subnets", None, "Subnet", operation="DELETE", old=old
    )
    assert not response["allowed"]
    assert response["status"]["message"] == (
        "subnet ovn-default has 2 addresses in use (by pod default/web-0, pod default/web-1); "
        "delete those pods first"
    )


async def test_changing_the_cidr_of_a_subnet_in_use_is_refused(webhook: Harness) -> None:
    await webhook.admit(pod(name="web-0"))
    response = await validate(
        webhook, "/validate-subnets", subnet("ovn-default", "10.17.0.0/16"), "Subnet",
        operation="UPDATE", old=subnet("ovn-default", "10.16.0.0/16"),
    )
    assert not response["allowed"]
    assert response["status"]["message"].startswith(
        "spec.cidrBlock 10.17.0.0/16: cannot change subnet ovn-default from 10.16.0.0/16 "
        "while it has 1 address in use (by pod default/web-0)"
    )


async def test_an_ippool_with_addresses_outside_its_subnet_is_refused(webhook: Harness) -> None:
    response = await validate(
        webhook, "/validate-ippools", ippool("p", "zone-a", ["10.99.0.1"]), "IPPool"
    )
    assert not response["allowed"]
    assert "10.99.0.1: is outside subnet zone-a" in response["status"]["message"]
    missing = await validate(
        webhook, "/validate-ippools", ippool("p", "nowhere", ["10.99.0.1"]), "IPPool"
    )
    assert missing["status"]["message"] == "spec.subnet nowhere: subnet nowhere does not exist"


async def test_deleting_an_ippool_in_use_is_refused(webhook: Harness) -> None:
    await webhook.admit(pod(name="db-0", owner=("StatefulSet", "db"),
                            annotations={"ovn.kubernetes.io/ip_pool": "db-pool"}))
    response = await validate(
        webhook, "/validate-ippools", None, "IPPool", operation="DELETE",
        old=ippool("db-pool", "zone-a", ["10.20.0.10", "10.20.0.11"]),
    )
    assert not response["allowed"]
    assert response["status"]["message"].startswith("IPPool db-pool has 1 address in use")


# ------------------------------------------------- what podnet does not honour


async def test_a_pod_with_an_annotation_podnet_does_not_honour_is_denied_naming_it(
    webhook: Harness,
) -> None:
    status = await webhook.denial(pod(annotations={
        "ovn.kubernetes.io/routes": '[{"dst": "192.168.0.101/24", "gw": "10.16.0.254"}]',
    }))
    assert status["code"] == 400
    assert status["message"] == (
        "annotation ovn.kubernetes.io/routes is not supported by podnet (custom routes)"
    )
    assert await webhook.held() == 0


async def test_a_pod_with_a_multi_nic_provider_annotation_is_denied_naming_it(
    webhook: Harness,
) -> None:
    status = await webhook.denial(pod(annotations={
        "macvlan.default.kubernetes.io/ip_address": "172.17.0.100",
    }))
    assert status["message"].startswith(
        "annotation macvlan.default.kubernetes.io/ip_address is not supported by podnet "
        "(multi-NIC provider macvlan.default"
    )


def deployment(annotations: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}, "annotations": dict(annotations)},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
        }},
    }


async def test_a_deployment_whose_template_podnet_cannot_honour_is_refused_at_apply(
    webhook: Harness,
) -> None:
    body = review(deployment({"ovn.kubernetes.io/ip_family": "ipv4"}),
                  kind="Deployment", group="apps", resource="deployments")
    answer = await webhook.send(body, "/validate-workloads")
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["message"] == (
        "Deployment default/web: spec.template.metadata.annotations: annotation "
        "ovn.kubernetes.io/ip_family is not supported by podnet (per-pod IP family)"
    )


async def test_a_deployment_podnet_can_honour_is_allowed(webhook: Harness) -> None:
    body = review(deployment({"ovn.kubernetes.io/ip_pool": "10.16.0.20,10.16.0.21"}),
                  kind="Deployment", group="apps", resource="deployments")
    answer = await webhook.send(body, "/validate-workloads")
    assert answer["response"]["allowed"] is True


def ic_config(data: Mapping[str, str], name: str = "ovn-ic-config",
              namespace: str = "kube-system") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace}, "data": dict(data)}


IC_DATA = {"enable-ic": "true", "az-name": "az1", "ic-db-host": "192.168.65.3",
           "ic-nb-port": "6645", "ic-sb-port": "6646", "gw-nodes": "az1-gw",
           "auto-route": "true"}


async def test_an_ovn_ic_config_with_a_bad_value_is_refused_at_apply_naming_it(
    webhook: Harness,
) -> None:
    body = review(ic_config({**IC_DATA, "gw-nodes": "az1-gw,Bad_Node"}), kind="ConfigMap",
                  resource="configmaps")
    answer = await webhook.send(body, "/validate-ic-config")
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["message"] == (
        "ConfigMap kube-system/ovn-ic-config data.gw-nodes 'az1-gw,Bad_Node': 'Bad_Node' is "
        "not a node name (DNS-1123 subdomain: lower-case letters, digits, '-' and '.')")


async def test_a_valid_ovn_ic_config_and_every_other_config_map_are_allowed(
    webhook: Harness,
) -> None:
    for obj in (ic_config(IC_DATA), ic_config({"az-name": "AZ!"}, name="other"),
                ic_config({"az-name": "AZ!"}, namespace="default")):
        body = review(obj, kind="ConfigMap", resource="configmaps", operation="UPDATE",
                      old=obj)
        answer = await webhook.send(body, "/validate-ic-config")
        assert answer["response"]["allowed"] is True


ISOLATION = [
    subnet("vault", "10.62.0.0/24", private=True, namespaces=["secure"]),
    {"apiVersion": "v1", "kind": "Namespace",
     "metadata": {"name": "given", "annotations": {"ovn.kubernetes.io/logical_switch": "vault"}}},
    {**ippool("team-pool", "ovn-default", ["10.16.5.0/30"]),
     "spec": {"subnet": "ovn-default", "ips": ["10.16.5.0/30"], "namespaces": ["team"]}},
]


async def with_isolation(webhook: Harness) -> None:
    folder = webhook.running.state.settings.manifests
    assert folder is not None
    (folder / "isolation.yaml").write_text("\n---\n".join(json.dumps(o) for o in ISOLATION))
    for _ in range(50):
        if "team-pool" in {p.name for p in await webhook.ipam.pools()}:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.4)  # the namespace view and the catalog cache follow


async def test_a_pods_annotation_cannot_join_a_private_subnet_from_another_namespace(
    webhook: Harness,
) -> None:
    await with_isolation(webhook)
    status = await webhook.denial(pod(annotations={"ovn.kubernetes.io/logical_switch": "vault"}))
    assert status["code"] == 403
    assert status["message"] == ("ovn.kubernetes.io/logical_switch vault: subnet vault is "
                                 "private and namespace default is not one of its "
                                 "spec.namespaces")
    assert await webhook.held("vault") == 0
    for namespace in ("secure", "given"):  # bound by the subnet, or by the Namespace
        stored = await webhook.admit(pod(namespace=namespace, annotations={
            "ovn.kubernetes.io/logical_switch": "vault"}))
        assert annotations_of(stored)["ovn.kubernetes.io/ip_address"].startswith("10.62.0.")


@pytest.mark.parametrize(("key", "value"), [
    ("ovn.kubernetes.io/ip_address", "10.16.5.2"),
    ("ovn.kubernetes.io/ip_pool", "10.16.5.1,10.16.5.2"),
    ("ovn.kubernetes.io/ip_pool", "10.16.4.250,10.16.5.3"),
])
async def test_addresses_of_an_ippool_bound_to_other_namespaces_cannot_be_taken_by_annotation(
    webhook: Harness, key: str, value: str
) -> None:
    await with_isolation(webhook)
    status = await webhook.denial(pod(annotations={key: value}))
    assert status["code"] == 403
    assert status["message"] == (f"{key} {value}: takes addresses of IPPool team-pool, which "
                                 "is bound to namespace team")
    assert await webhook.held() == 0
    stored = await webhook.admit(pod(namespace="team", annotations={key: value}))
    assert annotations_of(stored)["ovn.kubernetes.io/ip_address"].startswith("10.16.")


# ------------------------------------------------------- scheduler extender


def node(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": name, "labels": dict(labels)}, "status": {}}


async def test_the_scheduler_filter_keeps_ready_nodes_of_the_pods_subnet(
    webhook: Harness,
) -> None:
    ready = {"podnet.io/agent-ready": "true"}
    args = {"Pod": pod(annotations={"ovn.kubernetes.io/logical_switch": "zone-a"}),
            "Nodes": {"items": [node("a-1", {**ready, "podnet.io/zone": "a"}),
                                node("b-1", {**ready, "podnet.io/zone": "b"}),
                                node("a-2", {"podnet.io/zone": "a"})]}}
    status, result = await webhook.post(json.dumps(args).encode(), "/scheduler/filter")
    assert status == 200
    assert result["NodeNames"] == ["a-1"]
    assert [n["metadata"]["name"] for n in result["Nodes"]["items"]] == ["a-1"]
    assert set(result["FailedNodes"]) == {"b-1", "a-2"}
    assert result["Error"] == ""


async def test_the_scheduler_prioritize_scores_every_node(webhook: Harness) -> None:
    args = {"Pod": pod(), "NodeNames": ["node-1", "node-2"]}
    status, result = await webhook.post(json.dumps(args).encode(), "/scheduler/prioritize")
    assert status == 200
    assert result == [{"Host": "node-1", "Score": 5}, {"Host": "node-2", "Score": 5}]


@pytest.mark.parametrize("path", ["/scheduler/filter", "/scheduler/prioritize"])
async def test_malformed_extender_args_get_a_400_with_a_json_message(
    webhook: Harness, path: str
) -> None:
    status, answer = await webhook.post(b'{"Nodes": {"items": []}}', path)
    assert status == 400
    assert answer == {"message": "not ExtenderArgs: Pod is missing"}


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("path", ["/scheduler/filter", "/scheduler/prioritize"])
async def test_extender_args_nested_beyond_the_json_limit_get_a_400(
    webhook: Harness, path: str
) -> None:
    body = b'{"Pod": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001
    status, answer = await webhook.post(body, path)
    assert status == 400 and answer["message"].startswith("not ExtenderArgs: body is not JSON")


@pytest.mark.parametrize(("affinity", "field", "kind"), [
    ("zone", "spec.affinity", "a string"),
    ({"nodeAffinity": []}, "spec.affinity.nodeAffinity", "a list"),
    ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": 5}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution", "a number"),
    ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": "abc"}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
     ".nodeSelectorTerms", "a string"),
    ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": {}}]}}},
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
     ".nodeSelectorTerms[0].matchExpressions", "an object"),
])
async def test_a_malformed_affinity_is_denied_naming_the_field_before_anything_is_reserved(
    webhook: Harness, affinity: Any, field: str, kind: str
) -> None:
    obj = pod(namespace="edge", spec={"affinity": affinity})  # zone-a merges a node selector
    status = await webhook.denial(obj)
    assert status["code"] == 400
    assert status["message"].endswith(f"{field}: must be an object, not {kind}") or \
        status["message"].endswith(f"{field}: must be a list, not {kind}")
    assert await webhook.held("zone-a") == 0


@pytest.mark.parametrize(("labels", "annotations", "message"), [
    ({"app/x/y": "web"}, {}, "metadata.labels 'app/x/y': has a prefix that is not a DNS "
                             "subdomain"),
    ({"app": "-web"}, {}, "metadata.labels app='-web': is not a label value"),
    ({"a" * 64: "web"}, {}, "is not a qualified name"),
    ({}, {"bad key": "x"}, "metadata.annotations 'bad key': is not a qualified name"),
    ({}, {"big": "x" * (256 * 1024)}, "metadata.annotations: 262147 bytes in all, over the "
                                      "API server's limit of 262144"),
])
async def test_labels_and_annotations_the_api_server_would_refuse_are_denied_first(
    webhook: Harness, labels: dict[str, str], annotations: dict[str, str], message: str
) -> None:
    status = await webhook.denial(pod(labels=labels, annotations=annotations))
    assert status["code"] == 400 and message in status["message"]
    assert await webhook.held() == 0


async def test_a_deep_pod_affinity_next_to_the_merged_node_affinity_is_kept_as_it_is(
    webhook: Harness,
) -> None:
    deep = {"podAffinity": nested(300)}
    stored = await webhook.admit(pod(namespace="edge", spec={"affinity": deep}))
    assert stored["spec"]["affinity"]["podAffinity"] == nested(300)
    terms = stored["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [
        {"key": "podnet.io/zone", "operator": "In", "values": ["a"]}]}]


async def test_a_failure_inside_podnet_is_a_500_denial_that_keeps_no_reservation(
    webhook: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("webhook.admit._mutation", broken)
    status = await webhook.denial(pod(name="web-9"))
    assert status["code"] == 500 and "podnet failed on this request" in status["message"]
    assert await webhook.held() == 0
    async with webhook.session.get(webhook.running.url + "/metrics") as metrics:
        text = await metrics.text()
    assert 'podnet_webhook_admissions_total{endpoint="mutate-pods",outcome="error"} 1.0' in text


# -------------------------------------------------------------- the process


async def test_health_readiness_and_metrics_are_served(webhook: Harness) -> None:
    await webhook.admit(pod())
    url = webhook.running.url
    async with webhook.session.get(url + "/healthz") as health:
        assert health.status == 200
    async with webhook.session.get(url + "/readyz") as ready:
        assert ready.status == 200
    async with webhook.session.get(url + "/metrics") as metrics:
        text = await metrics.text()
    assert 'podnet_webhook_admissions_total{endpoint="mutate-pods",outcome="mutated"} 1.0' in text
    assert "podnet_webhook_admission_seconds_bucket" in text
    assert lint(text) == []  # what promtool check metrics would say
    assert "podnet_ipam_operations_total" in text


async def test_with_a_client_ca_only_the_api_servers_certificate_reaches_admission(
    tmp_path: Path, redis_settings: RedisSettings
) -> None:
    cert, key = make_certificate(tmp_path / "tls")
    client_cert, client_key = make_certificate(tmp_path / "apiserver", "apiserver")
    settings = replace(server_settings(tmp_path, redis_settings, cert, key),
                       client_ca=client_cert)
    with_certificate = client_context(cert)
    with_certificate.load_cert_chain(client_cert, client_key)
    body = json.dumps(review(pod())).encode()
    async with running_webhook(settings) as running:
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_context(cert))) as anonymous:
            async with anonymous.post(running.url + "/mutate-pods", data=body) as refused:
                assert refused.status == 403
                assert (await refused.json())["message"].startswith(
                    "a client certificate is required")
            async with anonymous.get(running.url + "/healthz") as probe:
                assert probe.status == 200  # kubelet's probes carry no certificate
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=with_certificate)) as apiserver, \
                apiserver.post(running.url + "/mutate-pods", data=body,
                               headers={"Content-Type": "application/json"}) as answer:
            assert answer.status == 200
            assert (await answer.json())["response"]["allowed"] is True


async def test_manifest_changes_are_registered_without_a_restart(webhook: Harness) -> None:
    folder = webhook.running.state.settings.manifests
    assert folder is not None
    (folder / "more.yaml").write_text(json.dumps(subnet("late", "10.60.0.0/24")))
    for _ in range(50):
        if "late" in await webhook.ipam.subnet_names():
            break
        await asyncio.sleep(0.1)
    stored = await webhook.admit(pod(annotations={"ovn.kubernetes.io/logical_switch": "late"}))
    assert annotations_of(stored)["ovn.kubernetes.io/ip_address"].startswith("10.60.0.")


async def test_a_file_that_is_not_utf8_is_reported_and_the_rescan_goes_on(
    webhook: Harness,
) -> None:
    folder = webhook.running.state.settings.manifests
    assert folder is not None
    (folder / "latin1.yaml").write_bytes(b"kind: Subnet\nmetadata: {name: caf\xe9}\n")
    await asyncio.sleep(0.5)
    (folder / "zz-later.yaml").write_text(json.dumps(subnet("later", "10.61.0.0/24")))
    for _ in range(50):
        if "later" in await webhook.ipam.subnet_names():
            break
        await asyncio.sleep(0.1)
    assert "later" in await webhook.ipam.subnet_names()
    async with webhook.session.get(webhook.running.url + "/readyz") as ready:
        body = await ready.json()
    assert body["manifestProblems"] == [
        f"{folder / 'latin1.yaml'}: cannot be read: line 2: is not UTF-8 text (byte 0xe9)"]


async def test_a_rotated_certificate_is_served_without_a_restart(
    webhook: Harness, tmp_path: Path
) -> None:
    new_cert, new_key = make_certificate(tmp_path / "rotated", "rotated")
    webhook.key.write_bytes(new_key.read_bytes())
    webhook.cert.write_bytes(new_cert.read_bytes())
    connector = aiohttp.TCPConnector(ssl=client_context(new_cert))
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(50):
            try:
                async with session.get(webhook.running.url + "/healthz") as response:
                    assert response.status == 200
                    return
            except aiohttp.ClientConnectorCertificateError:
                await asyncio.sleep(0.1)
    pytest.fail("the rotated certificate was never served")


async def test_the_server_refuses_anything_older_than_tls_1_2(webhook: Harness) -> None:
    assert webhook.running.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert webhook.running.url.startswith("https://")


async def test_a_pod_update_that_rewrites_its_address_is_refused_naming_the_key(
    webhook: Harness,
) -> None:
    admitted = await webhook.admit(pod(name="web-9"))
    edited = copy.deepcopy(admitted)
    edited["metadata"]["annotations"]["ovn.kubernetes.io/ip_address"] = "10.16.0.200"
    answer = await webhook.send(review(edited, operation="UPDATE", old=admitted),
                                "/validate-pods")
    assert not answer["response"]["allowed"]
    message = answer["response"]["status"]["message"]
    assert "ovn.kubernetes.io/ip_address" in message and "10.16.0.200" in message


async def test_a_pod_update_of_other_annotations_and_podnets_own_edits_are_allowed(
    webhook: Harness,
) -> None:
    admitted = await webhook.admit(pod(name="web-10"))
    labelled = copy.deepcopy(admitted)
    labelled["metadata"]["annotations"]["example.com/note"] = "hello"
    labelled["metadata"]["annotations"]["ovn.kubernetes.io/routed"] = "true"
    answer = await webhook.send(review(labelled, operation="UPDATE", old=admitted),
                                "/validate-pods")
    assert answer["response"]["allowed"]
    moved = copy.deepcopy(admitted)
    moved["metadata"]["annotations"]["ovn.kubernetes.io/logical_switch"] = "elsewhere"
    by_podnet = review(moved, operation="UPDATE", old=admitted)
    by_podnet["request"]["userInfo"] = {
        "username": "system:serviceaccount:podnet-system:podnet-sync"}
    assert (await webhook.send(by_podnet, "/validate-pods"))["response"]["allowed"]


async def test_a_dry_run_into_a_full_subnet_is_denied_as_the_real_request_is(
    webhook: Harness,
) -> None:
    await webhook.ipam.ensure_subnet(build_subnet("tiny", "10.99.0.0/30"))
    webhook.running.state.context.catalog.invalidate()
    into_tiny = {"ovn.kubernetes.io/logical_switch": "tiny"}
    await webhook.admit(pod(name="web-20", annotations=into_tiny))
    real = await webhook.denial(pod(name="web-21", annotations=into_tiny))
    dry = await webhook.denial(pod(name="web-21", annotations=into_tiny), dry_run=True)
    assert dry["message"] == real["message"]
    assert "subnet tiny is exhausted" in dry["message"]


@pytest.mark.parametrize(("annotations", "name", "field"), [
    ({}, "Not_A_Valid_Name", "metadata.name"),
    ({"ovn.kubernetes.io/ingress_rate": "1e308"}, "web-30", "ovn.kubernetes.io/ingress_rate"),
    ({"ovn.kubernetes.io/egress_rate": "-5"}, "web-31", "ovn.kubernetes.io/egress_rate"),
    ({"ovn.kubernetes.io/ingress_rate": "abc"}, "web-32", "ovn.kubernetes.io/ingress_rate"),
])
async def test_what_the_api_server_or_the_agent_would_refuse_is_denied_before_reserving(
    webhook: Harness, annotations: dict[str, str], name: str, field: str
) -> None:
    status = await webhook.denial(pod(name=name, annotations=annotations))
    assert status["code"] == 400 and status["message"].startswith(field)
    assert await webhook.held() == 0
