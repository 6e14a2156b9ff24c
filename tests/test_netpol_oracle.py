"""The NetworkPolicy oracle against the API's definitions, one rule at a time, so that
when the truth-table suite and the datapath disagree the oracle is not the suspect."""

from __future__ import annotations

from typing import Any

import pytest

from tests.netpol_oracle import (
    EGRESS,
    INGRESS,
    SCTP,
    TCP,
    UDP,
    Cluster,
    Connection,
    ContainerPort,
    InvalidPolicy,
    Pod,
    allowed,
    isolated,
    policy_types,
    selector_matches,
)

PORTS = (ContainerPort(80, TCP, "http"), ContainerPort(81, TCP, "alt"),
         ContainerPort(80, UDP, "dns"), ContainerPort(81, UDP, "alt"))


def pod(namespace: str, name: str, ip: str, **labels: str) -> Pod:
    return Pod(namespace, name, {"pod": name, **labels}, ip, PORTS)


NAMESPACES = {"x": {"ns": "x"}, "y": {"ns": "y"}, "z": {"ns": "z", "team": "blue"}}
PODS = {p.key: p for p in (
    pod("x", "a", "10.0.0.1"), pod("x", "b", "10.0.0.2"), pod("x", "c", "10.0.0.3"),
    pod("y", "a", "10.0.1.1"), pod("y", "b", "10.0.1.2"),
    pod("z", "a", "10.0.2.1"), pod("z", "b", "10.0.2.2", tier="web"),
)}


def policy(namespace: str, spec: dict[str, Any], name: str = "p") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def cluster(*policies: dict[str, Any]) -> Cluster:
    return Cluster(NAMESPACES, tuple(PODS.values()), policies)


def can(world: Cluster, source: str, destination: str, port: int = 80,
        protocol: str = TCP) -> bool:
    target: Pod | str = PODS.get(destination, destination)
    return allowed(world, Connection(PODS[source], target, port, protocol))


def reachable_from(world: Cluster, destination: str, port: int = 80,
                   protocol: str = TCP) -> set[str]:
    return {s for s in PODS if s != destination and can(world, s, destination, port, protocol)}


EVERYONE_BUT = {key: set(PODS) - {key} for key in PODS}
DENY_INGRESS_X = policy("x", {"podSelector": {}, "policyTypes": [INGRESS]})


# ----------------------------------------------------------------- selectors


def test_an_empty_selector_matches_every_label_set() -> None:
    assert selector_matches({}, {}) and selector_matches({}, {"a": "b"})


