"""``podnet trace``'s reading of ``ovn-trace``: summaries of real output.

The files in ``tests/data/ovn-trace/`` are the detailed output of ``ovn-trace`` 23.03 for
packets in a lab (``podnet up`` with the examples, plus a private subnet ``vault`` that
admits only ``shop`` and a second Service ``plain`` without session affinity), captured
as they were printed. ``tests/test_lab.py`` traces against a running lab.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from podnet.lab.trace import (
    CT_NEW,
    Packet,
    combine,
    owner_of,
    parse,
    parse_destination,
    summarise,
    trace_command,
)

CAPTURED = Path(__file__).resolve().parent / "data" / "ovn-trace"


def captured(name: str) -> str:
    return (CAPTURED / f"{name}.txt").read_text()


def test_a_packet_across_subnets_crosses_the_switch_the_router_and_the_other_switch() -> None:
    summary = summarise(captured("across-subnets"))
    assert summary.path == ("switch ovn-default", "router ovn-cluster", "switch shop")
    assert summary.load_balancer is None
    assert summary.policy == "priority 31000: allow, routed by destination"
    assert (summary.acl, summary.allowed_by_acl) == ("no ACL on the path: allowed", True)
    assert summary.outcome == "delivered to frontend-9b577965-f9d56.shop"
    assert summary.complete


def test_a_packet_to_a_pod_of_its_own_subnet_stays_on_the_switch() -> None:
    summary = summarise(captured("same-subnet"))
    assert summary.path == ("switch shop",)
    assert summary.policy == ""
    assert summary.delivered_to == "frontend-9b577965-f9d56.shop"


def test_a_service_vip_names_the_load_balancer_its_backends_and_the_one_chosen() -> None:
    summary = summarise(captured("service-vip"))
    assert summary.load_balancer is not None
    assert summary.load_balancer.describe() == (
        "10.96.0.11:81 -> 10.66.0.20:8080, 10.66.0.21:8080, 10.66.0.22:8080; "
        "chose 10.66.0.20:8080")
    assert summary.path == ("switch ovn-default", "router ovn-cluster", "switch shop")
    assert summary.delivered_to == "frontend-9b577965-b5d50.shop"


def test_with_client_ip_affinity_the_trace_stops_at_the_learn_action_with_a_backend() -> None:
    summary = summarise(captured("service-vip-with-affinity"))
    assert summary.load_balancer is not None
    assert summary.load_balancer.affinity
    assert summary.load_balancer.chosen == "10.66.0.21:8080"
    assert not summary.complete
    assert summary.outcome.startswith("the trace stops in ls_in_lb_aff_learn on ovn-default")


def test_a_stopped_trace_and_its_continuation_read_as_one_path() -> None:
    whole = combine(summarise(captured("service-vip-with-affinity")),
                    summarise(captured("across-subnets")))
    assert whole.path == ("switch ovn-default", "router ovn-cluster", "switch shop")
    assert whole.load_balancer is not None and whole.load_balancer.affinity
    assert whole.delivered_to == "frontend-9b577965-f9d56.shop"
    assert "commit_lb_aff" in whole.notes[-1]


def test_a_private_subnet_denies_other_subnets_by_its_drop_acl() -> None:
    summary = summarise(captured("private-subnet-denied"))
    assert summary.path == ("switch ovn-default", "router ovn-cluster", "switch vault")
    assert summary.acl == "denied by ACL to-lport priority 2900 on vault: ip"
    assert not summary.allowed_by_acl
    assert summary.outcome == "dropped in ls_out_acl on vault (by an ACL)"
    assert summary.dropped_at == "ls_out_acl"


def test_a_private_subnet_admits_its_allowed_subnets_by_their_acl() -> None:
    summary = summarise(captured("private-subnet-allowed"))
    assert summary.acl == ("allowed by ACL to-lport priority 3000 on vault: "
                           "ip4.src == {10.66.0.0/16, 10.69.0.0/24, 100.64.0.0/16}")
    assert summary.allowed_by_acl
    assert summary.delivered_to == "safe.vault"


def test_traffic_for_outside_the_cluster_is_rerouted_to_its_nodes_gateway() -> None:
    summary = summarise(captured("outside-world"))
    assert summary.path == ("switch shop", "router ovn-cluster", "switch join")
    assert summary.policy == "priority 29000: reroute to 100.64.0.3 (a node's join address)"
    assert summary.outcome == ("delivered to node-node-2 (node node-2's ovn0: its gateway "
                               "out of the cluster)")


def test_a_spoofed_source_mac_is_dropped_by_port_security() -> None:
    summary = summarise(captured("spoofed-mac"))
    assert summary.path == ("switch shop",)
    assert summary.outcome == ("dropped in ls_in_apply_port_sec on shop (port security: the "
                               "source MAC or IP is not the port's)")


def test_an_error_of_ovn_trace_is_the_outcome() -> None:
    summary = summarise('unknown port "nosuch.port"\n')
    assert summary.outcome == 'ovn-trace: unknown port "nosuch.port"'
    assert summary.path == () and not summary.complete


def test_parsing_keeps_each_flows_table_priority_and_actions() -> None:
    flows, datapaths, _ = parse(captured("private-subnet-denied"))
    assert datapaths == ["ovn-default", "ovn-cluster", "vault"]
    last = flows[-1]
    assert (last.pipeline, last.datapath, last.stage, last.table, last.priority) == (
        "egress", "vault", 4, "ls_out_acl", 3900)
    assert last.match == "reg0[9] == 1 && (ip)"
    assert last.actions == ("drop;",)


def test_the_packet_is_a_tcp_syn_from_the_pods_port_or_an_icmp_echo() -> None:
    packet = Packet("web-0.shop", "0a:58:0a:42:00:14", "0a:58:ae:db:f0:df", "10.66.0.20",
                    "10.96.0.10", 80)
    assert packet.microflow() == (
        'inport == "web-0.shop" && eth.src == 0a:58:0a:42:00:14 && '
        "eth.dst == 0a:58:ae:db:f0:df && ip4.src == 10.66.0.20 && ip4.dst == 10.96.0.10 && "
        "ip.ttl == 64 && tcp.dst == 80 && tcp.src == 40000 && tcp.flags == 0x002")
    echo = Packet("a.b", "0a:00:00:00:00:01", "0a:00:00:00:00:02", "fd00::2", "fd00::1")
    assert echo.microflow().endswith("ip6.dst == fd00::1 && ip.ttl == 64 && icmp6.type == 128")
    assert packet.towards("10.66.0.21:8080").destination == "10.66.0.21"
    assert packet.towards("10.66.0.21:8080").port == 8080
    command = trace_command("unix:/sb.sock", "shop", packet)
    assert command[:2] == ["ovn-trace", "--db=unix:/sb.sock"]
    assert command[2:-2] == CT_NEW and command[-2] == "shop"


@pytest.mark.parametrize(("text", "parsed"), [
    ("10.96.0.10:80", ("10.96.0.10", 80)),
    ("10.66.0.21", ("10.66.0.21", None)),
    ("[fd00:10:67::2]:8080", ("fd00:10:67::2", 8080)),
    ("fd00:10:67::2", ("fd00:10:67::2", None)),
    ("shop/db-0:5432", ("shop/db-0", 5432)),
])
def test_destinations_are_an_address_or_a_pod_with_an_optional_port(
    text: str, parsed: tuple[str, int | None],
) -> None:
    assert parse_destination(text) == parsed


def test_a_port_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="the port must be a number"):
        parse_destination("10.96.0.10:http")


@pytest.mark.parametrize(("key", "owner"), [
    ("np/x/web/in/0", "NetworkPolicy x/web, ingress rule 0"),
    ("np/x/web/eg/2/port1/8080", "NetworkPolicy x/web, egress rule 2"),
    ("np-isolation/x/in/drop", "namespace x's ingress isolation: a NetworkPolicy selects "
                               "the pod and none of its rules allows this"),
    ("np-isolation/x/in/web/drop", "namespace x's ingress isolation: a NetworkPolicy "
                                   "selects the pod and none of its rules allows this"),
    ("acl/acls/0", ""),
    ("ANP/cluster-control/in/1", "AdminNetworkPolicy cluster-control, ingress rule 1"),
    ("BANP/default/eg/0", "BaselineAdminNetworkPolicy default, egress rule 0"),
    ("private/apps", ""),
])
def test_an_acl_key_names_the_policy_and_rule_it_was_compiled_from(key: str, owner: str) -> None:
    assert owner_of(key) == owner


def test_a_packet_for_another_cluster_leaves_through_the_transit_switch() -> None:
    """``podnet up --clusters 2``: from az1's ovn-default to a pod of az2's (10.18.0.2)."""
    summary = summarise(captured("across-clusters"))
    assert summary.path == ("switch ovn-default", "router ovn-cluster", "switch ts")
    assert summary.policy == "priority 30000: allow, routed by destination"
    assert summary.delivered_to == "ts-az2" and summary.complete
    assert "AZ az2" in summary.outcome and "gateway chassis" in summary.outcome
