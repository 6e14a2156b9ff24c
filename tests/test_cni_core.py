"""The agent's pure core: CNI input parsing, pod networks, QoS plans, gateway plans and
the CNI result. Values in, values out; no namespace, socket or daemon involved."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from ipam import annotations as keys
from ipam.subnet import build_subnet
from node_agent import errors, protocol
from node_agent.gateway import is_policy_table, nft_ruleset, plan_gateway, policy_table
from node_agent.netconf import parse_call, parse_cni_args, pod_ref
from node_agent.network import (
    InvalidPodNetwork,
    from_allocation,
    from_annotations,
    host_interface_name,
)
from node_agent.qos import Bandwidth, InvalidRate, parse_rate, plan_qos, tbf_for
from node_agent.result import Plugged, build_result

ANNOTATIONS = {
    keys.ALLOCATED: "true", keys.IP_ADDRESS: "10.16.0.5", keys.MAC_ADDRESS: "0A:58:0A:10:00:05",
    keys.CIDR: "10.16.0.0/16", keys.GATEWAY: "10.16.0.1", keys.LOGICAL_SWITCH: "ovn-default",
}


def request(command: str = "ADD", **fields: Any) -> protocol.Request:
    values = {"container_id": "abc123", "netns": "/run/netns/p", "ifname": "eth0",
              "args": "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0", **fields}
    config = values.pop("config", {"cniVersion": "1.0.0", "name": "podnet",
                                   "type": "podnet-cni"})
    return protocol.request(command, config, **values)


# --- CNI input ------------------------------------------------------------------------------


def test_cni_args_are_split_into_keys_and_values() -> None:
    assert parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web;;") == {
        "IgnoreUnknown": "1", "K8S_POD_NAME": "web"}


def test_a_cni_args_part_without_equals_is_an_invalid_environment() -> None:
    with pytest.raises(errors.InvalidEnvironment):
        parse_cni_args("K8S_POD_NAME")


def test_a_missing_namespace_means_default_as_podman_passes_only_the_name() -> None:
    assert pod_ref({"K8S_POD_NAME": "web"}).key == "default/web"
    assert pod_ref({"K8S_POD_NAME": "web"}).port_name == "web.default"


def test_an_add_call_is_parsed_into_typed_values() -> None:
    call = parse_call(request())
    assert (call.command, call.container_id, call.ifname) == ("ADD", "abc123", "eth0")
    assert call.pod is not None and call.pod.key == "shop/web-0"
    assert call.conf.cni_version == "1.0.0"


@pytest.mark.parametrize("fields", [
    {"container_id": ""}, {"container_id": "bad/id"}, {"container_id": "abc\n"},
    {"ifname": "x" * 16},
    {"ifname": "a/b"}, {"netns": "relative"}, {"netns": ""}, {"args": "IgnoreUnknown=1"},
])
def test_malformed_add_environments_are_refused_with_code_4(fields: dict[str, str]) -> None:
    with pytest.raises(errors.InvalidEnvironment) as caught:
        parse_call(request(**fields))
    assert caught.value.code == 4


def test_del_needs_neither_a_netns_nor_the_pod() -> None:
    call = parse_call(request("DEL", netns="", args=""))
    assert call.pod is None and call.netns == ""


def test_an_mtu_out_of_range_is_an_invalid_config() -> None:
    config = {"cniVersion": "1.0.0", "name": "podnet", "mtu": 70000}
    with pytest.raises(errors.InvalidConfig):
        parse_call(request(config=config))


def test_the_bandwidth_capability_is_read_in_bits_per_second() -> None:
    config = {"cniVersion": "1.0.0", "name": "podnet", "runtimeConfig": {
        "bandwidth": {"ingressRate": 20_000_000, "egressRate": 5_000_000}}}
    assert parse_call(request(config=config)).conf.bandwidth == Bandwidth(20.0, 5.0)


def test_gc_reads_the_valid_attachments() -> None:
    config = {"cniVersion": "1.1.0", "name": "podnet",
              "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]}
    assert parse_call(request("GC", config=config)).conf.valid_attachments == (("a", "eth0"),)


# --- pod networks -------------------------------------------------------------------------


def test_annotations_become_addresses_with_their_prefix_and_gateway() -> None:
    network = from_annotations("shop", "web-0", ANNOTATIONS)
    assert network.addresses == (ipaddress.ip_interface("10.16.0.5/16"),)
    assert network.gateways == (ipaddress.ip_address("10.16.0.1"),)
    assert network.mac == "0a:58:0a:10:00:05"
    assert network.port_name == "web-0.shop"


def test_dual_stack_annotations_give_one_address_per_family() -> None:
    network = from_annotations("shop", "web-0", {
        **ANNOTATIONS, keys.IP_ADDRESS: "10.16.0.5,fd00:10:16::5",
        keys.CIDR: "10.16.0.0/16,fd00:10:16::/64", keys.GATEWAY: "10.16.0.1,fd00:10:16::1"})
    assert [str(a) for a in network.addresses] == ["10.16.0.5/16", "fd00:10:16::5/64"]
    assert network.gateway_for(6) == ipaddress.ip_address("fd00:10:16::1")


@pytest.mark.parametrize(("key", "value", "complaint"), [
    (keys.IP_ADDRESS, "10.17.0.5", "is in no CIDR"),
    (keys.IP_ADDRESS, "ten", "not a list of IP addresses"),
    (keys.GATEWAY, "fd00::1", "no IPv4 gateway"),
    (keys.CIDR, "10.16.0.0/33", "not a list of CIDRs"),
    (keys.INGRESS_RATE, "fast", "not a number"),
])
def test_unusable_annotations_are_refused_naming_the_annotation(
    key: str, value: str, complaint: str,
) -> None:
    with pytest.raises(InvalidPodNetwork, match=complaint) as caught:
        from_annotations("shop", "web-0", {**ANNOTATIONS, key: value})
    assert key.split("/")[1] in str(caught.value)


def test_an_allocation_uses_its_subnets_prefix_and_gateway() -> None:
    subnet = build_subnet("apps", "10.20.0.0/24")
    network = from_allocation("default", "web", [ipaddress.ip_address("10.20.0.7")],
                              "0a:58:0a:14:00:07", subnet)
    assert [str(a) for a in network.addresses] == ["10.20.0.7/24"]
    assert [str(g) for g in network.gateways] == ["10.20.0.1"]


def test_host_interface_names_are_stable_short_and_distinct() -> None:
    name = host_interface_name("abc", "eth0")
    assert name == host_interface_name("abc", "eth0") and len(name) <= 15
    assert name != host_interface_name("abc", "net1")


# --- QoS ------------------------------------------------------------------------------------


def test_rates_are_mbit_per_second_and_zero_or_empty_means_unlimited() -> None:
    assert parse_rate(keys.INGRESS_RATE, "12.5") == 12.5
    assert parse_rate(keys.INGRESS_RATE, "0") is None
    assert parse_rate(keys.INGRESS_RATE, " ") is None
    for bad in ("-1", "inf", "nan", "x"):
        with pytest.raises(InvalidRate):
            parse_rate(keys.INGRESS_RATE, bad)


def test_on_the_userspace_datapath_egress_is_a_tbf_in_the_pod() -> None:
    plan = plan_qos(Bandwidth(ingress_mbps=20, egress_mbps=10), "netdev")
    assert plan.port_max_rate_bps == 20_000_000
    assert plan.policing_rate_kbps == 0
    assert plan.pod_tbf == tbf_for(10)
    assert plan.pod_tbf is not None and plan.pod_tbf.rate_bps == 10_000_000


def test_on_the_kernel_datapath_egress_is_ovs_ingress_policing() -> None:
    plan = plan_qos(Bandwidth(egress_mbps=10), "system")
    assert plan.pod_tbf is None and plan.port_max_rate_bps is None
    assert (plan.policing_rate_kbps, plan.policing_burst_kb) == (10_000, 1000)


def test_no_limits_plan_nothing() -> None:
    plan = plan_qos(Bandwidth(), "netdev")
    assert (plan.port_max_rate_bps, plan.policing_rate_kbps, plan.pod_tbf) == (None, 0, None)


def test_a_tbf_bucket_holds_at_least_sixteen_frames() -> None:
    assert tbf_for(1).burst_bytes == 16 * 1514
    assert tbf_for(10_000).burst_bytes == 10_000_000_000 // 8 * 4 // 1000


# --- gateway ---------------------------------------------------------------------------------


SUBNETS = [
    build_subnet("join", "100.64.0.0/16"),
    build_subnet("nat", "10.40.0.0/24", nat_outgoing=True),
    build_subnet("plain", "10.41.0.0/24"),
    build_subnet("central", "10.42.0.0/24,fd00:42::/64", nat_outgoing=True,
                 gateway_type="centralized", gateway_node="gw1,gw2"),
]


def test_every_pod_subnet_is_routed_through_the_join_gateway() -> None:
    plan = plan_gateway("node1", SUBNETS)
    assert {str(r.destination) for r in plan.routes} == {
        "10.40.0.0/24", "10.41.0.0/24", "10.42.0.0/24"}
    assert {str(r.via) for r in plan.routes} == {"100.64.0.1"}


def test_snat_covers_distributed_nat_subnets_and_centralized_ones_on_their_gateways() -> None:
    ordinary = plan_gateway("node1", SUBNETS)
    gateway = plan_gateway("gw2", SUBNETS)
    assert [str(n) for n in ordinary.snat] == ["10.40.0.0/24"]
    assert [str(n) for n in gateway.snat] == ["10.40.0.0/24", "10.42.0.0/24", "fd00:42::/64"]
    assert not ordinary.policies
    assert {str(p.source) for p in gateway.policies} == {"10.42.0.0/24", "fd00:42::/64"}


def test_policy_tables_are_stable_and_podnets_own() -> None:
    assert policy_table("central") == policy_table("central")
    assert is_policy_table(policy_table("central")) and not is_policy_table(254)


def test_the_nft_script_replaces_podnets_table_with_masquerade_for_the_snat_sources() -> None:
    script = nft_ruleset(plan_gateway("gw1", SUBNETS))
    assert script.startswith("table inet podnet\ndelete table inet podnet\n")
    assert "elements = { 10.40.0.0/24, 10.42.0.0/24 }" in script
    assert 'ip saddr @snat_v4 ip daddr != @cluster_v4 oifname != "ovn0" masquerade' in script
    assert 'ip6 saddr @snat_v6 ip6 daddr != @cluster_v6 oifname != "ovn0" masquerade' in script


def test_without_nat_subnets_the_nft_script_has_an_empty_chain() -> None:
    script = nft_ruleset(plan_gateway("node1", [SUBNETS[0], SUBNETS[2]]))
    assert "masquerade" not in script and "chain postrouting" in script


# --- result ----------------------------------------------------------------------------------


def test_the_result_lists_both_interfaces_ips_with_gateways_and_default_routes() -> None:
    network = from_annotations("shop", "web-0", ANNOTATIONS)
    plugged = Plugged("pn0123456789ab", "aa:bb:cc:dd:ee:ff", "eth0", "/run/netns/p")
    result = build_result("1.0.0", network, plugged, {"nameservers": ["10.96.0.10"]})
    assert result["interfaces"][1] == {"name": "eth0", "mac": "0a:58:0a:10:00:05",
                                       "sandbox": "/run/netns/p"}
    assert result["ips"] == [{"address": "10.16.0.5/16", "gateway": "10.16.0.1",
                              "interface": 1}]
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.16.0.1"}]
    assert result["dns"] == {"nameservers": ["10.96.0.10"]}


def test_a_legacy_result_names_each_ip_version() -> None:
    network = from_annotations("shop", "web-0", ANNOTATIONS)
    plugged = Plugged("pn0", "aa:bb:cc:dd:ee:ff", "eth0", "/run/netns/p")
    assert build_result("0.4.0", network, plugged, None)["ips"][0]["version"] == "4"


# --- per-container serialisation -------------------------------------------------------------


async def test_calls_for_one_container_run_one_at_a_time_and_leave_no_lock_behind() -> None:
    import asyncio

    from node_agent.agent import KeyedLocks

    locks = KeyedLocks()
    running: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    async def call(key: str, name: str) -> None:
        async with locks.hold(key):
            running.append(name)
            overlaps.append(tuple(running))
            await asyncio.sleep(0.01)
            running.remove(name)

    await asyncio.gather(*(call("c1", f"a{i}") for i in range(5)), call("c2", "b"))
    assert all(sum(name.startswith("a") for name in seen) <= 1 for seen in overlaps)
    assert len(locks) == 0


def test_a_request_without_a_command_is_a_protocol_error_not_a_crash() -> None:
    line = json.dumps({"wire": protocol.WIRE_VERSION, "config": {}}).encode()
    with pytest.raises(errors.ProtocolError, match="no command"):
        protocol.decode_request(line)
