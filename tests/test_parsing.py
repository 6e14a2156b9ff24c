"""Pure parsing: subnets, pools, MACs and static requests, as Kube-OVN users write them."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipam import errors
from ipam.addresses import covers, merge_intervals, subtract_intervals
from ipam.mac import normalize_mac, random_mac
from ipam.pool import looks_like_pool_name, parse_ippool, parse_pool_annotation
from ipam.requests import parse_static_ips, static_offsets
from ipam.subnet import build_subnet, check_no_overlap, default_subnet, parse_subnet


def subnet_object(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "s1"},
            "spec": spec}


def test_a_kube_ovn_subnet_with_exclude_ranges_parses() -> None:
    spec = parse_subnet(subnet_object(
        protocol="IPv4", cidrBlock="10.66.0.0/16", gateway="10.66.0.1",
        excludeIps=["10.66.0.1..10.66.0.10", "10.66.0.101..10.66.0.151"],
        gatewayType="distributed", natOutgoing=True, routeTable="", namespaces=["ns1", "ns2"],
    ))
    layout = spec.families[0]
    assert spec.namespaces == ("ns1", "ns2")
    assert spec.nat_outgoing
    # network, .1-.10, .101-.151 and broadcast
    assert layout.excluded_count == 1 + 10 + 51 + 1
    assert layout.usable == 65536 - layout.excluded_count


def test_a_dual_stack_subnet_has_one_layout_per_family() -> None:
    spec = parse_subnet(subnet_object(
        cidrBlock="10.16.0.0/16,fd00:10:16::/64", gateway="10.16.0.1,fd00:10:16::1",
        excludeIps=["10.16.0.1", "fd00:10:16::1"],
    ))
    assert spec.protocol == "Dual"
    assert [layout.family for layout in spec.families] == [4, 6]
    assert str(spec.families[1].gateway) == "fd00:10:16::1"


def test_the_gateway_defaults_to_the_first_host_address() -> None:
    assert str(build_subnet("x", "192.168.7.0/24").families[0].gateway) == "192.168.7.1"
    assert default_subnet().cidr_block == "10.16.0.0/16"


@pytest.mark.parametrize(
    ("spec", "field", "expected"),
    [
        ({"cidrBlock": "10.0.0.0/33"}, "spec.cidrBlock", errors.MalformedValue),
        ({"cidrBlock": "10.0.0.1/24"}, "spec.cidrBlock", errors.MalformedValue),
        ({"cidrBlock": "10.0.0.0/24", "gateway": "10.0.1.1"}, "spec.gateway",
         errors.GatewayAddress),
        ({"cidrBlock": "10.0.0.0/24", "excludeIps": ["10.0.0.9..10.0.0.2"]},
         "spec.excludeIps[0]", errors.MalformedValue),
        ({"cidrBlock": "10.0.0.0/24", "excludeIps": ["10.0.9.1"]}, "spec.excludeIps[0]",
         errors.MalformedValue),
        ({"cidrBlock": "10.0.0.0/24", "protocol": "IPv6"}, "spec.protocol",
         errors.MalformedValue),
        ({"cidrBlock": "10.0.0.0/24", "vpc": "tenant-a"}, "spec.vpc", errors.InvalidInput),
        ({"cidrBlock": "10.0.0.0/24", "provider": "macvlan.default"}, "spec.provider",
         errors.InvalidInput),
        ({"cidrBlock": "10.0.0.0/24", "gatewayType": "centralized"}, "spec.gatewayNode",
         errors.MalformedValue),
    ],
)
def test_a_bad_subnet_field_is_refused_by_name(
    spec: dict[str, Any], field: str, expected: type[errors.InvalidInput]
) -> None:
    with pytest.raises(expected) as caught:
        parse_subnet(subnet_object(**spec))
    assert caught.value.field == field
    assert field in str(caught.value)


def test_unsupported_fields_at_their_default_value_are_accepted() -> None:
    spec = parse_subnet(subnet_object(cidrBlock="10.0.0.0/24", vpc="ovn-cluster",
                                      provider="ovn", enableDHCP=False))
    assert spec.cidr_block == "10.0.0.0/24"


def test_an_edit_of_the_default_subnet_may_leave_its_cidr_out() -> None:
    edited = parse_subnet({"kind": "Subnet", "metadata": {"name": "ovn-default"}, "spec": {
        "gatewayType": "centralized", "gatewayNode": "node1,node2"}})
    assert edited.cidr_block == "10.16.0.0/16"
    assert edited.gateway_type == "centralized"
    with pytest.raises(errors.MalformedValue, match=r"spec\.cidrBlock"):
        parse_subnet(subnet_object(gatewayType="distributed"))


def test_overlapping_subnets_are_refused_naming_both() -> None:
    first = build_subnet("blue", "10.1.0.0/16")
    second = build_subnet("green", "10.1.128.0/17")
    with pytest.raises(errors.SubnetOverlap, match="green overlaps subnet blue"):
        check_no_overlap(second, [first])
    check_no_overlap(build_subnet("blue", "10.1.0.0/24"), [first])  # itself: an update


def test_an_inline_pool_lists_ips_ranges_and_cidrs() -> None:
    subnet = build_subnet("ovn-default", "10.16.0.0/16")
    pool = parse_pool_annotation("10.16.0.15,10.16.0.20..10.16.0.22,10.16.1.0/30", subnet)
    assert pool.size == 1 + 3 + 4
    assert pool.position(0) == {4: 15}
    assert pool.position(3) == {4: 22}
    assert pool.position(4) == {4: 256}
    assert pool.position(8) is None


def test_a_dual_stack_inline_pool_pairs_addresses_per_pod() -> None:
    subnet = build_subnet("ds", "10.16.0.0/16,fd00:10:16::/64")
    pool = parse_pool_annotation(
        "10.16.0.15,fd00:10:16::000E;10.16.0.16,fd00:10:16::000F", subnet
    )
    assert pool.size == 2
    assert pool.position(1) == {4: 16, 6: 15}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.17.0.5", errors.OutsideSubnet),
        ("10.16.0.1", errors.GatewayAddress),
        ("10.16.0.x", errors.MalformedValue),
    ],
)
def test_a_bad_pool_entry_is_refused(value: str, expected: type[Exception]) -> None:
    with pytest.raises(expected):
        parse_pool_annotation(value, build_subnet("ovn-default", "10.16.0.0/16"))


def test_an_ippool_object_resolves_against_its_subnet() -> None:
    spec = parse_ippool({"kind": "IPPool", "metadata": {"name": "pool-1"}, "spec": {
        "subnet": "ovn-default", "namespaces": ["ns-1"], "enableAddressSet": True,
        "ips": ["10.16.0.201", "10.16.0.210/30", "10.16.0.220..10.16.0.230"],
    }})
    pool = spec.resolve(build_subnet("ovn-default", "10.16.0.0/16"))
    assert pool.size == 1 + 4 + 11
    assert looks_like_pool_name("pool-1")
    assert not looks_like_pool_name("10.16.0.201")


def test_static_ips_are_checked_against_the_subnet() -> None:
    subnet = build_subnet("s", "10.16.0.0/16", exclude_ips=["10.16.0.100..10.16.0.110"])
    assert static_offsets(subnet, parse_static_ips("10.16.0.15")) == {"4": "15"}
    for value, expected in [
        ("10.16.0.105", errors.ExcludedAddress),
        ("10.16.0.1", errors.GatewayAddress),
        ("10.16.255.255", errors.ExcludedAddress),
        ("192.168.0.1", errors.OutsideSubnet),
    ]:
        with pytest.raises(expected) as caught:
            static_offsets(subnet, parse_static_ips(value))
        assert value in str(caught.value)
    with pytest.raises(errors.MalformedValue):
        parse_static_ips("10.16.0.1,10.16.0.2")


def test_macs_are_validated_and_generated_locally_administered_unicast() -> None:
    assert normalize_mac("00-00-00-53-6B-C4") == "00:00:00:53:6b:c4"
    with pytest.raises(errors.MalformedValue, match="multicast"):
        normalize_mac("01:00:5e:00:00:01")
    with pytest.raises(errors.MalformedValue, match="not a MAC"):
        normalize_mac("00:00:00:53:6b")
    for _ in range(100):
        first = int(random_mac()[:2], 16)
        assert first & 0b10 and not first & 0b1


interval = st.tuples(st.integers(0, 200), st.integers(0, 30)).map(lambda t: (t[0], t[0] + t[1]))


@given(st.lists(interval, max_size=8), st.lists(interval, max_size=8))
def test_interval_arithmetic_matches_sets(
    a: list[tuple[int, int]], b: list[tuple[int, int]]
) -> None:
    def as_set(intervals: list[tuple[int, int]]) -> set[int]:
        return {n for low, high in intervals for n in range(low, high + 1)}

    merged_a, merged_b = merge_intervals(a), merge_intervals(b)
    assert as_set(merged_a) == as_set(a)
    assert as_set(subtract_intervals(merged_a, merged_b)) == as_set(a) - as_set(b)
    for n in range(0, 240, 7):
        assert covers(merged_a, n) == (n in as_set(a))


POD_OCTETS = [*range(1, 127), *range(128, 169), *range(170, 224)]
"""First octets whose /8 a pod subnet may take (not 0, 127, 169.254, multicast, 240+)."""


@given(st.ip_addresses(v=4).filter(lambda a: a.packed[0] in POD_OCTETS))
def test_an_ip_anywhere_in_a_subnet_maps_to_its_offset_and_back(address: Any) -> None:
    network = ipaddress.ip_network(f"{address}/8", strict=False)
    layout = build_subnet("x", str(network)).families[0]
    assert layout.address_at(layout.offset_of(address)) == address
