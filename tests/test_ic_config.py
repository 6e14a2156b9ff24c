"""ovn-ic-config parsing and the IC controller's desired state, as pure functions."""

from __future__ import annotations

import pytest

from ipam.interconnect import DISABLED, IcConfigError, parse_ic_config
from podnet_ic.desired import (
    CurrentPort,
    IcSubnet,
    Observed,
    RemotePort,
    Route,
    blacklist,
    choose_address,
    desired_state,
)

KUBE_OVN_EXAMPLE = {  # Kube-OVN's documentation, trailing spaces and all
    "enable-ic": "true", "az-name": "az1 ", "ic-db-host": "192.168.65.3",
    "ic-nb-port": "6645 ", "ic-sb-port": "6646", "gw-nodes": "az1-gw", "auto-route": "true",
}


def test_kube_ovns_example_parses_into_its_settings_and_remotes() -> None:
    config = parse_ic_config(KUBE_OVN_EXAMPLE)
    assert (config.enabled, config.az_name, config.gw_nodes, config.auto_route) == (
        True, "az1", ("az1-gw",), True)
    assert config.remotes() == ("tcp:192.168.65.3:6645", "tcp:192.168.65.3:6646")


def test_a_raft_cluster_of_hosts_gives_every_member_in_each_remote() -> None:
    config = parse_ic_config({**KUBE_OVN_EXAMPLE, "ic-db-host": "10.0.0.1, 10.0.0.2,ic-3.example",
                              "ic-nb-port": "", "ic-sb-port": ""})
    assert config.nb_remote == "tcp:10.0.0.1:6645,tcp:10.0.0.2:6645,tcp:ic-3.example:6645"
    assert config.sb_remote == "tcp:10.0.0.1:6646,tcp:10.0.0.2:6646,tcp:ic-3.example:6646"
    ipv6 = parse_ic_config({**KUBE_OVN_EXAMPLE, "ic-db-host": "fd00::1"})
    assert ipv6.nb_remote == "tcp:[fd00::1]:6645"


def test_without_enable_ic_nothing_is_required_and_the_result_is_disabled() -> None:
    assert parse_ic_config(None) is DISABLED
    assert parse_ic_config({"enable-ic": "false"}) is DISABLED


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("enable-ic", "yes", "data.enable-ic 'yes': must be \"true\" or \"false\""),
    ("az-name", "az 1", "data.az-name 'az 1': must be lower-case letters"),
    ("az-name", "a" * 40, "longer than 32 characters"),
    ("az-name", "az1;rm", "must be lower-case letters"),
    ("ic-db-host", "192.168.65.3,", "has an empty member"),
    ("ic-db-host", "tcp:1.2.3.4", "is neither an IP address nor a DNS name"),
    ("ic-db-host", "1.2.3.4,1.2.3.4", "lists a host twice"),
    ("ic-db-host", ",".join(f"10.0.0.{i}" for i in range(9)), "9 hosts, at most 7"),
    ("ic-nb-port", "0", "data.ic-nb-port '0': must be a TCP port, 1 to 65535"),
    ("ic-sb-port", "6645", "the same port as ic-nb-port"),
    ("gw-nodes", "Node_1", "'Node_1' is not a node name"),
    ("gw-nodes", "a,,b", "has an empty node name"),
    ("auto-route", "on", "data.auto-route 'on'"),
])
def test_every_bad_value_is_refused_naming_key_value_and_reason(
    key: str, value: str, reason: str,
) -> None:
    with pytest.raises(IcConfigError, match="ovn-ic-config data") as caught:
        parse_ic_config({**KUBE_OVN_EXAMPLE, key: value})
    assert reason in str(caught.value)


def test_a_typo_is_refused_even_while_interconnection_is_off() -> None:
    with pytest.raises(IcConfigError, match="az-name"):
        parse_ic_config({"enable-ic": "false", "az-name": "AZ1"})


SUBNETS = (IcSubnet("ovn-default", ("10.16.0.0/16",)), IcSubnet("join", ("100.64.0.0/16",)),
           IcSubnet("private", ("10.30.0.0/16", "fd00:30::/64"), disable_interconnection=True))


def test_the_blacklist_is_disabled_subnets_join_and_node_addresses() -> None:
    assert blacklist(SUBNETS, ["100.64.0.0/16"], ["172.18.0.2", "fd00::2"]) == [
        "10.30.0.0/16", "100.64.0.0/16", "172.18.0.2/32", "fd00::2/128", "fd00:30::/64"]


