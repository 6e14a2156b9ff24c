"""What a user can size costs what is allocated, not what is addressable: a pool inside
millions of excluded addresses, an IPPool of millions of addresses. Measured in Redis
commands (``INFO commandstats``), which do not depend on the machine's speed."""

from __future__ import annotations

import pytest

from ipam import errors
from ipam.pool import IPPoolSpec, parse_pool_annotation
from ipam.requests import ReserveRequest
from ipam.store import Ipam
from ipam.subnet import build_subnet


async def calls(ipam: Ipam, command: str) -> int:
    stats = await ipam._redis.info("commandstats")
    entry = stats.get(f"cmdstat_{command}") or {}
    return int(entry.get("calls", 0))


async def test_a_pool_inside_millions_of_excluded_addresses_is_refused_in_a_few_commands(
    ipam: Ipam,
) -> None:
    wide = await ipam.ensure_subnet(build_subnet(
        "wide", "10.0.0.0/8", exclude_ips=["10.0.1.0..10.255.255.0"]))
    pool = parse_pool_annotation("10.0.1.0..10.255.255.0", wide)  # 16.7 M excluded addresses
    before = await calls(ipam, "hexists")
    with pytest.raises(errors.Exhausted):
        await ipam.reserve(wide, "tok-excluded", ReserveRequest(pool=pool))
    assert await calls(ipam, "hexists") - before < 10


async def test_a_pool_span_with_held_addresses_costs_one_look_per_held_address(
    ipam: Ipam,
) -> None:
    subnet = await ipam.ensure_subnet(build_subnet("held", "10.30.0.0/16"))
    for index in range(5):
        await ipam.reserve(subnet, f"tok-{index}")  # 10.30.0.2 .. 10.30.0.6
    pool = parse_pool_annotation("10.30.0.2..10.30.255.254", subnet)
    before = await calls(ipam, "hexists")
    allocation = await ipam.reserve(subnet, "tok-pool", ReserveRequest(pool=pool))
    assert allocation.ip_strings() == ["10.30.0.7"]
    assert await calls(ipam, "hexists") - before == 6


async def test_the_holders_of_a_pool_of_millions_of_addresses_are_found_without_visiting_each(
    ipam: Ipam,
) -> None:
    subnet = await ipam.ensure_subnet(build_subnet("big", "10.0.0.0/8"))
    pool = await ipam.ensure_pool(IPPoolSpec("big-pool", "big", ("10.64.0.0/10",)))
    inside = await ipam.reserve(subnet, "tok-in", ReserveRequest(pool=pool))
    await ipam.reserve(subnet, "tok-out")  # outside the pool
    before = await calls(ipam, "hmget")
    holders = await ipam.pool_usage(pool)
    assert [h.token for h in holders] == [inside.token]
    assert await calls(ipam, "hmget") - before == 0  # scanned what is held instead


async def test_a_small_pool_is_read_by_its_addresses(ipam: Ipam) -> None:
    subnet = await ipam.ensure_subnet(build_subnet("crowded", "10.31.0.0/16"))
    for index in range(20):
        await ipam.reserve(subnet, f"tok-{index}")
    pool = await ipam.ensure_pool(IPPoolSpec("two", "crowded", ("10.31.0.2", "10.31.0.3")))
    before = await calls(ipam, "hscan")
    holders = await ipam.pool_usage(pool)
    assert sorted(h.ip_strings()[0] for h in holders) == ["10.31.0.2", "10.31.0.3"]
    assert await calls(ipam, "hscan") - before == 0
