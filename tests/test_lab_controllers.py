"""The lab's controllers against the lab's API server, through the official client.

No webhook here (``test_lab_admission.py`` has it): pods are stored as created, so
these tests are about what the controllers make of workloads, placement and Services.
The kubelet is ``RunningWithoutNetwork``, a stand-in that exists only in this file.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from podnet.lab.apiserver import ApiServer
from podnet.lab.controllers import (
    ControllerManager,
    ControllerSettings,
    filter_answer,
    resolve_port,
    template_hash,
    unschedulable_message,
)
from podnet.lab.kubelet import AttachError, Attachment
from podnet.lab.objects import now_timestamp, pod_ready, spec_of, status_of
from podnet.lab.selectors import misfit
from podnet_plumbing import kube
from tests.waiting import cancelled

FAST = kube.WatchSettings(backoff=kube.BackoffSettings(initial_s=0.05, max_s=0.2),
                          stop_timeout_s=2.0)


@dataclass
class RunningWithoutNetwork:
    """Test stand-in for a kubelet: reports pods Running with their admitted address (or
    a made-up one) and touches no network. Only for these unit tests."""

    failing: set[str] = field(default_factory=set)
    failing_detach: set[str] = field(default_factory=set)
    attached: list[str] = field(default_factory=list)
    detached: list[str] = field(default_factory=list)

    def serves(self, node: str) -> bool:
        return True

    async def attach(self, pod: Mapping[str, Any], node: Mapping[str, Any]) -> Attachment:
        name = pod["metadata"]["name"]
        if name in self.failing:
            raise AttachError(f"no network for {name} today")
        self.attached.append(name)
        annotated = (pod["metadata"].get("annotations") or {}).get(
            "ovn.kubernetes.io/ip_address")
        ip = annotated or f"10.0.0.{len(self.attached) + 1}"
        return Attachment(tuple(ip.split(",")), time.time())

    def leftovers(self, live_uids: set[str]) -> list[tuple[dict[str, Any], str]]:
        return []

    async def detach(self, pod: Mapping[str, Any], node: str) -> None:
        name = pod["metadata"]["name"]
        if name in self.failing_detach:
            raise AttachError(f"the agent for {name} is down")
        self.detached.append(name)


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": f"172.30.0.{name[-1]}"}]}}


def template(app: str, **annotations: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "nginx",
                                     "ports": [{"name": "http", "containerPort": 8080}]}]}}


def deployment(name: str, replicas: int, **annotations: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": template(name, **annotations)}}


def statefulset(name: str, replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "serviceName": name,
                     "selector": {"matchLabels": {"app": name}}, "template": template(name)}}


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}], **spec}}


@dataclass
class Lab:
    api: ApiServer
    manager: ControllerManager
    kubelet: RunningWithoutNetwork

    def pods(self) -> list[dict[str, Any]]:
        return self.api.objects("Pod", "default")

    async def until(self, check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail("the controllers did not get there in time")
            await asyncio.sleep(0.05)


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(defaults=True, service_cidr="10.96.0.0/16") as server:
        server.create(node("node-1", zone="a"))
        server.create(node("node-2", zone="b"))
        yield server


async def running(api: ApiServer, kubelet: RunningWithoutNetwork | None) -> AsyncIterator[Lab]:
    settings = ControllerSettings(resync_s=1.0, retry_initial_s=0.1, retry_max_s=0.5)
    with api.client("system:kube-controller-manager") as client:
        manager = ControllerManager(client, kubelet=kubelet, settings=settings, watch=FAST)
        task = asyncio.create_task(manager.run())
        try:
            yield Lab(api, manager, kubelet or RunningWithoutNetwork())
        finally:
            await cancelled(task)


@pytest.fixture
async def lab(api: ApiServer) -> AsyncIterator[Lab]:
    async for started in running(api, RunningWithoutNetwork()):
        yield started


@pytest.fixture
async def lab_without_kubelet(api: ApiServer) -> AsyncIterator[Lab]:
    async for started in running(api, None):
        yield started


# ------------------------------------------------------------------ workloads


async def test_a_deployment_becomes_a_replicaset_named_by_its_template_hash_and_its_pods(
    lab: Lab,
) -> None:
    created = lab.api.create(deployment("web", 3))
    pods = await lab.until(lambda: len(lab.pods()) == 3 and lab.pods())
    (replicaset,) = lab.api.objects("ReplicaSet", "default")
    wanted = template_hash(created["spec"]["template"])
    assert replicaset["metadata"]["name"] == f"web-{wanted}"
    assert replicaset["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    for each in pods:
        assert each["metadata"]["generateName"] == f"web-{wanted}-"
        assert each["metadata"]["name"].startswith(f"web-{wanted}-")
        assert each["metadata"]["labels"] == {"app": "web", "pod-template-hash": wanted}
        owner = each["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == (
            "ReplicaSet", f"web-{wanted}", True)


async def test_pods_spread_over_the_nodes_and_become_running(lab: Lab) -> None:
    lab.api.create(deployment("web", 4))
    pods = await lab.until(lambda: len(lab.pods()) == 4 and all(map(pod_ready, lab.pods()))
                           and lab.pods())
    assert Counter(p["spec"]["nodeName"] for p in pods) == {"node-1": 2, "node-2": 2}
    deployment_status = await lab.until(  # no status at all until the controller's first
        lambda: lab.api.get("Deployment", "web", "default").get("status", {})
        .get("readyReplicas") == 4 and lab.api.get("Deployment", "web", "default")["status"])
    assert deployment_status["replicas"] == 4


async def test_changing_the_template_rolls_to_a_new_replicaset_and_scales_the_old_to_zero(
    lab: Lab,
) -> None:
    lab.api.create(deployment("web", 2))
    await lab.until(lambda: len(lab.pods()) == 2)
    lab.api.patch("Deployment", "web", {"spec": {"template": {"metadata": {
        "annotations": {"rev": "2"}}}}}, "default")
    await lab.until(lambda: len(lab.api.objects("ReplicaSet", "default")) == 2)
    new = template_hash(lab.api.get("Deployment", "web", "default")["spec"]["template"])
    replicas = {rs["metadata"]["name"]: rs["spec"]["replicas"]
                for rs in lab.api.objects("ReplicaSet", "default")}
    await lab.until(lambda: {p["metadata"]["labels"]["pod-template-hash"]
                             for p in lab.pods()} == {new} and len(lab.pods()) == 2)
    assert replicas[f"web-{new}"] == 2
    assert sorted(replicas.values()) == [0, 2]


async def test_a_statefulset_makes_its_pods_in_order_each_once_the_previous_is_ready(
    lab: Lab,
) -> None:
    lab.api.create(statefulset("db", 3))
    await lab.until(lambda: len(lab.pods()) == 3 and all(map(pod_ready, lab.pods())))
    assert lab.kubelet.attached == ["db-0", "db-1", "db-2"]
    db1 = lab.api.get("Pod", "db-1", "default")
    assert db1["spec"]["hostname"] == "db-1" and db1["spec"]["subdomain"] == "db"
    assert db1["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-1"
    assert db1["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"


async def test_without_a_kubelet_an_ordered_statefulset_waits_at_its_first_pod(
    lab_without_kubelet: Lab,
) -> None:
    lab = lab_without_kubelet
    lab.api.create(statefulset("db", 3))
    await lab.until(lambda: [p["spec"].get("nodeName") for p in lab.pods()] in (
        ["node-1"], ["node-2"]))
    await asyncio.sleep(0.5)
    assert [p["metadata"]["name"] for p in lab.pods()] == ["db-0"]
    assert status_of(lab.pods()[0])["phase"] == "Pending"


async def test_scaling_a_statefulset_down_removes_the_highest_ordinal(lab: Lab) -> None:
    lab.api.create(statefulset("db", 3))
    await lab.until(lambda: len(lab.pods()) == 3)
    lab.api.patch("StatefulSet", "db", {"spec": {"replicas": 1}}, "default")
    await lab.until(lambda: [p["metadata"]["name"] for p in lab.pods()] == ["db-0"])
    await lab.until(lambda: sorted(lab.kubelet.detached) == ["db-1", "db-2"])


async def test_a_deleted_statefulset_pod_is_made_again_under_the_same_name(lab: Lab) -> None:
    lab.api.create(statefulset("db", 2))
    await lab.until(lambda: len(lab.pods()) == 2)
    first = lab.api.get("Pod", "db-1", "default")["metadata"]["uid"]
    lab.api.delete("Pod", "db-1", "default")
    again = await lab.until(lambda: next((p for p in lab.pods() if p["metadata"]["name"] ==
                                          "db-1" and p["metadata"]["uid"] != first), None))
    assert again["metadata"]["ownerReferences"][0]["name"] == "db"


async def test_deleting_a_deployment_collects_its_replicaset_and_pods(lab: Lab) -> None:
    lab.api.create(deployment("web", 2))
    await lab.until(lambda: len(lab.pods()) == 2)
    lab.api.delete("Deployment", "web", "default")
    await lab.until(lambda: not lab.pods() and not lab.api.objects("ReplicaSet"))


async def test_a_foreground_deletion_ends_only_once_the_collector_removed_the_dependents(
    lab: Lab,
) -> None:
    lab.api.create(deployment("web", 2))
    await lab.until(lambda: len(lab.pods()) == 2)
    lab.api.state.delete(lab.api.state.resource("Deployment"), "default", "web",
                         propagation="Foreground")
    held = lab.api.get("Deployment", "web", "default")["metadata"]
    assert held["finalizers"] == ["foregroundDeletion"]
    await lab.until(lambda: not lab.api.objects("Deployment"))
    assert not lab.api.objects("ReplicaSet")


async def test_a_scaled_down_replicaset_removes_unscheduled_pods_first(lab: Lab) -> None:
    lab.api.create(deployment("web", 2))
    await lab.until(lambda: sum(1 for p in lab.pods() if spec_of(p).get("nodeName")) == 2)
    for name in ("node-1", "node-2"):
        lab.api.patch("Node", name, {"spec": {"unschedulable": True}})
    await asyncio.sleep(0.3)  # the scheduler's copy of the nodes catches up
    lab.api.patch("Deployment", "web", {"spec": {"replicas": 3}}, "default")
    await lab.until(lambda: len(lab.pods()) == 3)
    placed = {p["metadata"]["name"] for p in lab.pods() if spec_of(p).get("nodeName")}
    lab.api.patch("Deployment", "web", {"spec": {"replicas": 2}}, "default")
    await lab.until(lambda: len(lab.pods()) == 2)
    assert {p["metadata"]["name"] for p in lab.pods()} == placed


# ------------------------------------------------------------------ scheduler


AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "zone", "operator": "In", "values": ["b"]}]}]}}}


async def test_the_scheduler_honours_the_required_node_affinity_admission_injected(
    lab: Lab,
) -> None:
    for index in range(4):
        lab.api.create(pod(f"edge-{index}", affinity=AFFINITY))
    pods = await lab.until(lambda: all(spec_of(p).get("nodeName") for p in lab.pods())
                           and lab.pods())
    assert {p["spec"]["nodeName"] for p in pods} == {"node-2"}


async def test_a_pod_no_node_fits_is_reported_unschedulable_in_kube_schedulers_words(
    lab: Lab,
) -> None:
    lab.api.create(pod("lost", nodeSelector={"zone": "c"}))
    condition = await lab.until(lambda: next(
        (c for c in status_of(lab.api.get("Pod", "lost", "default")).get("conditions") or []
         if c["type"] == "PodScheduled"), None))
    assert condition["status"] == "False" and condition["reason"] == "Unschedulable"
    assert condition["message"] == (
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.")
    (event,) = await lab.until(lambda: lab.api.objects("Event", "default"))
    assert (event["reason"], event["type"], event["involvedObject"]["name"]) == (
        "FailedScheduling", "Warning", "lost")
    assert event["message"] == condition["message"]
    lab.api.patch("Node", "node-1", {"metadata": {"labels": {"zone": "c"}}})
    await lab.until(lambda: spec_of(lab.api.get("Pod", "lost", "default")).get("nodeName")
                    == "node-1")


def test_node_affinity_terms_are_ored_and_their_requirements_anded() -> None:
    a = node("node-1", zone="a", disk="ssd", rank="3")
    term = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                 {"key": "disk", "operator": "NotIn", "values": ["hdd"]}]}
    other = {"matchFields": [{"key": "metadata.name", "operator": "In",
                              "values": ["node-9"]}]}

    def required(*terms: dict[str, Any]) -> dict[str, Any]:
        return {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": list(terms)}}}}}

    assert misfit(required(term), a) is None
    assert misfit(required(other), a) is not None
    assert misfit(required(other, term), a) is None
    assert misfit(required({}), a) is not None  # an empty term matches no node
    assert misfit(required({"matchExpressions": [
        {"key": "gpu", "operator": "DoesNotExist"},
        {"key": "rank", "operator": "Gt", "values": ["2"]},
        {"key": "zone", "operator": "Exists"}]}), a) is None
    assert misfit(required({"matchFields": [
        {"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]}), a) is not None


def test_unschedulable_messages_count_nodes_per_reason() -> None:
    reasons = Counter({"node(s) didn't match Pod's node affinity/selector": 2,
                       "node(s) were unschedulable": 1})
    assert unschedulable_message(3, reasons) == (
        "0/3 nodes are available: 1 node(s) were unschedulable, "
        "2 node(s) didn't match Pod's node affinity/selector.")


def test_an_extender_filter_result_keeps_passing_nodes_and_reasons() -> None:
    nodes = [node("node-1"), node("node-2")]
    answer = {"NodeNames": ["node-1"], "FailedNodes": {"node-2": "podnet agent not ready"}}
    passing, failed = filter_answer(answer, nodes)
    assert [p["metadata"]["name"] for p in passing] == ["node-1"]
    assert failed == {"node-2": "podnet agent not ready"}
    assert filter_answer({"Error": "catalog unavailable"}, nodes)[0] == []


def test_the_template_hash_is_stable_and_in_kubernetes_alphabet() -> None:
    first = template_hash(template("web"))
    assert first == template_hash(template("web"))
    assert first != template_hash(template("web"), collisions=1)
    assert set(first) <= set("bcdfghjklmnpqrstvwxz2456789")


# -------------------------------------------------------------------- kubelet


async def test_a_failed_attach_leaves_the_pod_pending_with_the_reason_and_is_retried(
    lab: Lab,
) -> None:
    lab.kubelet.failing.add("flaky")
    lab.api.create(pod("flaky"))
    condition = await lab.until(lambda: next(
        (c for c in status_of(lab.api.get("Pod", "flaky", "default")).get("conditions") or []
         if c["type"] == "PodReadyToStartContainers"), None))
    assert condition["status"] == "False"
    assert condition["message"] == "no network for flaky today"
    event = (await lab.until(lambda: lab.api.objects("Event", "default")))[0]
    assert (event["reason"], event["source"]["component"]) == ("FailedCreatePodSandBox",
                                                               "kubelet")
    assert event["message"].endswith("no network for flaky today")
    lab.kubelet.failing.clear()
    running_pod = await lab.until(lambda: pod_ready(lab.api.get("Pod", "flaky", "default"))
                                  and lab.api.get("Pod", "flaky", "default"))
    assert running_pod["status"]["hostIP"] == running_pod["spec"]["nodeName"].replace(
        "node-", "172.30.0.")


async def test_a_deleted_pod_is_detached(lab: Lab) -> None:
    lab.api.create(pod("short"))
    await lab.until(lambda: pod_ready(lab.api.get("Pod", "short", "default")))
    lab.api.delete("Pod", "short", "default")
    await lab.until(lambda: lab.kubelet.detached == ["short"])


async def test_a_gracefully_deleted_pod_is_torn_down_then_removed_by_the_kubelet(
    lab: Lab,
) -> None:
    lab.api.create(pod("graceful"))
    await lab.until(lambda: pod_ready(lab.api.get("Pod", "graceful", "default")))
    deleting = lab.api.delete("Pod", "graceful", "default", grace_s=None)
    assert deleting["metadata"]["deletionGracePeriodSeconds"] == 30
    await lab.until(lambda: not lab.pods())
    assert lab.kubelet.detached == ["graceful"]


async def test_a_pod_with_a_prestop_hook_keeps_running_through_its_grace_period(
    lab: Lab,
) -> None:
    hooked = pod("draining", terminationGracePeriodSeconds=2)
    hooked["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 2}}}
    lab.api.create(hooked)
    await lab.until(lambda: pod_ready(lab.api.get("Pod", "draining", "default")))
    lab.api.delete("Pod", "draining", "default", grace_s=None)
    await asyncio.sleep(1.0)
    assert [p["metadata"]["name"] for p in lab.pods()] == ["draining"]
    assert lab.kubelet.detached == []
    await lab.until(lambda: not lab.pods(), timeout_s=10)
    assert lab.kubelet.detached == ["draining"]


async def test_a_failed_cni_del_is_retried_until_the_sandbox_is_gone(lab: Lab) -> None:
    lab.kubelet.failing_detach.add("stuck")
    lab.api.create(pod("stuck"))
    await lab.until(lambda: pod_ready(lab.api.get("Pod", "stuck", "default")))
    lab.api.delete("Pod", "stuck", "default", grace_s=None)
    await asyncio.sleep(0.5)
    assert [p["metadata"]["name"] for p in lab.pods()] == ["stuck"]  # still terminating
    lab.kubelet.failing_detach.clear()
    await lab.until(lambda: not lab.pods())
    assert lab.kubelet.detached == ["stuck"]


def test_a_pod_on_no_node_or_finished_is_deleted_at_once_and_a_finalizer_holds_any_object(
    api: ApiServer,
) -> None:
    api.create(pod("unscheduled"))
    api.delete("Pod", "unscheduled", "default", grace_s=None)
    assert api.objects("Pod", "default") == []
    held = api.create({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": "held", "namespace": "default",
                                    "finalizers": ["example.com/cleanup"]},
                       "spec": {"ports": [{"port": 80}]}})
    api.delete("Service", "held", "default", grace_s=None)
    assert api.get("Service", "held", "default")["metadata"]["deletionTimestamp"]
    api.patch("Service", "held", {"metadata": {"finalizers": []}}, "default")
    assert [s for s in api.objects("Service", "default")
            if s["metadata"]["uid"] == held["metadata"]["uid"]] == []


# ------------------------------------------------------------ endpoint slices


def service(name: str, target: int | str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": target}], **spec}}


async def test_endpointslices_list_the_ready_pods_with_the_named_target_port_resolved(
    lab: Lab,
) -> None:
    created = lab.api.create(service("web", "http", sessionAffinity="ClientIP"))
    assert created["spec"]["clusterIP"] == "10.96.0.10"
    lab.api.create(deployment("web", 2))

    def slice_with_two() -> dict[str, Any] | None:
        slices = lab.api.objects("EndpointSlice", "default")
        ready = [e for s in slices for e in s["endpoints"] if e["conditions"]["ready"]]
        return slices[0] if len(slices) == 1 and len(ready) == 2 else None

    found = await lab.until(slice_with_two)
    assert found["metadata"]["labels"] == {
        "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert found["addressType"] == "IPv4"
    assert found["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    ips = sorted(p["status"]["podIP"] for p in lab.pods())
    assert sorted(e["addresses"][0] for e in found["endpoints"]) == ips
    assert {e["targetRef"]["kind"] for e in found["endpoints"]} == {"Pod"}

    lab.api.patch("Deployment", "web", {"spec": {"replicas": 1}}, "default")
    await lab.until(lambda: [len(s["endpoints"]) for s in
                             lab.api.objects("EndpointSlice", "default")] == [1])
    lab.api.delete("Service", "web", "default")
    await lab.until(lambda: not lab.api.objects("EndpointSlice", "default"))


async def test_pods_without_an_address_are_not_endpoints_yet(lab_without_kubelet: Lab) -> None:
    lab = lab_without_kubelet
    lab.api.create(service("web", 8080))
    lab.api.create(deployment("web", 2))
    await lab.until(lambda: len(lab.pods()) == 2)
    found = await lab.until(lambda: lab.api.objects("EndpointSlice", "default"))
    await asyncio.sleep(0.3)
    assert [s["endpoints"] for s in lab.api.objects("EndpointSlice", "default")] == [[]]
    assert found[0]["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]


def test_a_numeric_target_port_is_used_as_it_is_and_an_unknown_name_resolves_to_nothing() -> None:
    web = pod("web", containers=[{"name": "a", "ports": [
        {"name": "http", "containerPort": 8080}]}])
    assert resolve_port({"port": 80, "targetPort": 9090}, web) == 9090
    assert resolve_port({"port": 80}, web) == 80
    assert resolve_port({"port": 80, "targetPort": "http"}, web) == 8080
    assert resolve_port({"port": 80, "targetPort": "grpc"}, web) is None


async def test_a_not_ready_node_is_tainted_and_its_pods_evicted_after_their_toleration(
    lab: Lab,
) -> None:
    quick = pod("quick", nodeName="node-1", tolerations=[{
        "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
        "tolerationSeconds": 1}])
    lab.api.create(quick)
    lab.api.create(pod("patient", nodeName="node-1"))
    await lab.until(lambda: all(pod_ready(p) for p in lab.pods()) and len(lab.pods()) == 2)
    lab.api.patch("Node", "node-1", {"status": {"conditions": [
        {"type": "Ready", "status": "False", "lastTransitionTime": now_timestamp()}]}})
    await lab.until(lambda: any(t["key"] == "node.kubernetes.io/not-ready" for t in
                                lab.api.get("Node", "node-1").get("spec", {}).get("taints")
                                or []))
    await lab.until(lambda: [p["metadata"]["name"] for p in lab.pods()] == ["patient"])
    assert not lab.api.get("Pod", "patient", "default")["metadata"].get("deletionTimestamp")


def test_the_scheduler_keeps_pods_off_nodes_whose_taints_they_do_not_tolerate() -> None:
    tainted = node("node-1")
    tainted["spec"] = {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                                  {"key": "soft", "effect": "PreferNoSchedule"}]}

    def with_tolerations(*tolerations: dict[str, Any]) -> dict[str, Any]:
        return {"spec": {"tolerations": list(tolerations)}}

    assert misfit(with_tolerations(), tainted) == (
        "node(s) had untolerated taint {dedicated: gpu}")
    assert misfit(with_tolerations({"key": "dedicated", "value": "cpu"}), tainted) is not None
    assert misfit(with_tolerations({"key": "dedicated", "operator": "Equal", "value": "gpu",
                                    "effect": "NoSchedule"}), tainted) is None
    assert misfit(with_tolerations({"key": "dedicated", "operator": "Exists"}), tainted) is None
    assert misfit(with_tolerations({"operator": "Exists"}), tainted) is None  # tolerates all
    assert misfit(with_tolerations({"key": "dedicated", "operator": "Exists",
                                    "effect": "NoExecute"}), tainted) is not None
