"""Admission through podnet's real webhook over HTTPS, as the lab's API server calls it.

The webhook is the real HTTPS server (``running_webhook``) on a real Redis, with a
certificate from the lab's own CA; the API server calls it because the webhook
configurations ``podnet up`` registers say so; clients are the official client. What a
user sees is what ``kubectl`` would print: the API server's Status message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ipam.settings import RedisSettings
from ipam.store import Ipam
from podnet.daemons import free_port
from podnet.lab.admission import WebhookAdmission, denial, review_request, rule_matches
from podnet.lab.apiserver import ApiServer, Attributes
from podnet.lab.certs import Certificates
from podnet.lab.controllers import ControllerManager, ControllerSettings
from podnet.lab.up import webhook_configurations
from podnet_plumbing import kube
from podnet_sync.worker import SyncSettings, SyncWorker
from webhook.server import running_webhook
from webhook.settings import ServerSettings

NETWORK = """\
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: apps}
spec: {cidrBlock: 10.30.0.0/24, namespaces: [shop]}
"""
FAST = kube.WatchSettings(backoff=kube.BackoffSettings(initial_s=0.05, max_s=0.2),
                          stop_timeout_s=2.0)


def core(api: client.ApiClient) -> Any:
    """The official client's core API, called with plain dicts as bodies (as JSON)."""
    return client.CoreV1Api(api)


def pod(name: str, namespace: str = "default", **annotations: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}


@dataclass
class Cluster:
    api: ApiServer
    kube: client.ApiClient
    ipam: Ipam

    async def create_pod(self, body: dict[str, Any], namespace: str = "default",
                         **options: Any) -> dict[str, Any]:
        created = await asyncio.to_thread(core(self.kube).create_namespaced_pod, namespace,
                                          body, **options)
        result: dict[str, Any] = cast(Any, self.kube).sanitize_for_serialization(created)
        return result

    async def refusal(self, call: Callable[[], Any]) -> tuple[int, str]:
        with pytest.raises(ApiException) as refused:
            await asyncio.to_thread(call)
        return int(refused.value.status), str(json.loads(str(refused.value.body))["message"])

    async def until(self, check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (result := check()):
            if time.monotonic() > deadline:
                pytest.fail("not reached in time")
            await asyncio.sleep(0.05)
        return result


@pytest.fixture
async def cluster(tmp_path: Path, redis_settings: RedisSettings,
                  ipam: Ipam) -> AsyncIterator[Cluster]:
    certificates = Certificates(tmp_path / "tls").ensure()
    folder = tmp_path / "webhook-config"
    folder.mkdir()
    (folder / "network.yaml").write_text(NETWORK)
    settings = ServerSettings(tls_cert=certificates.cert, tls_key=certificates.key,
                              host="127.0.0.1", port=0, redis=redis_settings,
                              manifests=folder, rescan_s=0.2)
    async with running_webhook(settings) as webhook:
        bundle = base64.b64encode(certificates.ca.read_bytes()).decode()
        with ApiServer(admission=WebhookAdmission, defaults=True) as api, \
                api.client("kubernetes-admin") as kube_api:
            for configuration in webhook_configurations(webhook.url, bundle):
                api.create(configuration)
            yield Cluster(api, kube_api, ipam)


async def test_a_created_pod_is_stored_with_the_address_the_webhook_gave_it(
    cluster: Cluster,
) -> None:
    stored = await cluster.create_pod(pod("web-0", "shop"), "shop")
    annotations = stored["metadata"]["annotations"]
    assert annotations["ovn.kubernetes.io/logical_switch"] == "apps"
    assert annotations["ovn.kubernetes.io/ip_address"].startswith("10.30.0.")
    allocation = await cluster.ipam.lookup_token(annotations["podnet.io/reservation"])
    assert allocation is not None
    assert (allocation.namespace, allocation.name, allocation.state) == (
        "shop", "web-0", "reserved")


async def test_a_pod_with_generate_name_is_admitted_before_it_has_a_name(
    cluster: Cluster,
) -> None:
    body = pod("", "default")
    body["metadata"] = {"generateName": "web-7d4b9c8f5d-", "namespace": "default"}
    stored = await cluster.create_pod(body)
    assert stored["metadata"]["name"].startswith("web-7d4b9c8f5d-")
    assert stored["metadata"]["annotations"]["ovn.kubernetes.io/ip_address"].startswith(
        "10.16.")


async def test_a_conflicting_static_ip_is_refused_with_the_holder_named(
    cluster: Cluster,
) -> None:
    await cluster.create_pod(pod("a", **{"ovn.kubernetes.io/ip_address": "10.16.0.50"}))
    status, message = await cluster.refusal(lambda: core(cluster.kube).create_namespaced_pod(
        "default", pod("b", **{"ovn.kubernetes.io/ip_address": "10.16.0.50"})))
    assert status == 403
    assert message == ('admission webhook "pods.podnet.io" denied the request: '
                       "ovn.kubernetes.io/ip_address 10.16.0.50 is already used by pod "
                       "default/a")
    assert [p["metadata"]["name"] for p in cluster.api.objects("Pod")] == ["a"]


async def test_a_deployment_with_an_ip_pool_gets_one_pool_address_per_replica_and_reports(
    cluster: Cluster,
) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}, "annotations": {
                "ovn.kubernetes.io/ip_pool": "10.16.0.60,10.16.0.61"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
    }
    cluster.api.create(deployment)
    settings = ControllerSettings(resync_s=1.0, retry_initial_s=0.2, retry_max_s=1.0)
    manager = ControllerManager(cluster.kube, settings=settings, watch=FAST)
    task = asyncio.create_task(manager.run())
    try:
        (replicaset,) = await cluster.until(lambda: [
            rs for rs in cluster.api.objects("ReplicaSet", "default")
            if any(c["type"] == "ReplicaFailure" for c in rs.get("status", {}).get(
                "conditions") or [])])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    addresses = sorted(p["metadata"]["annotations"]["ovn.kubernetes.io/ip_address"]
                       for p in cluster.api.objects("Pod", "default"))
    assert addresses == ["10.16.0.60", "10.16.0.61"]
    (condition,) = replicaset["status"]["conditions"]
    assert condition["reason"] == "FailedCreate"
    assert condition["message"] == (
        'Error creating: admission webhook "pods.podnet.io" denied the request: ip_pool of '
        "Deployment default/web is exhausted: 2 of 2 addresses in use")


