"""The NetworkPolicy compiler on its own: each rule of the API's semantics, read off the
port groups, address sets and ACLs it produces."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

import pytest

from podnet_sync.cluster import PodView, parse_pod
from podnet_sync.nb_model import DesiredState, GroupAcl, PortGroup
from podnet_sync.netpol import (
    EGRESS,
    INGRESS,
    NP_ALLOW,
    NP_DENY,
    NP_POLICY_DENY,
    NamespaceView,
    NetworkPolicy,
    PolicyError,
    PolicyView,
    add_network_policies,
    isolation_group,
    parse_namespace,
    parse_network_policy,
    parse_selector,
    policy_group,
)

NODE_IP = ipaddress.ip_address("100.64.0.2")


def pod(name: str, ip: str, labels: dict[str, str] | None = None, namespace: str = "shop",
        ports: dict[str, int] | None = None, host_network: bool = False) -> PodView:
    return parse_pod({
        "metadata": {"namespace": namespace, "name": name, "uid": f"u-{name}",
                     "labels": labels or {}, "annotations": {
                         "ovn.kubernetes.io/allocated": "true",
                         "ovn.kubernetes.io/logical_switch": "ovn-default",
                         "ovn.kubernetes.io/ip_address": ip,
                         "ovn.kubernetes.io/mac_address": "0a:00:00:00:00:01"}},
        "spec": {"nodeName": "node1", "hostNetwork": host_network, "containers": [
            {"ports": [{"name": n, "containerPort": p} for n, p in (ports or {}).items()]}]},
    })


def policy(spec: dict[str, Any], name: str = "p", namespace: str = "shop",
           annotations: dict[str, str] | None = None) -> NetworkPolicy:
    return parse_network_policy({"metadata": {"namespace": namespace, "name": name,
                                              "annotations": annotations or {}},
                                 "spec": spec})


def compiled(policies: list[NetworkPolicy], pods: list[PodView],
             namespaces: Sequence[NamespaceView] = ()) -> DesiredState:
    state = DesiredState()
    add_network_policies(state, PolicyView(policies, pods, {n.name: n for n in namespaces},
                                           [NODE_IP]))
    return state


def group_of(state: DesiredState, item: NetworkPolicy) -> PortGroup:
    return state.port_groups[policy_group(item)]


def allows(state: DesiredState, item: NetworkPolicy, direction: str = "to-lport") -> list[GroupAcl]:
    return [acl for acl in group_of(state, item).acls
            if acl.direction == direction and acl.action != "drop"]


def isolated(state: DesiredState, namespace: str, kind: str) -> tuple[str, ...]:
    group = state.port_groups.get(isolation_group(namespace, kind))
    return group.ports if group else ()


def set_members(state: DesiredState, match: str) -> set[str]:
    """Every address of the address sets a match refers to."""
    names = re.findall(r"\$(\w+)", match)
    return {a for name in names for a in state.policy_address_sets[name].addresses}


WEB = pod("web", "10.16.0.2", {"app": "web"})
DB = pod("db", "10.16.0.3", {"app": "db", "tier": "data"})
OTHER = pod("other", "10.16.0.4", {"app": "web"}, namespace="ops")
NAMESPACES = [parse_namespace({"metadata": {"name": "shop", "labels": {"team": "a"}}}),
              parse_namespace({"metadata": {"name": "ops", "labels": {"team": "b"}}})]


def test_without_policies_there_are_no_rows() -> None:
    state = compiled([], [WEB, DB])
    assert not state.port_groups and not state.policy_address_sets and not state.meters


def test_a_policy_without_egress_rules_isolates_ingress_only() -> None:
    state = compiled([policy({"podSelector": {}, "ingress": [{}]})], [WEB, DB])
    assert set(isolated(state, "shop", INGRESS)) == {"web.shop", "db.shop"}
    assert isolated(state, "shop", EGRESS) == ()


def test_egress_rules_make_a_policy_isolate_egress_too_by_default() -> None:
    item = policy({"podSelector": {}, "egress": [{}]})
    assert item.types == {INGRESS, EGRESS}
    state = compiled([item], [WEB])
    assert isolated(state, "shop", EGRESS) == ("web.shop",)


def test_explicit_policy_types_win_and_rules_of_other_directions_are_ignored() -> None:
    item = policy({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]})
    state = compiled([item], [WEB])
    assert isolated(state, "shop", INGRESS) == ()
    assert isolated(state, "shop", EGRESS) == ("web.shop",)
    assert allows(state, item) == []


def test_an_empty_rule_list_denies_everything_in_that_direction() -> None:
    item = policy({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    state = compiled([item], [WEB])
    assert group_of(state, item).acls == ()
    drops = [acl for group in state.port_groups.values() for acl in group.acls
             if acl.action == "drop"]
    assert {acl.direction for acl in drops} == {"to-lport", "from-lport"}
    assert all(acl.priority == NP_DENY and acl.match.endswith("&& ip && !ct.est")
               for acl in drops)


def test_an_empty_pod_selector_selects_every_pod_of_the_policys_namespace_only() -> None:
    item = policy({"podSelector": {}})
    assert group_of(compiled([item], [WEB, DB, OTHER]), item).ports == ("db.shop", "web.shop")


def test_pods_a_policy_does_not_select_stay_unisolated() -> None:
    state = compiled([policy({"podSelector": {"matchLabels": {"app": "db"}}})], [WEB, DB])
    assert isolated(state, "shop", INGRESS) == ("db.shop",)


def test_host_network_pods_are_never_selected() -> None:
    host = pod("agent", "192.168.0.5", {"app": "web"}, host_network=True)
    state = compiled([policy({"podSelector": {}})], [WEB, host])
    assert isolated(state, "shop", INGRESS) == ("web.shop",)


@pytest.mark.parametrize(("expression", "selected"), [
    ({"key": "app", "operator": "In", "values": ["db", "cache"]}, {"db"}),
    ({"key": "app", "operator": "NotIn", "values": ["db"]}, {"web", "bare"}),
    ({"key": "tier", "operator": "Exists"}, {"db"}),
    ({"key": "tier", "operator": "DoesNotExist"}, {"web", "bare"}),
])
def test_match_expressions_select_as_the_api_defines(expression: dict[str, Any],
                                                     selected: set[str]) -> None:
    selector = parse_selector({"matchExpressions": [expression]}, "spec.podSelector")
    pods = {"web": {"app": "web"}, "db": {"app": "db", "tier": "data"}, "bare": {}}
    assert {name for name, labels in pods.items() if selector.matches(labels)} == selected


def test_match_labels_and_match_expressions_must_all_hold() -> None:
    selector = parse_selector({"matchLabels": {"app": "db"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["cache"]}]}, "s")
    assert not selector.matches({"app": "db", "tier": "data"})
    assert selector.matches({"app": "db", "tier": "cache"})


def test_a_pod_selector_peer_alone_means_pods_of_the_policys_namespace() -> None:
    item = policy({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "web"}}}]}]})
    (acl,) = allows(compiled([item], [WEB, DB, OTHER], NAMESPACES), item)
    assert set_members(compiled([item], [WEB, DB, OTHER], NAMESPACES), acl.match) == {"10.16.0.2"}


def test_a_namespace_selector_peer_alone_means_every_pod_of_those_namespaces() -> None:
    item = policy({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]})
    state = compiled([item], [WEB, DB, OTHER], NAMESPACES)
    (acl,) = allows(state, item)
    assert set_members(state, acl.match) == {"10.16.0.4"}


def test_both_selectors_in_one_peer_are_anded_and_separate_peers_are_ored() -> None:
    anded = policy({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db"}}}]}]})
    ored = policy({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "b"}}},
        {"podSelector": {"matchLabels": {"app": "db"}}}]}]}, name="q")
    state = compiled([anded, ored], [WEB, DB, OTHER], NAMESPACES)
    assert set_members(state, allows(state, anded)[0].match) == {"10.16.0.3"}
    assert set_members(state, allows(state, ored)[0].match) == {"10.16.0.3", "10.16.0.4"}


def test_the_namespace_name_label_is_there_even_when_the_namespace_lacks_it() -> None:
    item = policy({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "ops"}}}]}]})
    state = compiled([item], [WEB, OTHER])  # no Namespace objects at all
    assert set_members(state, allows(state, item)[0].match) == {"10.16.0.4"}


def test_a_rule_without_peers_allows_every_source() -> None:
    item = policy({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]})
    (acl,) = allows(compiled([item], [WEB]), item)
    assert "src" not in acl.match and acl.match.endswith("tcp.dst == 80")


def test_a_rule_without_peers_or_ports_allows_all_ip() -> None:
    item = policy({"podSelector": {}, "ingress": [{}]})
    (acl,) = allows(compiled([item], [WEB]), item)
    assert acl.match == f"outport == @{policy_group(item)} && ip"


def test_an_ip_block_with_except_is_written_into_the_match() -> None:
    item = policy({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {
        "cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}]}]})
    (acl,) = allows(compiled([item], [WEB]), item)
    assert "(ip4.src == 172.17.0.0/16 && ip4.src != {172.17.1.0/24})" in acl.match


def test_ports_by_number_range_and_protocol() -> None:
    item = policy({"podSelector": {}, "ingress": [{"ports": [
        {"port": 80}, {"protocol": "UDP", "port": 5000, "endPort": 5010},
        {"protocol": "SCTP"}]}]})
    (acl,) = allows(compiled([item], [WEB]), item)
    assert "tcp.dst == 80 || (udp.dst >= 5000 && udp.dst <= 5010) || sctp" in acl.match


def test_an_ingress_named_port_resolves_per_selected_pod_grouped_by_number() -> None:
    a = pod("a", "10.16.0.10", {"app": "api"}, ports={"http": 8080})
    b = pod("b", "10.16.0.11", {"app": "api"}, ports={"http": 8080})
    c = pod("c", "10.16.0.12", {"app": "api"}, ports={"http": 9090})
    item = policy({"podSelector": {"matchLabels": {"app": "api"}},
                   "ingress": [{"ports": [{"port": "http"}]}]})
    state = compiled([item], [a, b, c])
    by_port = {acl.match.rsplit("tcp.dst == ", 1)[1]: set_members(state, acl.match)
               for acl in allows(state, item)}
    assert by_port == {"8080": {"10.16.0.10", "10.16.0.11"}, "9090": {"10.16.0.12"}}


def test_a_named_port_of_another_protocol_does_not_resolve() -> None:
    a = pod("a", "10.16.0.10", {"app": "api"}, ports={"dns": 53})  # TCP in the pod
    item = policy({"podSelector": {}, "ingress": [{"ports": [{"port": "dns",
                                                              "protocol": "UDP"}]}]})
    assert allows(compiled([item], [a]), item) == []


def test_an_egress_named_port_resolves_per_destination_pod_of_the_peer() -> None:
    client = pod("client", "10.16.0.9", {"app": "client"})
    a = pod("a", "10.16.0.10", {"app": "api"}, ports={"http": 8080})
    c = pod("c", "10.16.0.12", {"app": "api"}, ports={"http": 9090})
    item = policy({"podSelector": {"matchLabels": {"app": "client"}}, "egress": [{
        "to": [{"podSelector": {"matchLabels": {"app": "api"}}}],
        "ports": [{"port": "http"}]}]})
    state = compiled([item], [client, a, c])
    by_port = {acl.match.rsplit("tcp.dst == ", 1)[1]: set_members(state, acl.match)
               for acl in allows(state, item, "from-lport")}
    assert by_port == {"8080": {"10.16.0.10"}, "9090": {"10.16.0.12"}}


def test_policies_add_up_as_allows_of_one_priority_above_the_isolation_drop() -> None:
    first = policy({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}, name="a")
    second = policy({"podSelector": {}, "ingress": [{"ports": [{"port": 443}]}]}, name="b")
    state = compiled([first, second], [WEB])
    found = allows(state, first) + allows(state, second)
    assert {acl.priority for acl in found} == {NP_ALLOW} and NP_ALLOW > NP_DENY
    assert all(acl.action == "allow-related" for acl in found)


def test_egress_is_judged_after_load_balancing_and_ingress_on_the_way_out() -> None:
    item = policy({"podSelector": {}, "ingress": [{}], "egress": [{}]})
    state = compiled([item], [WEB])
    (egress,) = allows(state, item, "from-lport")
    (ingress,) = allows(state, item, "to-lport")
    assert dict(egress.options) == {"apply-after-lb": "true"}
    assert egress.match.startswith("inport == @") and ingress.match.startswith("outport == @")


def test_isolation_lets_neighbour_discovery_and_the_nodes_health_checks_through() -> None:
    state = compiled([policy({"podSelector": {}})], [WEB])
    group = state.port_groups[isolation_group("shop", INGRESS)]
    matches = {acl.match.split(" && ", 1)[1]: acl for acl in group.acls}
    assert matches["(nd || nd_rs || nd_ra)"].priority == NP_ALLOW
    nodes = matches["(ip4.src == $podnet_np_nodes_ip4 || ip6.src == $podnet_np_nodes_ip6)"]
    assert nodes.action == "allow-related"
    assert state.policy_address_sets["podnet_np_nodes_ip4"].addresses == ("100.64.0.2",)


def test_user_strings_never_reach_a_match() -> None:
    item = policy({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]},
                  name='x" || 1 == 1 || "', namespace="shop")
    state = compiled([item], [WEB])
    for group in state.port_groups.values():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", group.name)
        for acl in group.acls:
            assert '"' not in acl.match and "1 == 1" not in acl.match
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
               for name in state.policy_address_sets)


@pytest.mark.parametrize(("spec", "field"), [
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
     "spec.podSelector.matchExpressions[0].operator"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
     "spec.podSelector.matchExpressions[0].values"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                             "except": ["11.0.0.0/16"]}}]}]},
     "spec.ingress[0].from[0].ipBlock.except[0]"),
    ({"podSelector": {}, "egress": [{"ports": [{"port": "http", "endPort": 90}]}]},
     "spec.egress[0].ports[0].endPort"),
    ({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]},
     "spec.ingress[0].ports[0].protocol"),
    ({"podSelector": {}, "ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]"),
])
def test_an_invalid_policy_is_refused_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(field)):
        policy(spec)


def test_kube_ovn_log_annotations_log_allows_and_drops_through_a_meter() -> None:
    item = policy({"podSelector": {}, "ingress": [{}]}, annotations={
        "ovn.kubernetes.io/enable_log": "true",
        "ovn.kubernetes.io/log_acl_actions": "allow,drop",
        "ovn.kubernetes.io/acl_log_meter_rate": "5"})
    state = compiled([item], [WEB])
    (allow,) = allows(state, item)
    drop = next(acl for acl in state.port_groups[policy_group(item)].acls
                if acl.action == "drop")
    namespace_drop = next(acl for acl in state.port_groups[isolation_group("shop", INGRESS)].acls
                          if acl.action == "drop")
    assert (allow.log, allow.meter, allow.name) == (True, "podnet-acl-log-5", "np:shop/p:in0")
    assert (drop.log, drop.severity, drop.name) == (True, "warning", "np:shop/p:deny-in")
    assert drop.meter == "podnet-acl-log-5" and drop.priority == NP_POLICY_DENY
    assert NP_DENY < drop.priority < NP_ALLOW and not namespace_drop.log
    assert state.meters["podnet-acl-log-5"].rate == 5 and state.meters["podnet-acl-log-5"].fair


def test_the_namespace_acl_logging_annotation_sets_the_severities() -> None:
    namespace = parse_namespace({"metadata": {"name": "shop", "annotations": {
        "k8s.ovn.org/acl-logging": '{"deny": "alert", "allow": "notice"}'}}})
    item = policy({"podSelector": {}, "ingress": [{}]})
    state = compiled([item], [WEB], [namespace])
    (allow,) = allows(state, item)
    drop = next(acl for acl in state.port_groups[isolation_group("shop", INGRESS)].acls
                if acl.action == "drop")
    assert (allow.severity, drop.severity) == ("notice", "alert")


def test_a_logging_policys_drop_takes_the_namespaces_deny_severity() -> None:
    namespace = parse_namespace({"metadata": {"name": "shop", "annotations": {
        "k8s.ovn.org/acl-logging": '{"deny": "alert"}'}}})
    item = policy({"podSelector": {}, "ingress": [{}]}, annotations={
        "ovn.kubernetes.io/enable_log": "true"})
    state = compiled([item], [WEB], [namespace])
    drop = next(acl for acl in state.port_groups[policy_group(item)].acls
                if acl.action == "drop")
    assert (drop.severity, drop.name, drop.meter) == (
        "alert", "np:shop/p:deny-in", "podnet-acl-log-20")


def test_acl_names_fit_ovns_63_characters() -> None:
    item = policy({"podSelector": {}, "ingress": [{}]}, name="n" * 200, namespace="s" * 60,
                  annotations={"ovn.kubernetes.io/enable_log": "true",
                               "ovn.kubernetes.io/log_acl_actions": "allow"})
    (allow,) = allows(compiled([item], [pod("w", "10.16.0.2", namespace="s" * 60)]), item)
    assert allow.log and len(allow.name) <= 63