def test_the_transit_address_is_stable_and_moves_only_for_an_earlier_az() -> None:
    first = choose_address("az2", "169.254.100.0/24", None, ())
    assert first == choose_address("az2", "169.254.100.0/24", None, ())
    ip = first.split("/")[0]
    current = CurrentPort("0a:58:00:00:00:01", (first,))
    assert choose_address("az2", "169.254.100.0/24", current, ()) == first
    later = RemotePort("ts-az3", "0a:58:00:00:00:03", first)
    assert choose_address("az2", "169.254.100.0/24", current, (later,)) == first
    earlier = RemotePort("ts-az1", "0a:58:00:00:00:02", first)
    moved = choose_address("az2", "169.254.100.0/24", current, (earlier,))
    assert moved != first and moved.split("/")[0] != ip
    assert choose_address("az2", "169.254.100.0/24", None, (earlier,)) == moved


def test_a_full_transit_subnet_is_a_problem_not_a_crash() -> None:
    ports = (RemotePort("ts-a", "m", "169.254.100.1/30"),
             RemotePort("ts-b", "m", "169.254.100.2/30"))
    config = parse_ic_config(KUBE_OVN_EXAMPLE)
    state = desired_state(config, SUBNETS, ("100.64.0.0/16",), (),
                          Observed(ts_subnet="169.254.100.0/30", remote_ports=ports))
    assert state.router_port is None
    assert any("is full" in problem for problem in state.problems)


def test_the_desired_state_names_ports_chassis_policies_and_refusals() -> None:
    config = parse_ic_config({**KUBE_OVN_EXAMPLE, "gw-nodes": "gw-a,gw-b,gw-c"})
    observed = Observed(
        ts_present=True,
        chassis={"gw-a": "chassis-a", "gw-b": "chassis-b"},
        routes=(Route("u1", "10.17.0.1/16", "169.254.100.7", True),
                Route("u2", "10.16.5.0/24", "169.254.100.7", True),
                Route("u3", "0.0.0.0/0", "100.64.0.1", False),
                Route("u4", "192.168.9.0/24", "169.254.100.7", False)),
        remote_prefixes=(("az2", "10.17.0.1/16"), ("az2", "10.16.5.0/24")))
    state = desired_state(config, SUBNETS, ("100.64.0.0/16",), ("172.18.0.2",), observed)
    assert state.router_port is not None and state.router_port.name == "az1-ts"
    assert [(g.chassis, g.priority) for g in state.router_port.gateway_chassis] == [
        ("chassis-a", 3), ("chassis-b", 2)]
    assert state.problems == ["gw-node gw-c: no chassis registered yet"]
    assert state.switch_port is not None and state.switch_port.name == "ts-az1"
    assert state.switch_port.router_port == "az1-ts"
    assert [(r.az, r.prefix, r.subnet) for r in state.refusals] == [
        ("az2", "10.16.5.0/24", "ovn-default")]
    assert state.drop_routes == ("u2",)
    assert "10.16.5.0/24" in state.options["ic-route-blacklist"].split(",")
    assert {p.match: p.priority for p in state.policies.values()} == {
        "ip4.dst == 10.17.0.0/16": 30000, "ip4.dst == 192.168.9.0/24": 30000}
    assert dict(state.router_port.external_ids)["podnet.io/owner"] == "podnet-ic"


def test_auto_route_off_keeps_only_manual_routes_policies_and_drops_learned_ones() -> None:
    config = parse_ic_config({**KUBE_OVN_EXAMPLE, "auto-route": "false"})
    observed = Observed(routes=(Route("u1", "10.17.0.0/16", "169.254.100.7", True),
                                Route("u4", "192.168.9.0/24", "169.254.100.7", False)))
    state = desired_state(config, SUBNETS, ("100.64.0.0/16",), (), observed)
    assert state.options["ic-route-adv"] == state.options["ic-route-learn"] == "false"
    assert state.drop_routes == ("u1",)
    assert [p.match for p in state.policies.values()] == ["ip4.dst == 192.168.9.0/24"]


def test_with_interconnection_off_the_state_is_empty_and_every_learned_route_goes() -> None:
    observed = Observed(routes=(Route("u1", "10.17.0.0/16", "169.254.100.7", True),
                                Route("u4", "192.168.9.0/24", "169.254.100.7", False)))
    state = desired_state(DISABLED, SUBNETS, (), (), observed)
    assert (state.router_port, state.switch_port, state.policies, state.options) == (
        None, None, {}, {})
    assert state.drop_routes == ("u1",)
