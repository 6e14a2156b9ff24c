"""Kube-OVN's Subnet ``spec.acls``: the match is read by a whitelist parser and printed
again, hostile matches are refused naming the field, the value and the reason, and the
ACLs become rows on the subnet's switch in podnet's band."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipam import errors
from ipam.cli import subnet_fields
from ipam.subnet import parse_subnet
from ipam.subnet_acl import ACLS_MAX, MATCH_MAX, SubnetAcl, parse_acls, parse_match
from podnet_sync.netpol import BANP_PRIORITIES, NP_DENY
from podnet_sync.topology import (
    PRIORITY_PRIVATE_ALLOW,
    SUBNET_ACL_PRIORITIES,
    ClusterView,
    desired_state,
)

FIELD = "spec.acls[1].match"


def subnet(**spec: Any) -> dict[str, Any]:
    return {"kind": "Subnet", "metadata": {"name": "acl"},
            "spec": {"cidrBlock": "10.10.0.0/24", **spec}}


def acl(match: str, action: str = "drop", direction: str = "to-lport",
        priority: int = 1002) -> dict[str, Any]:
    return {"action": action, "direction": direction, "match": match, "priority": priority}


EXAMPLE = [acl("ip4.dst == 10.10.0.2 && ip"),
           acl("ip4.src == 10.10.0.2 && ip", "allow-related", "from-lport")]


@pytest.mark.parametrize(("given", "printed"), [
    ("ip4.dst == 10.10.0.2 && ip", "ip4.dst == 10.10.0.2 && ip"),
    ("ip4.src==10.0.0.5/8", "ip4.src == 10.0.0.0/8"),
    ("ip6.dst == {FE80::1, 2001:DB8::/32}", "ip6.dst == {fe80::1, 2001:db8::/32}"),
    ("tcp && (tcp.dst >= 80 && tcp.dst <= 90)", "tcp && (tcp.dst >= 80 && tcp.dst <= 90)"),
    ("!(udp.dst == 53) && eth.src == 0A:58:00:00:00:01",
     "!(udp.dst == 53) && eth.src == 0a:58:00:00:00:01"),
    ("!(!tcp) && !(tcp.dst == 22)", "!(!(tcp)) && !(tcp.dst == 22)"),
    ("!!tcp && !udp.dst == 53", "!(!(tcp)) && !(udp.dst == 53)"),
    ("!(ip.proto != 6) && icmp6.code == {0, 1}", "!(ip.proto != 6) && icmp6.code == {0, 1}"),
    ("ip4.src == 10.0.0.1 && tcp || icmp4.type == 8",
     "(ip4.src == 10.0.0.1 && tcp) || icmp4.type == 8"),
    ("ip4.dst != {10.1.0.0/16, 10.2.0.0/16}", "ip4.dst != {10.1.0.0/16, 10.2.0.0/16}"),
    ("arp || icmp6 || sctp.src < 1024 || ip.proto == 47 || ip.ttl == 1",
     "arp || icmp6 || sctp.src < 1024 || ip.proto == 47 || ip.ttl == 1"),
])
def test_an_accepted_match_is_printed_again_canonically(given: str, printed: str) -> None:
    assert parse_match(given, FIELD) == printed
    assert parse_match(printed, FIELD) == printed  # the worker's second check agrees


@pytest.mark.parametrize(("match", "reason"), [
    ("ip4.src == $podnet_np_nodes_ip4", "address set"),
    ("outport == @np_shop_web_0123", "port group"),
    ('inport == "web.shop"', "quoted string"),
    ("inport == 1", "inport"),
    ("outport != 2", "outport"),
    ("reg0[1] == 1", "registers"),
    ("xxreg0 == 1", "registers"),
    ("ct.est", "connection tracking"),
    ("ct_mark.blocked == 1", "connection tracking"),
    ("ct_label.label == 5", "connection tracking"),
    ("is_chassis_resident(1)", "is_chassis_resident"),
    ("ip4.dst == 10.0.0.1; drop", "';'"),
    ("ip4.dst == 10.0.0.1) || (1", "')'"),
    ("(ip4.dst == 10.0.0.1", "')'"),
    ("ip4.dst == 10.0.0.1 ||", "ends"),
    ("ip4.dst == fe80::1", "IPv4"),
    ("ip6.src == 10.0.0.1", "IPv6"),
    ("tcp.dst == 65536", "0-65535"),
    ("tcp.dst == 0x50", "0-65535"),
    ("tcp.dst == -1", "'-'"),
    ("icmp4.type == 256", "0-255"),
    ("ip4.src < 10.0.0.1", "only ports are ordered"),
    ("ip.ttl < 2", "only ports are ordered"),
    ("icmp4.type != 3", "only for equality"),
    ("!(ip.proto == 6)", "only for equality"),
    ("ip.proto != {6, 17}", "only for equality"),
    ("eth.src == 0a:58:00:00:00", "MAC"),
    ("ip4.dst == 010.0.0.1", "IPv4"),
    ("tcp.dst == {80, $ports}", "address set"),
    ("ip == 1", "field ip"),
    ("!ip4", "only positively"),
    ("ip4.src == 10.0.0.1 && !(tcp || udp.dst == 53)", "tests tcp under a '!'"),
    ("!(!(!arp))", "only positively"),
    ("nd.target == ::1", "field nd.target"),
    ("", "non-empty"),
    ("ip4.dst == 1.2.3.4\n&& outport == @x", "port group"),
])
def test_a_hostile_or_unknown_match_is_refused_naming_field_value_and_reason(
    match: str, reason: str
) -> None:
    with pytest.raises(errors.MalformedValue) as caught:
        parse_acls([acl("ip"), acl(match)])
    assert caught.value.field == FIELD
    assert reason in caught.value.reason
    assert str(caught.value).startswith(FIELD)


def test_a_match_longer_than_the_bound_or_nested_too_deep_is_refused() -> None:
    long = " || ".join(["ip4.src == 10.0.0.1"] * (MATCH_MAX // 20 + 1))
    with pytest.raises(errors.MalformedValue, match="longer than"):
        parse_match(long, FIELD)
    with pytest.raises(errors.MalformedValue, match="nests deeper"):
        parse_match("(" * 40 + "ip" + ")" * 40, FIELD)


def test_a_match_that_would_outgrow_the_bounds_once_printed_is_refused() -> None:
    # each "a && b ||" gains parentheses when printed
    many = " || ".join(["tcp && udp"] * 70)
    assert len(many) <= MATCH_MAX
    with pytest.raises(errors.MalformedValue, match="once printed"):
        parse_match(many, FIELD)
    deep = "(" * 16 + "tcp && udp || ip" + ")" * 16
    with pytest.raises(errors.MalformedValue, match="nests deeper"):
        parse_match(deep, FIELD)


@pytest.mark.parametrize(("entry", "field", "reason"), [
    (acl("ip", action="pass"), "spec.acls[0].action", "must be one of"),
    (acl("ip", direction="both"), "spec.acls[0].direction", "from-lport or to-lport"),
    (acl("ip", priority=2000), "spec.acls[0].priority", "0-1999"),
    (acl("ip", priority=-1), "spec.acls[0].priority", "0-1999"),
    ({**acl("ip"), "priority": "1002"}, "spec.acls[0].priority", "integer"),
    ({**acl("ip"), "priority": True}, "spec.acls[0].priority", "integer"),
    ({**acl("ip"), "tier": 1}, "spec.acls[0].tier", "not an ACL field"),
    ("drop", "spec.acls[0]", "must be an object"),
])
def test_action_direction_and_priority_are_checked(
    entry: Any, field: str, reason: str
) -> None:
    with pytest.raises(errors.MalformedValue) as caught:
        parse_acls([entry])
    assert (caught.value.field, reason in caught.value.reason) == (field, True)


def test_a_subnet_has_a_bounded_number_of_acls() -> None:
    parse_acls([acl("ip")] * ACLS_MAX)
    with pytest.raises(errors.MalformedValue, match=f"more than {ACLS_MAX}"):
        parse_acls([acl("ip")] * (ACLS_MAX + 1))


def test_the_kube_ovn_example_parses_and_survives_the_store_round_trip() -> None:
    spec = parse_subnet(subnet(allowEWTraffic=False, acls=EXAMPLE))
    assert spec.acls == (SubnetAcl("drop", "to-lport", 1002, "ip4.dst == 10.10.0.2 && ip"),
                         SubnetAcl("allow-related", "from-lport", 1002,
                                   "ip4.src == 10.10.0.2 && ip"))
    stored = subnet(**{key: value for key, value in spec.policy_fields().items()})
    assert parse_subnet(stored).acls == spec.acls


def test_acls_on_a_private_subnet_are_refused_naming_why() -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        parse_subnet(subnet(private=True, acls=EXAMPLE))
    assert caught.value.field == "spec.acls" and "private" in caught.value.reason


def test_the_acls_sit_on_the_switch_between_the_private_rows_and_network_policy() -> None:
    state = desired_state(ClusterView([parse_subnet(subnet(acls=EXAMPLE))], [], []))
    drop, allow = state.acls["acl/acls/0"], state.acls["acl/acls/1"]
    assert (drop.switch, drop.priority, drop.direction, drop.action) == (
        "acl", 5002, "to-lport", "drop")
    assert drop.match == "(ip4.dst == 10.10.0.2 && ip) && (!ct.trk || !ct.est)"
    assert (allow.priority, allow.direction, allow.match, allow.action) == (
        5002, "from-lport", "ip4.src == 10.10.0.2 && ip", "allow-related")
    assert SUBNET_ACL_PRIORITIES.start > PRIORITY_PRIVATE_ALLOW
    assert SUBNET_ACL_PRIORITIES.stop <= NP_DENY and BANP_PRIORITIES.stop <= PRIORITY_PRIVATE_ALLOW


def test_allow_ew_traffic_adds_kube_ovns_same_subnet_allows_above_the_acls() -> None:
    dual = subnet(cidrBlock="10.10.0.0/24,fd00:10::/120", allowEWTraffic=True, acls=EXAMPLE)
    state = desired_state(ClusterView([parse_subnet(dual)], [], []))
    allows = [a for key, a in state.acls.items() if "/allow-ew/" in key]
    assert {(a.direction, a.match) for a in allows} == {
        (direction, f"ip{f}.src == {cidr} && ip{f}.dst == {cidr}")
        for direction in ("to-lport", "from-lport")
        for f, cidr in ((4, "10.10.0.0/24"), (6, "fd00:10::/120"))}
    assert all(a.priority == 5900 and a.action == "allow" for a in allows)
    alone = desired_state(ClusterView([parse_subnet(subnet(allowEWTraffic=True))], [], []))
    assert not alone.acls  # Kube-OVN adds them only to a subnet with ACLs


def test_the_worker_leaves_out_an_acl_whose_stored_match_is_refused() -> None:
    spec = parse_subnet(subnet(acls=EXAMPLE))
    forged = type(spec)(**{**spec.__dict__, "acls": (
        spec.acls[0], SubnetAcl("allow", "to-lport", 5, "outport == @np_x"))})
    state = desired_state(ClusterView([forged], [], []))
    assert list(state.acls) == ["acl/acls/0"]
    assert any("spec.acls[1].match" in reason and "port group" in reason
               for reason in state.skipped)


PIECES = ["ip", "ip4", "tcp", "udp", "icmp6", "ip4.src", "ip6.dst", "tcp.dst", "eth.src",
          "==", "!=", "<", ">=", "&&", "||", "!", "(", ")", "{", "}", ",", "10.0.0.1",
          "10.0.0.0/8", "fe80::1", "80", "70000", "0a:58:00:00:00:01", "$set", "@group",
          '"port"', "inport", "outport", "reg0", "ct.est", "ct_mark.blocked", ";", "\n",
          "next;", "drop", "1.2.3.4/33", "[0]"]
FORBIDDEN = ("$", "@", '"', "inport", "outport", "reg", "ct.", "ct_", ";", "\n", "[")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=25),
       st.sampled_from([" ", "", "  "]))
def test_whatever_the_tokens_an_accepted_match_holds_only_whitelisted_text_and_prints_back(
    pieces: list[str], glue: str
) -> None:
    text = glue.join(pieces)
    try:
        printed = parse_match(text, FIELD)
    except errors.MalformedValue as exc:
        assert exc.field == FIELD and exc.reason
        return
    assert not any(bad in printed for bad in FORBIDDEN), printed
    assert parse_match(printed, FIELD) == printed


def test_podnet_subnets_shows_a_subnets_acls_one_per_entry() -> None:
    spec = parse_subnet(subnet(acls=EXAMPLE))
    fields = dict(subnet_fields(spec.policy_fields()))
    assert fields["ACLs"] == ("to-lport 1002 ip4.dst == 10.10.0.2 && ip drop; "
                              "from-lport 1002 ip4.src == 10.10.0.2 && ip allow-related")
    assert fields["Allow EW traffic"] == "no"
    assert dict(subnet_fields({}))["ACLs"] == "-"