async def test_workload_pods_refused_while_their_subnet_is_fenced_are_made_once_it_is_not(
    cluster: Cluster,
) -> None:
    await cluster.ipam.set_fenced("apps", True)  # as after a Redis restart, before a resync
    cluster.api.create({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
    })
    settings = ControllerSettings(resync_s=1.0, retry_initial_s=0.1, retry_max_s=0.5)
    manager = ControllerManager(cluster.kube, settings=settings, watch=FAST)
    task = asyncio.create_task(manager.run())

    def failure() -> str:
        return next((c["message"] for rs in cluster.api.objects("ReplicaSet", "shop")
                     for c in rs.get("status", {}).get("conditions") or []
                     if c["type"] == "ReplicaFailure"), "")

    try:
        refused = await cluster.until(failure)
        assert cluster.api.objects("Pod", "shop") == []
        await cluster.ipam.set_fenced("apps", False)  # the sync worker's resync
        pods = await cluster.until(lambda: len(cluster.api.objects("Pod", "shop")) == 2
                                   and cluster.api.objects("Pod", "shop"))
        await cluster.until(lambda: not failure())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert refused == ('Error creating: admission webhook "pods.podnet.io" denied the request: '
                       "subnet apps is fenced: allocation resumes once a reconcile from the "
                       "live pods has rebuilt the address index")
    assert all(p["metadata"]["annotations"]["ovn.kubernetes.io/ip_address"].startswith(
        "10.30.0.") for p in pods)


async def test_an_invalid_subnet_is_refused_by_the_validating_webhook(cluster: Cluster) -> None:
    custom = client.CustomObjectsApi(cluster.kube)
    body = {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "broken"},
            "spec": {"cidrBlock": "10.99.0.0/33"}}
    status, message = await cluster.refusal(lambda: custom.create_cluster_custom_object(
        "kubeovn.io", "v1", "subnets", body))
    assert status == 400
    assert message == ('admission webhook "subnets.podnet.io" denied the request: '
                       "spec.cidrBlock 10.99.0.0/33: is not a valid CIDR")


