"""The webhook's pure core: subnet choice, request kinds, workloads, patches, affinity."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipam.errors import OutsideSubnet
from ipam.pool import parse_ippool
from ipam.records import Allocation, allocation_annotations
from ipam.subnet import build_subnet, default_subnet
from webhook.admit import TOKEN_NAMESPACE, token_from_uid
from webhook.decide import Catalog, NamespaceInfo, Plan, Skip, Workload, decide
from webhook.errors import Denial
from webhook.patch import (
    annotation_ops,
    apply_patch,
    build_patch,
    merge_node_affinity,
)
from webhook.settings import LabelSelector, WebhookSettings

SETTINGS = WebhookSettings()
ZONE_A = build_subnet(
    "zone-a", "10.20.0.0/24", namespaces=["edge"], node_selector={"zone": "a"}
)
BOUND = build_subnet("by-annotation", "10.21.0.0/24")
POOL = parse_ippool({
    "metadata": {"name": "web-pool"},
    "spec": {"subnet": "zone-a", "ips": ["10.20.0.10", "10.20.0.20..10.20.0.21"],
             "nodeSelector": {"rack": "r1"}},
})
CATALOG = Catalog((default_subnet(), ZONE_A, BOUND), (POOL,))


def pod(
    annotations: Mapping[str, str] | None = None,
    *,
    name: str = "web-0",
    owner: tuple[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    host_network: bool = False,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": "default", "name": name}
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    if labels is not None:
        metadata["labels"] = dict(labels)
    if owner is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "u-1",
             "controller": True, "blockOwnerDeletion": True}
        ]
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def plan_for(obj: Mapping[str, Any], namespace: NamespaceInfo | None = None) -> Plan:
    decision = decide(obj, namespace or NamespaceInfo("default"), CATALOG, SETTINGS)
    assert isinstance(decision, Plan)
    return decision


def test_the_pod_annotation_chooses_the_subnet_before_anything_else() -> None:
    chosen = plan_for(
        pod({"ovn.kubernetes.io/logical_switch": "by-annotation"}), NamespaceInfo("edge")
    )
    assert chosen.subnet.name == "by-annotation"


def test_an_ippool_name_chooses_its_subnet_when_the_pod_names_no_subnet() -> None:
    chosen = plan_for(pod({"ovn.kubernetes.io/ip_pool": "web-pool"}))
    assert chosen.subnet.name == "zone-a"
    assert chosen.request.pool is not None and chosen.request.pool.name == "web-pool"


def test_subnet_spec_namespaces_bind_a_namespace_before_its_annotation() -> None:
    namespace = NamespaceInfo(
        "edge", annotations={"ovn.kubernetes.io/logical_switch": "by-annotation"}
    )
    assert plan_for(pod(), namespace).subnet.name == "zone-a"


def test_a_namespace_annotation_binds_its_pods_to_a_subnet() -> None:
    namespace = NamespaceInfo(
        "team", annotations={"ovn.kubernetes.io/logical_switch": "by-annotation"}
    )
    assert plan_for(pod(), namespace).subnet.name == "by-annotation"


def test_pods_without_any_binding_land_in_the_default_subnet() -> None:
    assert plan_for(pod()).subnet.name == "ovn-default"


def test_a_subnet_marked_default_replaces_ovn_default() -> None:
    catalog = Catalog((build_subnet("main", "10.40.0.0/16", default=True), ZONE_A))
    decision = decide(pod(), NamespaceInfo("default"), catalog, SETTINGS)
    assert isinstance(decision, Plan) and decision.subnet.name == "main"


def test_an_unknown_subnet_is_denied_naming_the_annotation() -> None:
    with pytest.raises(Denial, match=r"ovn.kubernetes.io/logical_switch nope: subnet nope"):
        plan_for(pod({"ovn.kubernetes.io/logical_switch": "nope"}))


def test_an_unknown_ippool_is_denied_naming_it() -> None:
    with pytest.raises(Denial, match="IPPool missing-pool does not exist"):
        plan_for(pod({"ovn.kubernetes.io/ip_pool": "missing-pool"}))


def test_an_ippool_of_another_subnet_than_the_requested_one_is_denied() -> None:
    with pytest.raises(Denial, match="belongs to subnet zone-a"):
        plan_for(pod({"ovn.kubernetes.io/ip_pool": "web-pool",
                      "ovn.kubernetes.io/logical_switch": "ovn-default"}))


def test_a_static_address_and_mac_become_a_static_request() -> None:
    chosen = plan_for(pod({"ovn.kubernetes.io/ip_address": "10.16.0.7",
                           "ovn.kubernetes.io/mac_address": "02:AA:bb:cc:dd:ee"}))
    assert chosen.request.static_ips == (ipaddress.ip_address("10.16.0.7"),)
    assert chosen.request.mac == "02:aa:bb:cc:dd:ee"


def test_a_static_address_outside_the_subnet_is_refused_before_redis_is_asked() -> None:
    with pytest.raises(OutsideSubnet, match=r"10\.99\.0\.7"):
        plan_for(pod({"ovn.kubernetes.io/ip_address": "10.99.0.7"}))


def test_a_statefulset_pod_takes_the_pool_position_of_its_ordinal() -> None:
    chosen = plan_for(pod({"ovn.kubernetes.io/ip_pool": "web-pool"}, name="db-2",
                          owner=("StatefulSet", "db")))
    assert chosen.request.static_ips == (ipaddress.ip_address("10.20.0.21"),)
    assert chosen.request.sticky_key == "default/db/2"
    assert chosen.request.field == "ovn.kubernetes.io/ip_pool"


def test_a_statefulset_ordinal_past_the_end_of_the_pool_is_denied_with_counts() -> None:
    with pytest.raises(Denial, match=r"StatefulSet ordinal 3 is past the end of ip_pool "
                                     r"web-pool \(3 entries\)"):
        plan_for(pod({"ovn.kubernetes.io/ip_pool": "web-pool"}, name="db-3",
                     owner=("StatefulSet", "db")))


def test_a_statefulset_pod_without_a_pool_keeps_its_address_by_ordinal() -> None:
    chosen = plan_for(pod(name="db-11", owner=("StatefulSet", "db")))
    assert chosen.request.sticky_key == "default/db/11"
    assert not chosen.request.static_ips and chosen.request.pool is None


def test_an_inline_pool_on_a_deployment_is_a_pool_request() -> None:
    chosen = plan_for(pod({"ovn.kubernetes.io/ip_pool": "10.16.0.20,10.16.0.21"}, name=""))
    assert chosen.request.pool is not None and chosen.request.pool.size == 2


def test_the_workload_of_a_replicaset_pod_is_its_deployment() -> None:
    obj = pod(name="", owner=("ReplicaSet", "web-7d4b9c8f5d"),
              labels={"pod-template-hash": "7d4b9c8f5d"})
    assert plan_for(obj).workload == Workload("Deployment", "default", "web")


def test_a_replicaset_without_a_template_hash_is_named_as_itself() -> None:
    assert plan_for(pod(name="", owner=("ReplicaSet", "web-x"))).workload == Workload(
        "ReplicaSet", "default", "web-x"
    )


def test_host_network_pods_excluded_namespaces_and_selected_pods_are_skipped() -> None:
    assert isinstance(decide(pod(host_network=True), NamespaceInfo("default"), CATALOG,
                             SETTINGS), Skip)
    assert isinstance(decide(pod(), NamespaceInfo("kube-system"), CATALOG, SETTINGS), Skip)
    selective = WebhookSettings(excluded_selector=LabelSelector.parse("podnet.io/skip"))
    skipped = pod(labels={"podnet.io/skip": ""})
    assert isinstance(decide(skipped, NamespaceInfo("default"), CATALOG, selective), Skip)
    assert isinstance(decide(pod(), NamespaceInfo("default"), CATALOG, selective), Plan)


def test_subnet_and_pool_node_selectors_are_merged() -> None:
    chosen = plan_for(pod({"ovn.kubernetes.io/ip_pool": "web-pool"}, name=""))
    assert chosen.node_selector == {"zone": "a", "rack": "r1"}


BOUND_POOLS = Catalog(
    (default_subnet(), ZONE_A),
    (
        parse_ippool({"metadata": {"name": "b-pool"}, "spec": {
            "subnet": "ovn-default", "ips": ["10.16.0.30"], "namespaces": ["ns-1"]}}),
        parse_ippool({"metadata": {"name": "a-pool"}, "spec": {
            "subnet": "ovn-default", "ips": ["10.16.0.20..10.16.0.21"],
            "namespaces": ["ns-1"], "nodeSelector": {"rack": "r2"}}}),
        parse_ippool({"metadata": {"name": "elsewhere"}, "spec": {
            "subnet": "zone-a", "ips": ["10.20.0.40"], "namespaces": ["ns-2"]}}),
    ),
)


def bound_plan(obj: Mapping[str, Any], namespace: str) -> Plan:
    decision = decide(obj, NamespaceInfo(namespace), BOUND_POOLS, SETTINGS)
    assert isinstance(decision, Plan)
    return decision


def test_a_pod_of_a_namespace_bound_to_ippools_takes_its_address_from_them() -> None:
    chosen = bound_plan(pod(name=""), "ns-1")
    assert chosen.request.pool is not None
    assert chosen.request.pool.name == "a-pool,b-pool"
    assert chosen.request.pool.size == 3
    assert chosen.node_selector == {"rack": "r2"}
    assert chosen.pool_label == "IPPool a-pool,b-pool (bound to namespace ns-1)"


def test_a_pod_of_an_unbound_namespace_takes_any_address() -> None:
    assert bound_plan(pod(name=""), "default").request.pool is None


def test_bound_pools_of_another_subnet_are_denied_unless_the_pod_chose_its_subnet() -> None:
    with pytest.raises(Denial, match=r"namespace ns-2 is bound to IPPool elsewhere "
                                     r"\(subnet zone-a\) by spec.namespaces, but its pods "
                                     r"get subnet ovn-default"):
        bound_plan(pod(name=""), "ns-2")
    chosen = bound_plan(pod({"ovn.kubernetes.io/logical_switch": "ovn-default"}, name=""), "ns-2")
    assert chosen.request.pool is None


def test_a_static_address_in_a_bound_namespace_is_not_drawn_from_the_pools() -> None:
    chosen = bound_plan(pod({"ovn.kubernetes.io/ip_address": "10.16.0.99"}, name=""), "ns-1")
    assert chosen.request.static_ips == (ipaddress.ip_address("10.16.0.99"),)


def test_an_annotation_podnet_does_not_honour_is_denied_before_anything_is_decided() -> None:
    with pytest.raises(Denial, match=r"annotation ovn\.kubernetes\.io/vip is not supported"):
        plan_for(pod({"ovn.kubernetes.io/vip": "vip-1",
                      "ovn.kubernetes.io/logical_switch": "missing"}))


def test_label_selector_syntax_covers_equality_and_existence() -> None:
    selector = LabelSelector.parse("app=web,tier!=db,canary,!legacy")
    assert selector.matches({"app": "web", "canary": "1"})
    assert not selector.matches({"app": "web", "canary": "1", "legacy": "y"})
    assert not selector.matches({"app": "web", "tier": "db", "canary": "1"})


ALLOCATION = Allocation(
    token="tok-1", subnet="ovn-default", state="reserved",
    ips=(ipaddress.ip_address("10.16.0.5"),), mac="02:00:00:00:00:01",
    namespace="default", name="web-0", uid="", sticky_key="", since_ms=0, expires_ms=0,
)


def test_annotations_are_added_as_a_whole_map_when_the_pod_has_none() -> None:
    annotations = allocation_annotations(ALLOCATION, default_subnet())
    ops = annotation_ops(pod(), annotations)
    assert ops == [{"op": "add", "path": "/metadata/annotations", "value": annotations}]
    assert apply_patch(pod(), ops)["metadata"]["annotations"]["ovn.kubernetes.io/cidr"] == (
        "10.16.0.0/16"
    )


def test_annotation_keys_with_slashes_are_escaped_in_the_patch_path() -> None:
    ops = annotation_ops(pod({"keep": "me"}), {"ovn.kubernetes.io/allocated": "true"})
    assert ops[0]["path"] == "/metadata/annotations/ovn.kubernetes.io~1allocated"
    patched = apply_patch(pod({"keep": "me"}), ops)
    assert patched["metadata"]["annotations"] == {
        "keep": "me", "ovn.kubernetes.io/allocated": "true"
    }


def test_the_patch_is_empty_when_the_pod_already_carries_everything() -> None:
    annotations = allocation_annotations(ALLOCATION, default_subnet())
    once = apply_patch(pod(), build_patch(pod(), annotations, {"zone": "a"}))
    assert build_patch(once, annotations, {"zone": "a"}) == []


def test_a_daemonset_match_fields_term_is_kept_when_a_node_selector_is_merged() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]}}}
    merged = merge_node_affinity(affinity, {"zone": "a"})
    assert merged is not None
    terms = merged["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert terms == [{
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}],
        "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
    }]


def test_a_pod_without_affinity_gets_one_required_term() -> None:
    merged = merge_node_affinity(None, {"zone": "a"})
    assert merged == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}


# ---------------------------------------------------------------- affinity property

KEYS = st.sampled_from(["zone", "rack", "disk"])
VALUES = st.sampled_from(["a", "b", "c"])
EXPRESSION = st.fixed_dictionaries({
    "key": KEYS,
    "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
    "values": st.lists(VALUES, min_size=1, max_size=2),
})
FIELD = st.fixed_dictionaries({
    "key": st.just("metadata.name"), "operator": st.just("In"),
    "values": st.lists(st.sampled_from(["n1", "n2"]), min_size=1, max_size=2),
})
TERM = st.fixed_dictionaries({}, optional={
    "matchExpressions": st.lists(EXPRESSION, max_size=3),
    "matchFields": st.lists(FIELD, max_size=1),
})
NODE = st.tuples(st.sampled_from(["n1", "n2"]), st.dictionaries(KEYS, VALUES))


def _expression_holds(expression: Mapping[str, Any], value: str | None) -> bool:
    operator = expression["operator"]
    if operator == "In":
        return value in expression["values"]
    if operator == "NotIn":
        return value not in expression["values"]
    if operator == "Exists":
        return value is not None
    return value is None


def _term_matches(term: Mapping[str, Any], node: tuple[str, dict[str, str]]) -> bool:
    name, labels = node
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    return all(_expression_holds(e, labels.get(e["key"])) for e in expressions) and all(
        _expression_holds(f, name) for f in fields
    )


def _schedulable(affinity: Mapping[str, Any] | None, node: tuple[str, dict[str, str]]) -> bool:
    required = ((affinity or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return True
    return any(_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


@given(
    terms=st.none() | st.lists(TERM, max_size=3),
    selector=st.dictionaries(KEYS, VALUES, min_size=1, max_size=2),
    node=NODE,
)
def test_merged_affinity_admits_exactly_the_nodes_both_the_pod_and_the_subnet_admit(
    terms: list[dict[str, Any]] | None, selector: dict[str, str], node: tuple[str, dict[str, str]]
) -> None:
    affinity = None if terms is None else {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    merged = merge_node_affinity(affinity, selector)
    result = merged if merged is not None else affinity
    on_selector = all(node[1].get(k) == v for k, v in selector.items())
    original = _schedulable(affinity, node) if terms else True
    assert _schedulable(result, node) == (original and on_selector)
    assert merge_node_affinity(result, selector) is None  # idempotent


@given(st.text())
def test_the_reservation_token_is_the_uuid5_of_the_review_uid(uid: str) -> None:
    assert token_from_uid(uid) == str(uuid.uuid5(TOKEN_NAMESPACE, uid))
