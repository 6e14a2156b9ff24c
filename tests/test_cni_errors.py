"""End to end: bad CNI input gets a CNI error, never a traceback.

The real ``podnet-cni`` launcher is run as a runtime would, against a running agent:
missing variables, an unknown command, a configuration that is not JSON, a pod nobody
knows, a network namespace that is gone, and no agent at all. Every answer is one JSON
object on stdout with the spec's ``code`` and a ``msg``, and the exit status is 1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from podnet.daemons import RedisServer
from tests.agent_harness import CniOutcome, Lab, LabNode, lab
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
ARGS = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory,
                  redis_server: RedisServer) -> AsyncIterator[Lab]:
    async with lab(tmp_path_factory.mktemp("cni-errors"), redis_server.url) as the_lab:
        await the_lab.subnet("apps", "10.20.0.0/24")
        await the_lab.add_node("node1", pod_timeout_s=1.0)
        yield the_lab


@pytest.fixture
def node(cluster: Lab) -> LabNode:
    return cluster.nodes["node1"]


def error_of(outcome: CniOutcome) -> dict[str, object]:
    assert outcome.returncode == 1, outcome
    assert "Traceback" not in outcome.stdout + outcome.stderr
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 1, outcome.stdout
    answer: dict[str, object] = json.loads(lines[0])
    assert isinstance(answer["msg"], str) and answer["msg"]
    return answer


async def test_add_without_a_container_id_is_an_invalid_environment(
    cluster: Lab, node: LabNode,
) -> None:
    outcome = await cluster.cni(node, "ADD", netns="/run/netns/x", args=ARGS)
    assert error_of(outcome)["code"] == 4
    assert "CNI_CONTAINERID" in outcome.stdout


async def test_add_without_the_pod_name_in_cni_args_is_an_invalid_environment(
    cluster: Lab, node: LabNode,
) -> None:
    netns = await cluster.netns()
    outcome = await cluster.cni(node, "ADD", container_id="c1", netns=f"/run/netns/{netns}",
                                args="IgnoreUnknown=1")
    assert error_of(outcome)["code"] == 4
    assert "K8S_POD_NAME" in outcome.stdout


async def test_an_unknown_command_is_an_invalid_environment(
    cluster: Lab, node: LabNode,
) -> None:
    outcome = await cluster.cni(node, "FROB", container_id="c1")
    assert error_of(outcome)["code"] == 4
    assert "FROB" in outcome.stdout


async def test_a_configuration_that_is_not_json_is_a_decoding_failure(
    cluster: Lab, node: LabNode,
) -> None:
    outcome = await cluster.cni(node, "ADD", stdin=b'{"cniVersion": "1.0.0", "name":',
                                container_id="c1", netns="/run/netns/x", args=ARGS)
    answer = error_of(outcome)
    assert answer["code"] == 6
    assert "line 1" in str(answer["details"])


async def test_an_unsupported_cni_version_is_refused(cluster: Lab, node: LabNode) -> None:
    outcome = await cluster.cni(node, "ADD", config=node.config(cniVersion="9.9.9"),
                                container_id="c1", netns="/run/netns/x", args=ARGS)
    assert error_of(outcome)["code"] == 1


async def test_a_pod_nobody_knows_is_reported_after_a_bounded_wait(
    cluster: Lab, node: LabNode,
) -> None:
    netns = await cluster.netns()
    outcome = await cluster.cni(node, "ADD", container_id="c2", netns=f"/run/netns/{netns}",
                                args="K8S_POD_NAME=nobody")
    answer = error_of(outcome)
    assert answer["code"] == 11
    assert "default/nobody" in str(answer["msg"])


async def test_add_into_a_network_namespace_that_is_gone_fails_and_del_succeeds(
    cluster: Lab, node: LabNode,
) -> None:
    await cluster.admit("web", "apps", node.name)
    gone = "/run/netns/pnpod-gone-for-good"
    outcome = await cluster.cni(node, "ADD", container_id="c3", netns=gone, args=ARGS)
    answer = error_of(outcome)
    assert answer["code"] == 102
    assert "does not exist" in str(answer["msg"])
    deleted = await cluster.cni(node, "DEL", container_id="c3", netns=gone, args=ARGS)
    assert (deleted.returncode, deleted.stdout) == (0, ""), deleted


async def test_a_failed_add_is_one_warning_event_on_the_pod_however_often_it_is_retried(
    cluster: Lab, node: LabNode,
) -> None:
    pod = await cluster.admit("broken", "apps", node.name)
    gone = "/run/netns/pnpod-broken-gone"
    args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=broken"
    for attempt in range(3):  # kubelet retries a failing sandbox
        outcome = await cluster.cni(node, "ADD", container_id=f"c5{attempt}", netns=gone,
                                    args=args)
        assert error_of(outcome)["code"] == 102

    def failed_attaches() -> list[dict[str, Any]]:
        return [event for event in cluster.api.objects("Event", "default")
                if event["involvedObject"]["name"] == "broken"]

    (event,) = await eventually(failed_attaches, what="an Event on the pod")
    assert (event["type"], event["reason"]) == ("Warning", "FailedAttach")
    assert event["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert "pod default/broken" in event["message"]
    assert "does not exist" in event["message"]
    assert event["source"]["component"] == "podnet-agent"
    await asyncio.sleep(0.5)  # the retries' Events, had they been queued, would be in
    assert len(failed_attaches()) == 1


async def test_no_agent_behind_the_socket_means_try_again_later(
    cluster: Lab, node: LabNode,
) -> None:
    outcome = await cluster.cni(node, "ADD", config=node.config(socket="/run/podnet-none.sock"),
                                container_id="c4", netns="/run/netns/x", args=ARGS)
    assert error_of(outcome)["code"] == 11


async def test_version_answers_without_an_agent(cluster: Lab, node: LabNode) -> None:
    outcome = await cluster.cni(node, "VERSION", stdin=b"")
    assert outcome.returncode == 0
    assert "1.0.0" in outcome.answer["supportedVersions"]


async def test_status_reports_the_bootstrapped_node_ready(cluster: Lab, node: LabNode) -> None:
    await cluster.node_ready(node)
    outcome = await cluster.cni(node, "STATUS")
    assert (outcome.returncode, outcome.stdout) == (0, "")


async def test_gc_removes_attachments_the_runtime_no_longer_has(
    cluster: Lab, node: LabNode,
) -> None:
    await cluster.admit("keep", "apps", node.name)
    await cluster.admit("drop", "apps", node.name)
    keep = await cluster.attach(node, "keep")
    drop = await cluster.attach(node, "drop")
    valid = [{"containerID": keep.container_id, "ifname": "eth0"}]
    outcome = await cluster.cni(node, "GC", config=node.config(
        cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid}))
    assert outcome.returncode == 0, outcome
    ports = node.vsctl("list-ports", "br-int").split()
    assert keep.host_ifname in ports and drop.host_ifname not in ports