async def test_a_dry_run_pod_is_checked_and_reserves_nothing(cluster: Cluster) -> None:
    before = (await cluster.ipam.usage("ovn-default")).families[0]
    answer = await cluster.create_pod(pod("web"), dry_run="All")
    after = (await cluster.ipam.usage("ovn-default")).families[0]
    assert answer["metadata"]["name"] == "web"
    assert cluster.api.objects("Pod") == []
    assert (after.used, after.reserved) == (before.used, before.reserved)


async def test_pods_of_excluded_namespaces_are_not_sent_to_the_webhook(
    cluster: Cluster,
) -> None:
    cluster.api.create({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "kube-system"}})
    stored = await cluster.create_pod(pod("dns", "kube-system"), "kube-system")
    assert not stored["metadata"]["annotations"]


async def test_an_unreachable_webhook_fails_pods_closed_and_workloads_open(
    tmp_path: Path,
) -> None:
    bundle = base64.b64encode(Certificates(tmp_path).ensure().ca.read_bytes()).decode()
    with ApiServer(admission=WebhookAdmission, defaults=True) as api, api.client() as kube_api:
        for configuration in webhook_configurations(f"https://127.0.0.1:{free_port()}",
                                                    bundle):
            api.create(configuration)
        with pytest.raises(ApiException) as refused:
            await asyncio.to_thread(core(kube_api).create_namespaced_pod, "default", pod("web"))
        apps: Any = client.AppsV1Api(kube_api)
        await asyncio.to_thread(apps.create_namespaced_deployment, "default", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    assert refused.value.status == 500
    message = json.loads(str(refused.value.body))["message"]
    assert message.startswith('Internal error occurred: failed calling webhook '
                              '"pods.podnet.io": failed to call webhook: Post https://')
    assert [d["metadata"]["name"] for d in api.objects("Deployment")] == ["web"]


# -------------------------------------------------------------- wire format


def test_the_review_carries_what_kube_apiserver_sends() -> None:
    api = ApiServer()
    resource = api.state.resource("Pod")
    body = pod("", "shop")
    body["metadata"] = {"generateName": "web-", "namespace": "shop"}
    user = {"username": "system:serviceaccount:kube-system:replicaset-controller",
            "groups": ["system:serviceaccounts", "system:authenticated"]}
    review = review_request(Attributes("CREATE", resource, "shop", "", body, None, user))
    request = review["request"]
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["requestKind"] == request["kind"]
    assert request["requestResource"] == request["resource"]
    assert (request["operation"], request["namespace"], request["dryRun"]) == (
        "CREATE", "shop", False)
    assert "name" not in request
    assert request["userInfo"] == user
    assert request["object"] == body and request["oldObject"] is None
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert len(request["uid"]) == 36


def test_rules_match_on_operation_group_version_resource_and_scope() -> None:
    api = ApiServer()
    pods = api.state.resource("Pod")
    attributes = Attributes("CREATE", pods, "default", "web", pod("web"), None, {})
    rule = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["pods"], "scope": "Namespaced"}
    assert rule_matches(rule, attributes)
    assert not rule_matches({**rule, "operations": ["UPDATE"]}, attributes)
    assert not rule_matches({**rule, "scope": "Cluster"}, attributes)
    assert rule_matches({**rule, "resources": ["*"], "apiGroups": ["*"]}, attributes)
    assert not rule_matches({**rule, "apiGroups": ["apps"]}, attributes)


def test_a_denial_without_a_code_or_message_reads_as_kube_apiserver_words_it() -> None:
    error = denial("pods.podnet.io", {})
    assert (error.code, error.message) == (
        400, 'admission webhook "pods.podnet.io" denied the request without explanation')
    assert denial("x", {"code": 200, "message": "no"}).code == 400


# ------------------------------------- refusals after admission, and what they leave