def test_match_labels_and_match_expressions_must_all_hold() -> None:
    selector = {"matchLabels": {"pod": "b"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}
    assert selector_matches(selector, {"pod": "b", "tier": "web"})
    assert not selector_matches(selector, {"pod": "b"})
    assert not selector_matches(selector, {"pod": "a", "tier": "web"})


@pytest.mark.parametrize(("operator", "values", "labels", "expected"), [
    ("In", ["a", "b"], {"k": "a"}, True),
    ("In", ["a", "b"], {}, False),
    ("NotIn", ["a"], {"k": "b"}, True),
    ("NotIn", ["a"], {}, True),
    ("NotIn", ["a"], {"k": "a"}, False),
    ("Exists", [], {"k": ""}, True),
    ("Exists", [], {}, False),
    ("DoesNotExist", [], {}, True),
    ("DoesNotExist", [], {"k": "a"}, False),
])
def test_each_selector_operator_means_what_the_api_says(
    operator: str, values: list[str], labels: dict[str, str], expected: bool,
) -> None:
    expression = {"key": "k", "operator": operator, "values": values}
    assert selector_matches({"matchExpressions": [expression]}, labels) is expected


def test_an_in_expression_without_values_is_refused() -> None:
    with pytest.raises(InvalidPolicy):
        selector_matches({"matchExpressions": [{"key": "k", "operator": "In"}]}, {})


# --------------------------------------------------------------- policyTypes


def test_policy_types_default_to_ingress_and_to_egress_only_with_egress_rules() -> None:
    assert policy_types(policy("x", {"podSelector": {}})) == {INGRESS}
    assert policy_types(policy("x", {"podSelector": {}, "egress": []})) == {INGRESS}
    assert policy_types(policy("x", {"podSelector": {}, "egress": [{}]})) == {INGRESS, EGRESS}
    assert policy_types(policy("x", {"podSelector": {}, "policyTypes": [EGRESS],
                                     "ingress": [{}]})) == {EGRESS}


def test_without_policies_everything_is_allowed() -> None:
    world = cluster()
    assert all(reachable_from(world, d) == EVERYONE_BUT[d] for d in PODS)


def test_default_deny_ingress_isolates_only_the_selected_pods_ingress() -> None:
    world = cluster(DENY_INGRESS_X)
    assert reachable_from(world, "x/a") == set()
    assert reachable_from(world, "y/a") == EVERYONE_BUT["y/a"]
    assert can(world, "x/a", "y/a")  # egress untouched
    assert isolated(world, PODS["x/a"]) == {INGRESS}
    assert isolated(world, PODS["y/a"]) == set()


def test_default_deny_egress_blocks_the_selected_pods_outgoing_connections() -> None:
    world = cluster(policy("x", {"podSelector": {}, "policyTypes": [EGRESS]}))
    assert not can(world, "x/a", "x/b") and not can(world, "x/a", "y/a")
    assert not can(world, "x/a", "198.51.100.10")
    assert can(world, "y/a", "x/a")


def test_policy_types_given_override_the_rules_present() -> None:
    """Ingress rules in a policy of type Egress only are ignored: ingress stays open."""
    world = cluster(policy("x", {"podSelector": {}, "policyTypes": [EGRESS],
                                 "ingress": [{"from": [{"podSelector": {"pod": "none"}}]}]}))
    assert reachable_from(world, "x/a") == EVERYONE_BUT["x/a"] - {"x/b", "x/c"}


def test_an_empty_rule_allows_everything_and_an_absent_rule_list_nothing() -> None:
    assert reachable_from(cluster(policy("x", {"podSelector": {}, "ingress": [{}]})),
                          "x/a") == EVERYONE_BUT["x/a"]
    assert reachable_from(cluster(policy("x", {"podSelector": {}})), "x/a") == set()


# --------------------------------------------------------------------- peers


def test_a_pod_selector_alone_means_pods_of_the_policys_namespace() -> None:
    world = cluster(policy("x", {"podSelector": {"matchLabels": {"pod": "a"}},
                                 "ingress": [{"from": [{"podSelector": {}}]}]}))
    assert reachable_from(world, "x/a") == {"x/b", "x/c"}
    assert reachable_from(world, "x/b") == EVERYONE_BUT["x/b"]


def test_a_namespace_selector_alone_means_every_pod_of_those_namespaces() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}))
    assert reachable_from(world, "x/a") == {"y/a", "y/b"}


def test_both_selectors_in_one_peer_are_anded() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}},
         "podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    assert reachable_from(world, "x/a") == {"y/b"}


def test_two_peers_are_ored() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
        {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    assert reachable_from(world, "x/a") == {"y/a", "y/b", "x/b"}


def test_an_empty_namespace_selector_with_a_pod_selector_spans_all_namespaces() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    assert reachable_from(world, "x/a") == {"x/b", "y/b", "z/b"}


def test_match_expressions_select_namespaces_and_pods() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchExpressions": [
            {"key": "ns", "operator": "NotIn", "values": ["x", "y"]}]},
         "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}]}]}))
    assert reachable_from(world, "x/a") == {"z/b"}


def test_a_pods_namespace_labels_are_read_from_the_namespace_not_the_pod() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}))
    assert reachable_from(world, "x/a") == {"z/a", "z/b"}


def test_egress_peers_select_destinations() -> None:
    world = cluster(policy("x", {"podSelector": {"matchLabels": {"pod": "a"}},
                                 "policyTypes": [EGRESS], "egress": [{"to": [
                                     {"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}))
    assert {d for d in PODS if d != "x/a" and can(world, "x/a", d)} == {"z/a", "z/b"}
    assert can(world, "x/b", "y/a")


# ------------------------------------------------------------------- ipBlock


def test_an_ip_block_matches_its_cidr_minus_the_exceptions() -> None:
    world = cluster(policy("x", {"podSelector": {}, "policyTypes": [EGRESS], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.0.1.0/24", "except": ["10.0.1.2/32"]}}]}]}))
    assert {d for d in PODS if can(world, "x/a", d)} == {"y/a"}
    assert not can(world, "x/a", "198.51.100.10")


def test_an_ip_block_admits_sources_by_their_address() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.0.2.0/31"}}]}]}))
    assert reachable_from(world, "x/a") == {"z/a"}


def test_an_exception_outside_its_cidr_is_refused() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.0.2.0/24", "except": ["10.0.3.0/24"]}}]}]}))
    with pytest.raises(InvalidPolicy):
        can(world, "z/a", "x/a")


def test_an_ip_block_with_selectors_is_refused() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}))
    with pytest.raises(InvalidPolicy):
        can(world, "z/a", "x/a")


def test_an_address_outside_every_pod_is_judged_by_egress_alone() -> None:
    assert can(cluster(DENY_INGRESS_X), "x/a", "198.51.100.10")


# --------------------------------------------------------------------- ports


def test_a_numeric_port_allows_that_port_and_protocol_only() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [{"ports": [{"port": 81}]}]}))
    assert can(world, "y/a", "x/a", 81, TCP)
    assert not can(world, "y/a", "x/a", 80, TCP)
    assert not can(world, "y/a", "x/a", 81, UDP)


def test_a_port_without_a_number_allows_every_port_of_its_protocol() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [
        {"ports": [{"protocol": UDP}]}]}))
    assert can(world, "y/a", "x/a", 80, UDP) and can(world, "y/a", "x/a", 81, UDP)
    assert not can(world, "y/a", "x/a", 80, TCP)
    assert not can(world, "y/a", "x/a", 80, SCTP)


def test_end_port_makes_an_inclusive_range() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [
        {"ports": [{"protocol": TCP, "port": 79, "endPort": 80}]}]}))
    assert can(world, "y/a", "x/a", 79) and can(world, "y/a", "x/a", 80)
    assert not can(world, "y/a", "x/a", 81)


