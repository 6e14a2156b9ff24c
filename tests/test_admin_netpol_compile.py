"""The AdminNetworkPolicy compiler on its own: the order of the layers and rules, Pass,
peers and ports, read off the port groups, address sets and ACLs it produces."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest

from podnet_sync.admin_netpol import (
    DENIED,
    AdminNode,
    AdminPolicy,
    AdminProblem,
    AdminView,
    add_admin_network_policies,
    parse_admin_network_policy,
    parse_baseline_admin_network_policy,
    subject_group,
)
from podnet_sync.cluster import PodView, parse_pod
from podnet_sync.nb_model import DesiredState, GroupAcl
from podnet_sync.netpol import (
    ANP_PRIORITIES,
    BANP_PRIORITIES,
    NP_ALLOW,
    NP_DENY,
    PolicyError,
    PolicyView,
    add_network_policies,
    parse_namespace,
    parse_network_policy,
)


def pod(name: str, ip: str, namespace: str = "shop",
        ports: tuple[tuple[str, int, str], ...] = ()) -> PodView:
    return parse_pod({
        "metadata": {"namespace": namespace, "name": name, "uid": f"u-{name}",
                     "labels": {"app": name}, "annotations": {
                         "ovn.kubernetes.io/allocated": "true",
                         "ovn.kubernetes.io/logical_switch": "ovn-default",
                         "ovn.kubernetes.io/ip_address": ip,
                         "ovn.kubernetes.io/mac_address": "0a:00:00:00:00:01"}},
        "spec": {"nodeName": "node1", "containers": [{"ports": [
            {"name": n, "containerPort": number, "protocol": protocol}
            for n, number, protocol in ports]}]},
    })


WEB = pod("web", "10.16.0.2", ports=(("http", 8080, "TCP"), ("dns", 53, "UDP")))
DB = pod("db", "10.16.0.3", ports=(("http", 9090, "TCP"),))
OPS = pod("tool", "10.16.1.4", namespace="ops")
PODS = [WEB, DB, OPS]
NAMESPACES = {ns.name: ns for ns in (
    parse_namespace({"metadata": {"name": "shop", "labels": {"team": "a"}}}),
    parse_namespace({"metadata": {"name": "ops", "labels": {"team": "b"}}}))}
NODE = AdminNode("node1", (("role", "worker"),),
                 (ipaddress.ip_address("172.18.0.2"), ipaddress.ip_address("100.64.0.2")))
EVERYWHERE: dict[str, Any] = {"namespaces": {}}


def anp(name: str, priority: int, ingress: list[dict[str, Any]] | None = None,
        egress: list[dict[str, Any]] | None = None,
        subject: dict[str, Any] | None = None) -> AdminPolicy:
    return parse_admin_network_policy({
        "metadata": {"name": name, "uid": f"u-{name}"},
        "spec": {"priority": priority, "subject": subject or EVERYWHERE,
                 "ingress": ingress or [], "egress": egress or []}})


def banp(ingress: list[dict[str, Any]] | None = None,
         egress: list[dict[str, Any]] | None = None) -> AdminPolicy:
    return parse_baseline_admin_network_policy({
        "metadata": {"name": "default"},
        "spec": {"subject": EVERYWHERE, "ingress": ingress or [], "egress": egress or []}})


def rule(action: str, peers: list[dict[str, Any]] | None = None, direction: str = "from",
         ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"action": action, direction: peers or [EVERYWHERE]}
    if ports is not None:
        body["ports"] = ports
    return body


def compiled(policies: list[AdminPolicy], baseline: AdminPolicy | None = None
             ) -> tuple[DesiredState, list[AdminProblem]]:
    state = DesiredState()
    problems = add_admin_network_policies(
        state, AdminView(policies, baseline, PODS, NAMESPACES, [NODE]))
    return state, problems


def acls_of(state: DesiredState, policy: AdminPolicy, nd: bool = False) -> list[GroupAcl]:
    """The policy's rules' ACLs (with ``nd``, its neighbour discovery allows too) in the
    order OVN judges them."""
    group = state.port_groups[subject_group(policy)]
    return sorted((acl for acl in group.acls if nd or not acl.key.endswith("/nd")),
                  key=lambda acl: -acl.priority)


def set_members(state: DesiredState, match: str) -> set[str]:
    return {address for name in re.findall(r"\$(\w+)", match)
            for address in state.policy_address_sets[name].addresses}


def test_a_lower_priority_number_and_an_earlier_rule_get_higher_ovn_priorities() -> None:
    late = anp("late", 50, [rule("Allow"), rule("Deny")])
    early = anp("early", 5, [rule("Deny"), rule("Allow")])
    state, problems = compiled([late, early])
    order = [*acls_of(state, early), *acls_of(state, late)]
    priorities = [acl.priority for acl in order]
    assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == 4
    assert all(p in ANP_PRIORITIES and p > NP_ALLOW for p in priorities)
    assert [acl.action for acl in order] == ["drop", "allow-related", "allow-related", "drop"]
    assert problems == []


def test_a_subject_port_group_holds_the_pods_of_the_selected_namespaces() -> None:
    item = anp("ops-only", 1, [rule("Deny")], subject={"namespaces": {
        "matchLabels": {"team": "b"}}})
    state, _ = compiled([item])
    assert state.port_groups[subject_group(item)].ports == ("tool.ops",)


def test_a_pass_has_no_acl_and_every_later_anp_rule_excludes_its_match() -> None:
    first = anp("first", 1, [rule("Pass", [{"namespaces": {"matchLabels": {"team": "b"}}}]),
                             rule("Deny")])
    second = anp("second", 2, [rule("Allow")])
    state, _ = compiled([first, second], banp([rule("Deny")]))
    deny, = acls_of(state, first)
    assert deny.action == "drop" and deny.priority < ANP_PRIORITIES.stop - 1
    body = deny.match.removesuffix(f" && {DENIED}")
    passed = body[body.index(" && ((ip4") + len(" && "):]  # the exclusion, ANDed last
    # OVN refuses a ! over a port name, a protocol or a family: none is negated
    for refused in ("!(outport", "!(inport", "!ip4", "!ip6", "!tcp", "!udp", "!(ip.proto"):
        assert refused not in passed
    peers = re.findall(r"ip4\.src == \$(\w+)", passed)
    assert {a for name in peers for a in state.policy_address_sets[name].addresses} == {
        "10.16.1.4"}
    assert "(ip4 && !(ip4.dst == $" in passed  # the subject by its addresses
    allow, = acls_of(state, second)
    assert allow.match.endswith(f" && {passed}")
    baseline, = acls_of(state, banp([rule("Deny")]))
    assert "!(" not in baseline.match.replace(DENIED, "")


def test_the_baseline_sits_below_networkpolicy_isolation_and_keeps_its_rule_order() -> None:
    baseline = banp([rule("Allow", [{"namespaces": {"matchLabels": {"team": "a"}}}]),
                     rule("Deny")])
    state, _ = compiled([], baseline)
    add_network_policies(state, PolicyView(
        [parse_network_policy({"metadata": {"namespace": "shop", "name": "np"},
                               "spec": {"podSelector": {}}})], PODS, NAMESPACES))
    allow, deny = acls_of(state, baseline)
    assert BANP_PRIORITIES.start <= deny.priority < allow.priority < NP_DENY
    assert (allow.action, deny.action) == ("allow-related", "drop")


def test_a_deny_drops_new_connections_only_and_never_neighbour_discovery() -> None:
    state, _ = compiled([anp("deny", 1, [rule("Deny")])])
    nd, deny = acls_of(state, anp("deny", 1, [rule("Deny")]), nd=True)
    assert deny.match.endswith(f"&& {DENIED}") and "nd" not in deny.match
    assert (nd.priority, nd.action) == (ANP_PRIORITIES.stop - 1, "allow")
    assert nd.match.endswith("&& (nd || nd_rs || nd_ra)")


def test_a_named_port_resolves_on_each_destination_pod_with_its_own_protocol() -> None:
    item = anp("named", 1, [rule("Allow", ports=[{"namedPort": "http"},
                                                 {"namedPort": "dns"}])])
    state, _ = compiled([item])
    allow, = acls_of(state, item)
    for protocol, number, ip in (("tcp", 8080, "10.16.0.2"), ("tcp", 9090, "10.16.0.3"),
                                 ("udp", 53, "10.16.0.2")):
        clause = re.search(rf"\(\(ip4\.dst == \$(\w+) \|\| [^)]*\) && {protocol}\.dst == "
                           rf"{number}\)", allow.match)
        assert clause is not None, allow.match
        assert state.policy_address_sets[clause.group(1)].addresses == (ip,)


def test_a_named_port_no_destination_has_leaves_the_rule_out() -> None:
    item = anp("nothing", 1, [rule("Deny", ports=[{"namedPort": "gopher"}])])
    state, _ = compiled([item])
    assert acls_of(state, item) == []


def test_port_numbers_and_ranges_become_protocol_clauses() -> None:
    item = anp("ports", 1, egress=[rule("Allow", direction="to", ports=[
        {"portNumber": {"protocol": "UDP", "port": 53}},
        {"portRange": {"protocol": "SCTP", "start": 100, "end": 200}}])])
    state, _ = compiled([item])
    allow, = acls_of(state, item)
    assert allow.direction == "from-lport" and ("apply-after-lb", "true") in allow.options
    assert "(udp.dst == 53 || (sctp.dst >= 100 && sctp.dst <= 200))" in allow.match


def test_egress_to_nodes_and_networks_matches_node_addresses_and_cidrs() -> None:
    item = anp("out", 1, egress=[rule("Deny", [
        {"nodes": {"matchLabels": {"role": "worker"}}},
        {"networks": ["192.168.0.0/16", "2001:db8::1/64"]}], direction="to")])
    state, _ = compiled([item])
    deny, = acls_of(state, item)
    assert set_members(state, deny.match) == {"172.18.0.2", "100.64.0.2"}
    assert "ip4.dst == 192.168.0.0/16 || ip6.dst == 2001:db8::/64" in deny.match


def test_anps_sharing_a_priority_are_each_reported() -> None:
    _, problems = compiled([anp("a", 3, [rule("Allow")]), anp("b", 3, [rule("Deny")])])
    assert sorted(p.name for p in problems) == ["a", "b"]
    assert {p.reason for p in problems} == {"SamePriority"}
    assert not any(p.skipped for p in problems)


def test_an_anp_beyond_the_band_is_skipped_whole_and_reported() -> None:
    full = [anp(f"p{n:03}", n, [rule("Allow")] * (100 if n < 99 else 99)) for n in range(100)]
    late = anp("late", 999, [rule("Deny")])
    state, problems = compiled([*full, late])
    assert subject_group(late) not in state.port_groups
    assert [(p.name, p.skipped) for p in problems] == [("late", True)]
    assert min(acl.priority for acl in acls_of(state, full[-1])) == ANP_PRIORITIES.start


def test_names_in_matches_never_carry_the_policys_own_strings() -> None:
    item = anp("x || ip", 1, [rule("Deny")])
    state, _ = compiled([item])
    deny, = acls_of(state, item)
    assert "x || ip" not in deny.match
    assert re.fullmatch(r"npanp_[A-Za-z0-9_]+", subject_group(item))


@pytest.mark.parametrize(("spec", "field"), [
    ({"priority": 1001, "subject": EVERYWHERE}, "spec.priority"),
    ({"priority": 1, "subject": {"namespaces": {}, "pods": {}}}, "spec.subject"),
    ({"priority": 1, "subject": {"pods": {"podSelector": {}}}},
     "spec.subject.pods.namespaceSelector"),
    ({"priority": 1, "subject": EVERYWHERE, "ingress": [{"action": "Drop", "from": [{}]}]},
     "spec.ingress[0].action"),
    ({"priority": 1, "subject": EVERYWHERE, "ingress": [{"action": "Allow", "from": [
        {"networks": ["10.0.0.0/8"]}]}]}, "spec.ingress[0].from[0]"),
    ({"priority": 1, "subject": EVERYWHERE, "egress": [{"action": "Allow", "to": [
        {"networks": ["10.0.0.0/33"]}]}]}, "spec.egress[0].to[0].networks[0]"),
    ({"priority": 1, "subject": EVERYWHERE, "egress": [{"action": "Allow", "to": [
        EVERYWHERE], "ports": [{"portRange": {"start": 9, "end": 8}}]}]},
     "spec.egress[0].ports[0].portRange.end"),
    ({"priority": 1, "subject": EVERYWHERE, "egress": [{"action": "Allow", "to": []}]},
     "spec.egress[0].to"),
])
def test_a_policy_that_cannot_compile_is_refused_naming_the_field(
    spec: dict[str, Any], field: str,
) -> None:
    with pytest.raises(PolicyError, match=re.escape(field)):
        parse_admin_network_policy({"metadata": {"name": "bad"}, "spec": spec})


def test_the_baseline_must_be_named_default_and_cannot_pass() -> None:
    with pytest.raises(PolicyError, match=re.escape("metadata.name")):
        parse_baseline_admin_network_policy({"metadata": {"name": "other"},
                                             "spec": {"subject": EVERYWHERE}})
    with pytest.raises(PolicyError, match=re.escape("spec.ingress[0].action")):
        banp([rule("Pass")])