def statefulset_pod(name: str) -> dict[str, Any]:
    body = pod(name, "shop")
    body["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                            "name": "db", "uid": "sts-uid",
                                            "controller": True}]
    return body


async def reservations(ipam: Ipam, subnet: str) -> list[str]:
    return sorted(a.token for a in await ipam.reservations(subnet))


async def test_a_create_of_an_existing_pod_is_admitted_first_then_refused_as_already_existing(
    cluster: Cluster,
) -> None:
    await cluster.create_pod(pod("twice", "shop"), "shop")
    status, message = await cluster.refusal(
        lambda: core(cluster.kube).create_namespaced_pod("shop", pod("twice", "shop")))
    assert (status, message) == (409, 'pods "twice" already exists')
    assert len(await reservations(cluster.ipam, "apps")) == 2  # the webhook had reserved


async def test_a_stale_recreate_of_a_live_statefulset_pod_cannot_take_its_address(
    cluster: Cluster,
) -> None:
    live = await cluster.create_pod(statefulset_pod("db-0"), "shop")
    status, message = await cluster.refusal(
        lambda: core(cluster.kube).create_namespaced_pod("shop", statefulset_pod("db-0")))
    assert status == 403
    assert "StatefulSet ordinal shop/db/0 is still held by pod shop/db-0" in message
    token = live["metadata"]["annotations"]["podnet.io/reservation"]
    assert await reservations(cluster.ipam, "apps") == [token]


async def test_names_and_quotas_refused_after_admission_are_refused_as_kube_apiserver_does(
    cluster: Cluster,
) -> None:
    # podnet's webhook refuses the name itself, before reserving; the API server refuses
    # it too where the webhook does not look (kube-system), after admission.
    status, message = await cluster.refusal(lambda: core(cluster.kube).create_namespaced_pod(
        "shop", pod("Not_A_Valid_Name", "shop")))
    assert status == 400 and "metadata.name 'Not_A_Valid_Name' must be a lowercase" in message
    assert await reservations(cluster.ipam, "apps") == []
    status, message = await cluster.refusal(lambda: core(cluster.kube).create_namespaced_pod(
        "kube-system", pod("Not_A_Valid_Name", "kube-system")))
    assert status == 422 and "metadata.name: Invalid value: 'Not_A_Valid_Name'" in message
    cluster.api.create({"apiVersion": "v1", "kind": "ResourceQuota",
                        "metadata": {"name": "two-pods", "namespace": "shop"},
                        "spec": {"hard": {"pods": "1"}}})
    await cluster.create_pod(pod("first", "shop"), "shop")
    status, message = await cluster.refusal(
        lambda: core(cluster.kube).create_namespaced_pod("shop", pod("second", "shop")))
    assert status == 403 and "exceeded quota: two-pods" in message
    # Each refusal came after podnet's webhook had reserved: the orphan sweep of the
    # sync worker gives the capacity back once a fresh list shows no pod with the token.
    assert len(await reservations(cluster.ipam, "apps")) == 2
    list_pods = kube.lister(cluster.kube, "Pod")

    async def pods_now() -> list[dict[str, Any]]:
        return await kube.list_now(list_pods, "Pod")

    worker = SyncWorker(cluster.ipam, cast(Any, None), {},  # the sweep needs no OVN
                        SyncSettings(orphan_margin_s=0.2), list_pods=pods_now)
    await asyncio.sleep(0.3)
    assert await worker.sweep_orphans() == 1
    (first,) = cluster.api.objects("Pod", "shop")
    assert await reservations(cluster.ipam, "apps") == [
        first["metadata"]["annotations"]["podnet.io/reservation"]]


async def test_validating_webhooks_see_the_generated_name_and_uid(cluster: Cluster) -> None:
    seen: list[Attributes] = []
    admission = cluster.api.handler.admission
    assert admission is not None
    original = admission.validate

    async def recording(attributes: Attributes) -> None:
        seen.append(attributes)
        await original(attributes)

    admission.validate = recording  # type: ignore[method-assign]
    body = pod("", "default")
    body["metadata"] = {"generateName": "web-", "namespace": "default"}
    stored = await cluster.create_pod(body)
    (validated,) = [a for a in seen if a.operation == "CREATE"]
    assert validated.name == stored["metadata"]["name"]
    assert validated.obj is not None
    assert validated.obj["metadata"]["uid"] == stored["metadata"]["uid"]


