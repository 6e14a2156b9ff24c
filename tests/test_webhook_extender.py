"""The scheduler extender's pure core: which nodes a pod may go to, and how they score.

ExtenderArgs here are shaped as kube-scheduler sends them (Go field names, a NodeList
with whole Node objects, or only ``NodeNames`` when the extender is node-cache capable).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from ipam import annotations as keys
from ipam.errors import SubnetOverlap
from ipam.pool import IPPoolSpec
from ipam.subnet import build_subnet, check_cluster_networks, default_subnet
from webhook.decide import Catalog, NamespaceInfo
from webhook.errors import MalformedArgs
from webhook.extender import (
    AGENT_READY_CONDITION,
    Node,
    Placement,
    filter_nodes,
    gateway_nodes,
    node_from_object,
    parse_extender_args,
    placement_of,
    prioritize,
)
from webhook.settings import WebhookSettings
from webhook.validate import cluster_networks

READY = {keys.AGENT_READY_LABEL: "true"}
CATALOG = Catalog(
    (
        default_subnet(),
        build_subnet("zone-a", "10.20.0.0/24", node_selector={"podnet.io/zone": "a"},
                     namespaces=["edge"]),
        build_subnet("egress", "10.30.0.0/24", gateway_type="centralized",
                     gateway_node="node-2:172.18.0.3, node-3"),
    ),
    (IPPoolSpec("fast", "ovn-default", ("10.16.0.50",), node_selector={"disk": "ssd"}),),
)


def node(
    name: str, labels: dict[str, str] | None = None, conditions: dict[str, str] | None = None
) -> dict[str, Any]:
    """A v1.Node as the scheduler sends it inside ExtenderArgs."""
    return {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "status": {"conditions": [
            {"type": "Ready", "status": "True"},
            *({"type": t, "status": s} for t, s in (conditions or {}).items()),
        ]},
    }


def pod(annotations: dict[str, str] | None = None, namespace: str = "default",
        **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "web-0", "namespace": namespace, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "nginx"}], **spec},
    }


def args_body(pod_obj: dict[str, Any], *nodes: dict[str, Any]) -> bytes:
    return json.dumps({"Pod": pod_obj, "Nodes": {"metadata": {}, "items": list(nodes)}}).encode()


def place(pod_obj: Mapping[str, Any], namespace: str = "default") -> Placement:
    return placement_of(pod_obj, NamespaceInfo(namespace), CATALOG, WebhookSettings())


def run_filter(pod_obj: dict[str, Any], *nodes: dict[str, Any]) -> Any:
    args = parse_extender_args(args_body(pod_obj, *nodes))
    return filter_nodes(args, place(pod_obj, args.namespace))


def test_a_node_with_the_agent_ready_label_passes() -> None:
    result = run_filter(pod(), node("node-1", READY))
    assert result["NodeNames"] == ["node-1"]
    assert [n["metadata"]["name"] for n in result["Nodes"]["items"]] == ["node-1"]
    assert result["FailedNodes"] == {} and result["Error"] == ""


def test_a_node_without_the_label_fails_naming_the_label() -> None:
    result = run_filter(pod(), node("node-1"), node("node-2", {keys.AGENT_READY_LABEL: "false"}))
    assert result["NodeNames"] == []
    assert result["FailedNodes"] == {
        "node-1": "podnet node agent is not ready (label podnet.io/agent-ready is missing)",
        "node-2": "podnet node agent is not ready (label podnet.io/agent-ready is 'false')",
    }


def test_failures_are_also_unresolvable_so_the_scheduler_does_not_preempt_for_them() -> None:
    result = run_filter(pod(), node("node-1"))
    assert result["FailedAndUnresolvableNodes"] == result["FailedNodes"]


def test_the_agent_condition_takes_precedence_over_the_label() -> None:
    result = run_filter(
        pod(),
        node("stale", READY, {AGENT_READY_CONDITION: "False"}),
        node("fresh", {}, {AGENT_READY_CONDITION: "True"}),
    )
    assert result["NodeNames"] == ["fresh"]
    assert result["FailedNodes"]["stale"] == (
        "podnet node agent is not ready (condition PodnetAgentReady is False)"
    )


def test_a_node_outside_the_subnet_node_selector_fails_naming_subnet_and_selector() -> None:
    zone_a = pod({"ovn.kubernetes.io/logical_switch": "zone-a"})
    result = run_filter(
        zone_a, node("in-a", {**READY, "podnet.io/zone": "a"}), node("in-b", READY)
    )
    assert result["NodeNames"] == ["in-a"]
    assert result["FailedNodes"] == {
        "in-b": "subnet zone-a is not available on this node (nodeSelector podnet.io/zone=a)"
    }


def test_without_an_annotation_the_subnet_is_decided_as_at_admission() -> None:
    # Namespace edge is bound to zone-a by Subnet.spec.namespaces.
    result = run_filter(pod(namespace="edge"), node("in-b", READY))
    assert "subnet zone-a" in result["FailedNodes"]["in-b"]


def test_an_ip_pool_node_selector_is_required_too() -> None:
    result = run_filter(
        pod({"ovn.kubernetes.io/ip_pool": "fast"}),
        node("ssd", {**READY, "disk": "ssd"}), node("hdd", READY),
    )
    assert result["NodeNames"] == ["ssd"]
    assert result["FailedNodes"]["hdd"] == (
        "subnet ovn-default is not available on this node (nodeSelector disk=ssd)"
    )


def test_a_host_network_pod_passes_every_node_even_without_an_agent() -> None:
    result = run_filter(pod(hostNetwork=True), node("node-1"))
    assert result["NodeNames"] == ["node-1"]


def test_a_pod_of_an_excluded_namespace_still_needs_a_ready_agent() -> None:
    result = run_filter(pod(namespace="kube-system"), node("node-1"), node("node-2", READY))
    assert result["NodeNames"] == ["node-2"]


def test_a_pod_whose_subnet_does_not_exist_fails_everywhere_with_the_reason() -> None:
    result = run_filter(pod({"ovn.kubernetes.io/logical_switch": "nope"}), node("n", READY))
    assert result["FailedNodes"] == {
        "n": "ovn.kubernetes.io/logical_switch nope: subnet nope does not exist"
    }


def test_node_names_alone_pass_through_unfiltered() -> None:
    body = json.dumps({"Pod": pod({"ovn.kubernetes.io/logical_switch": "zone-a"}),
                       "NodeNames": ["node-1", "node-2"]}).encode()
    args = parse_extender_args(body)
    result = filter_nodes(args, place(args.pod))
    assert result["NodeNames"] == ["node-1", "node-2"]
    assert result["Nodes"] is None and result["FailedNodes"] == {}


def test_node_names_are_filtered_when_the_server_knows_the_nodes() -> None:
    body = json.dumps({"Pod": pod(), "NodeNames": ["node-1", "node-2"]}).encode()
    args = parse_extender_args(body, {"node-1": Node("node-1", {})})
    assert filter_nodes(args, place(args.pod))["NodeNames"] == ["node-2"]


def test_field_names_are_matched_case_insensitively_as_go_does() -> None:
    body = json.dumps({"pod": pod(), "nodenames": ["node-1"]}).encode()
    assert [n.name for n in parse_extender_args(body).nodes] == ["node-1"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "body is not JSON"),
        (b"[]", "body is not a JSON object"),
        (b'{"Nodes": {"items": []}}', "Pod is missing"),
        (b'{"Pod": {}}', "neither Nodes.items nor NodeNames"),
        (b'{"Pod": {}, "Nodes": {"items": [{"metadata": {}}]}}', "a node has no metadata.name"),
        (b'{"Pod": {}, "Nodes": {"items": "node-1"}}', "Nodes.items is not a list"),
    ],
)
def test_malformed_extender_args_are_refused_saying_what_is_wrong(
    body: bytes, message: str
) -> None:
    with pytest.raises(MalformedArgs, match=message):
        parse_extender_args(body)


def test_gateway_nodes_read_kube_ovn_lists_with_or_without_addresses() -> None:
    assert gateway_nodes(CATALOG.subnets[2]) == {"node-2", "node-3"}
    assert gateway_nodes(CATALOG.subnets[0]) == frozenset()


def test_prioritize_prefers_the_gateway_of_a_centralized_subnet() -> None:
    placement = place(pod({"ovn.kubernetes.io/logical_switch": "egress"}))
    nodes = [Node("node-1", READY), Node("node-2", READY), Node("node-3", {}),
             Node("node-4", known=False)]
    assert prioritize(nodes, placement) == [
        {"Host": "node-1", "Score": 5},
        {"Host": "node-2", "Score": 10},
        {"Host": "node-3", "Score": 0},
        {"Host": "node-4", "Score": 5},
    ]


def test_prioritize_scores_every_ready_node_alike_for_a_distributed_subnet() -> None:
    placement = place(pod())
    scores = {p["Score"] for p in prioritize([Node("a", READY), Node("b", READY)], placement)}
    assert scores == {5}


def test_a_node_object_gives_its_internal_and_external_addresses() -> None:
    node = node_from_object({"metadata": {"name": "n1"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "192.0.2.11"}, {"type": "Hostname", "address": "n1"},
        {"type": "ExternalIP", "address": "2001:db8::11"}, {"type": "InternalIP"}]}})
    assert node.addresses == ("192.0.2.11", "2001:db8::11")


def test_a_subnet_over_a_nodes_address_is_refused_naming_the_node() -> None:
    taken = cluster_networks(["10.96.0.0/12"], {"n1": ("192.0.2.11", "2001:db8::11")})
    with pytest.raises(SubnetOverlap, match=r"subnet s overlaps the address of node n1 "
                                            r"\(192.0.2.11/32\)"):
        check_cluster_networks(build_subnet("s", "192.0.2.0/24"), taken)
    check_cluster_networks(build_subnet("t", "192.0.3.0/24"), taken)