def test_end_port_with_a_named_port_is_refused() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [
        {"ports": [{"port": "http", "endPort": 81}]}]}))
    with pytest.raises(InvalidPolicy):
        can(world, "y/a", "x/a")


def test_a_named_port_is_resolved_on_the_destination_pod_with_its_protocol() -> None:
    special = Pod("x", "s", {"pod": "s"}, "10.0.0.9", (ContainerPort(81, TCP, "http"),))
    world = Cluster(NAMESPACES, (*PODS.values(), special), (
        policy("x", {"podSelector": {}, "ingress": [{"ports": [{"port": "alt",
                                                                "protocol": UDP}]}]}),
        policy("x", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}, "q")))
    source = PODS["y/a"]
    assert allowed(world, Connection(source, PODS["x/a"], 80, TCP))
    assert not allowed(world, Connection(source, PODS["x/a"], 81, TCP))
    assert allowed(world, Connection(source, special, 81, TCP))
    assert not allowed(world, Connection(source, special, 80, TCP))
    assert allowed(world, Connection(source, PODS["x/a"], 81, UDP))
    assert not allowed(world, Connection(source, special, 81, UDP))


def test_a_named_egress_port_never_matches_an_address_outside_every_pod() -> None:
    world = cluster(policy("x", {"podSelector": {}, "policyTypes": [EGRESS],
                                 "egress": [{"ports": [{"port": "http"}]}]}))
    assert can(world, "x/a", "y/a", 80)
    assert not can(world, "x/a", "198.51.100.10", 80)


def test_ports_and_peers_of_one_rule_must_both_match() -> None:
    world = cluster(policy("x", {"podSelector": {}, "ingress": [{
        "from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
        "ports": [{"port": 80}]}]}))
    assert can(world, "y/a", "x/a", 80)
    assert not can(world, "y/a", "x/a", 81)
    assert not can(world, "z/a", "x/a", 80)


# ----------------------------------------------------------------- combining


def test_policies_selecting_one_pod_add_up() -> None:
    world = cluster(
        policy("x", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}, "own"),
        policy("x", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}],
             "ports": [{"port": 81}]}]}, "z-to-81"))
    assert reachable_from(world, "x/a", 80) == {"x/b", "x/c"}
    assert reachable_from(world, "x/a", 81) == {"x/b", "x/c", "z/a", "z/b"}
    assert reachable_from(world, "x/b", 81) == {"x/a", "x/c"}


def test_a_connection_needs_both_the_sources_egress_and_the_destinations_ingress() -> None:
    allow_from_x = policy("y", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}]}, "in")
    deny_out_of_x = policy("x", {"podSelector": {"matchLabels": {"pod": "a"}},
                                 "policyTypes": [EGRESS]}, "out")
    world = cluster(allow_from_x, deny_out_of_x)
    assert not can(world, "x/a", "y/a")
    assert can(world, "x/b", "y/a")
    assert not can(world, "z/a", "y/a")


def test_a_policy_in_another_namespace_does_not_select_pods_here() -> None:
    world = cluster(policy("y", {"podSelector": {"matchLabels": {"pod": "a"}}}))
    assert reachable_from(world, "x/a") == EVERYONE_BUT["x/a"]
    assert reachable_from(world, "y/a") == set()