def ic_config(namespace: str = "kube-system", name: str = "ovn-ic-config",
              **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace}, "data": data}


async def test_a_bad_ovn_ic_config_is_refused_at_create_and_other_config_maps_pass(
    cluster: Cluster,
) -> None:
    api = core(cluster.kube)
    status, message = await cluster.refusal(lambda: api.create_namespaced_config_map(
        "kube-system", ic_config(**{"enable-ic": "maybe", "az-name": "az1"})))
    assert status == 400
    assert message == ('admission webhook "ic-config.podnet.io" denied the request: '
                       "ConfigMap kube-system/ovn-ic-config data.enable-ic 'maybe': must be "
                       '"true" or "false"')
    assert cluster.api.objects("ConfigMap") == []

    # the same bad data under another name in kube-system, or in another namespace,
    # passes; so does a good ovn-ic-config, and a bad update of it is refused
    await asyncio.to_thread(api.create_namespaced_config_map, "kube-system",
                            ic_config(name="coredns", **{"enable-ic": "maybe"}))
    await asyncio.to_thread(api.create_namespaced_config_map, "default",
                            ic_config("default", **{"enable-ic": "maybe"}))
    good = {"enable-ic": "true", "az-name": "az1", "ic-db-host": "192.0.2.1",
            "gw-nodes": "node-1", "auto-route": "true"}
    await asyncio.to_thread(api.create_namespaced_config_map, "kube-system",
                            ic_config(**good))
    status, message = await cluster.refusal(lambda: api.patch_namespaced_config_map(
        "ovn-ic-config", "kube-system", {"data": {"az-name": "AZ 1"}}))
    assert status == 400 and "data.az-name 'AZ 1': must be lower-case letters" in message
    stored = {(c["metadata"]["namespace"], c["metadata"]["name"]): c["data"]
              for c in cluster.api.objects("ConfigMap")}
    assert stored == {("kube-system", "coredns"): {"enable-ic": "maybe"},
                      ("default", "ovn-ic-config"): {"enable-ic": "maybe"},
                      ("kube-system", "ovn-ic-config"): good}


async def test_only_config_maps_of_kube_system_are_sent_to_the_ic_config_webhook(
    cluster: Cluster,
) -> None:
    admission = cluster.api.handler.admission
    assert isinstance(admission, WebhookAdmission)
    resource = cluster.api.state.resource("ConfigMap")

    def sent(namespace: str, operation: str = "CREATE") -> list[str]:
        attributes = Attributes(resource=resource, operation=operation, namespace=namespace,
                                name="ovn-ic-config", obj=ic_config(namespace),
                                old=ic_config(namespace), user={}, dry_run=False)
        return [w.name for w in admission.webhooks("ValidatingWebhookConfiguration",
                                                   attributes)]

    cluster.api.create({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "kube-system", "labels": {"team": "infra"}}})
    assert sent("kube-system") == sent("kube-system", "UPDATE") == ["ic-config.podnet.io"]
    assert sent("kube-system", "DELETE") == sent("default") == sent("podnet-system") == []


def test_the_lab_registers_the_ic_config_webhook_as_the_manifests_do() -> None:
    manifests = Path(__file__).resolve().parents[1] / "manifests" / "webhook"
    shipped = yaml.safe_load((manifests / "validating.yaml").read_text())
    (lab,) = [c for c in webhook_configurations("https://127.0.0.1:1", "")
              if c["kind"] == "ValidatingWebhookConfiguration"]

    def entry(configuration: dict[str, Any]) -> dict[str, Any]:
        (found,) = [w for w in configuration["webhooks"] if w["name"] == "ic-config.podnet.io"]
        return {k: v for k, v in found.items() if k != "clientConfig"}

    assert entry(lab) == entry(shipped)
    (hook,) = [w for w in lab["webhooks"] if w["name"] == "ic-config.podnet.io"]
    assert hook["clientConfig"]["url"] == "https://127.0.0.1:1/validate-ic-config"
