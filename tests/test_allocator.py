"""The allocator against a real redis-server: lifecycle, policy, errors and layout."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from ipam import errors
from ipam.pool import parse_pool_annotation
from ipam.requests import ReserveRequest, parse_static_ips
from ipam.settings import IpamSettings, RedisSettings
from ipam.store import Ipam, open_ipam
from ipam.subnet import build_subnet


def token() -> str:
    return uuid.uuid4().hex


def static(value: str, mac: str | None = None) -> ReserveRequest:
    return ReserveRequest(static_ips=parse_static_ips(value), mac=mac)


async def test_addresses_are_handed_out_in_order_skipping_gateway_and_exclusions(
    ipam: Ipam,
) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24", exclude_ips=["10.0.0.3..10.0.0.4"]))
    got = [str((await ipam.reserve("s", token())).ips[0]) for _ in range(3)]
    assert got == ["10.0.0.2", "10.0.0.5", "10.0.0.6"]


async def test_reserving_again_under_the_same_token_returns_the_same_allocation(
    ipam: Ipam,
) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    first = await ipam.reserve("s", "tok", namespace="default", name="web")
    again = await ipam.reserve("s", "tok", namespace="default", name="web")
    assert again == first
    assert (await ipam.usage("s")).families[0].reserved == 1


async def test_a_full_subnet_reports_exhaustion_with_counts(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("tiny", "10.0.0.0/29"))  # .2-.6 usable
    for _ in range(5):
        await ipam.reserve("tiny", token())
    with pytest.raises(errors.Exhausted) as caught:
        await ipam.reserve("tiny", token())
    assert str(caught.value) == "subnet tiny is exhausted: 5 of 5 addresses in use"


async def test_a_released_address_is_reused_only_after_fresh_and_older_ones(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("tiny", "10.0.0.0/29"))
    tokens = [token() for _ in range(3)]
    held = [str((await ipam.reserve("tiny", t)).ips[0]) for t in tokens]  # .2 .3 .4
    await ipam.release("tiny", "token", tokens[1])  # .3 released first
    await ipam.release("tiny", "token", tokens[0])  # then .2
    order = [str((await ipam.reserve("tiny", token())).ips[0]) for _ in range(4)]
    assert order == ["10.0.0.5", "10.0.0.6", held[1], held[0]]


async def test_a_static_ip_held_by_a_pod_is_refused_naming_the_pod(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("ovn-default", "10.16.0.0/16"))
    tok = token()
    await ipam.reserve("ovn-default", tok, static("10.16.0.7"), namespace="default", name="web-0")
    await ipam.bind("ovn-default", tok, uid="uid-1", namespace="default", name="web-0")
    with pytest.raises(errors.AllocationConflict) as caught:
        await ipam.reserve("ovn-default", token(), static("10.16.0.7"))
    assert str(caught.value) == (
        "ovn.kubernetes.io/ip_address 10.16.0.7 is already used by pod default/web-0"
    )


async def test_a_static_mac_in_use_is_refused(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    await ipam.reserve("s", token(), static("10.0.0.9", "00:00:00:53:6b:c4"), name="a")
    with pytest.raises(errors.AllocationConflict, match="mac_address 00:00:00:53:6b:c4"):
        await ipam.reserve("s", token(), ReserveRequest(mac="00:00:00:53:6b:c4"))
    assert (await ipam.usage("s")).families[0].reserved == 1


async def test_a_refused_dual_stack_request_leaves_no_trace(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("ds", "10.0.0.0/24,fd00::/120"))
    holder = await ipam.reserve("ds", token(), static("fd00::20"))
    with pytest.raises(errors.AllocationConflict):
        await ipam.reserve("ds", token(), static("10.0.0.20,fd00::20"))
    fresh = await ipam.reserve("ds", token(), static("10.0.0.20"))
    assert [str(ip) for ip in fresh.ips] == ["10.0.0.20", "fd00::2"]
    assert holder.ips[1] == ipaddress.ip_address("fd00::20")


async def test_binding_ties_a_reservation_to_one_pod(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    tok = token()
    await ipam.reserve("s", tok)
    bound = await ipam.bind("s", tok, uid="u1", namespace="ns", name="p")
    assert bound.state == "bound"
    assert await ipam.bind("s", tok, uid="u1", namespace="ns", name="p") == bound
    with pytest.raises(errors.AllocationConflict, match="pod ns/p"):
        await ipam.bind("s", tok, uid="u2", namespace="ns", name="p")
    with pytest.raises(errors.UnknownReservation):
        await ipam.bind("s", "never-issued", uid="u3", namespace="ns", name="q")
    assert await ipam.lookup_pod("ns", "p") == bound
    assert await ipam.lookup_uid("u1") == bound
    assert await ipam.lookup_ip(str(bound.ips[0])) == bound
    assert await ipam.lookup_token(tok) == bound


async def test_release_by_pod_uid_or_token_is_idempotent(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    for by, value in (("pod", "ns/p0"), ("uid", "u1"), ("token", "t2")):
        tok = f"t{by}" if by != "token" else value
        await ipam.reserve("s", tok)
        await ipam.bind("s", tok, uid="u0" if by == "pod" else "u1", namespace="ns",
                        name="p0" if by == "pod" else "p1")
        released = await ipam.release("s", by, value)  # type: ignore[arg-type]
        assert released is not None and released.token == tok
        assert await ipam.release("s", by, value) is None  # type: ignore[arg-type]
    assert (await ipam.usage("s")).families[0].used == 0


async def test_reservations_whose_pod_never_appears_expire(
    ipam: Ipam, redis_settings: RedisSettings
) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    async with open_ipam(redis_settings, IpamSettings(reservation_ttl_s=0.05)) as hasty:
        stale = await hasty.reserve("s", "stale")
    kept = await ipam.reserve("s", "kept")
    await ipam.bind("s", "kept", uid="u", namespace="ns", name="p")
    await asyncio.sleep(0.1)
    assert await ipam.expire("s") == ["stale"]
    assert await ipam.lookup_ip(str(stale.ips[0])) is None
    assert await ipam.lookup_token("kept") == await ipam.lookup_uid("u")
    assert (await ipam.counters("s"))["expired"] == 1
    assert kept.ips != stale.ips


async def test_a_statefulset_ordinal_keeps_its_address_across_pod_recreation(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    sticky = ReserveRequest(sticky_key="default/web/0")
    first = await ipam.reserve("s", "t1", sticky, namespace="default", name="web-0")
    await ipam.bind("s", "t1", uid="u1", namespace="default", name="web-0")
    kept = await ipam.release("s", "uid", "u1", keep_sticky=True)
    assert kept is not None and kept.state == "kept"
    await ipam.reserve("s", token())  # the next pod of another workload
    second = await ipam.reserve("s", "t2", sticky, namespace="default", name="web-0")
    assert (second.ips, second.mac) == (first.ips, first.mac)
    assert await ipam.lookup_token("t1") is None
    await ipam.release("s", "sticky", "default/web/0")
    assert await ipam.lookup_ip(str(first.ips[0])) is None


async def test_a_pool_hands_out_its_first_free_entry_then_reports_exhaustion(ipam: Ipam) -> None:
    subnet = await ipam.ensure_subnet(build_subnet("ovn-default", "10.16.0.0/16"))
    pool = parse_pool_annotation("10.16.0.15,10.16.0.16", subnet)
    request = ReserveRequest(pool=pool)
    got = {str((await ipam.reserve("ovn-default", token(), request)).ips[0]) for _ in range(2)}
    assert got == {"10.16.0.15", "10.16.0.16"}
    with pytest.raises(errors.Exhausted, match="2 of 2 addresses in use"):
        await ipam.reserve("ovn-default", token(), request)


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "fd00:10:16::/64"])
async def test_a_huge_subnet_allocates_without_memory_growing_with_its_size(
    ipam: Ipam, redis_settings: RedisSettings, cidr: str
) -> None:
    await ipam.ensure_subnet(build_subnet("big", cidr))
    await ipam.ensure_subnet(build_subnet("small", "192.168.0.0/20"))
    for _ in range(500):
        await ipam.reserve("big", token())
        await ipam.reserve("small", token())
    client = Redis.from_url(redis_settings.url)
    try:
        sizes = {}
        for name in ("big", "small"):
            keys = ipam.keys.subnet_keys(name)
            usage = [await client.memory_usage(key) or 0 for key in keys]
            sizes[name] = sum(usage)
    finally:
        await client.aclose()
    assert sizes["big"] < sizes["small"] * 1.5


async def test_all_keys_of_a_subnet_hash_to_one_cluster_slot(ipam: Ipam) -> None:
    slots = {key_slot(key.encode()) for key in ipam.keys.subnet_keys("ovn-default")}
    assert len(slots) == 1


async def test_two_prefixes_on_one_redis_are_independent(redis_settings: RedisSettings) -> None:
    a = Ipam.connect(RedisSettings(url=redis_settings.url, prefix=redis_settings.prefix + "a:"))
    b = Ipam.connect(RedisSettings(url=redis_settings.url, prefix=redis_settings.prefix + "b:"))
    try:
        for client in (a, b):
            await client.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
        assert (await a.reserve("s", "t")).ips == (await b.reserve("s", "t")).ips
    finally:
        await a.close()
        await b.close()


async def test_scripts_survive_a_flushed_script_cache(
    ipam: Ipam, redis_settings: RedisSettings
) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    client = Redis.from_url(redis_settings.url)
    await client.script_flush()
    await client.aclose()
    assert (await ipam.reserve("s", token())).ips


async def test_subnet_updates_never_hand_out_an_address_in_use(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/28", exclude_ips=["10.0.0.5..10.0.0.6"]))
    holder = await ipam.reserve("s", token(), static("10.0.0.9"))
    # Excluding a held address keeps the holder; the address is not reused when freed.
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/28", exclude_ips=["10.0.0.9"]))
    assert await ipam.lookup_ip("10.0.0.9") == holder
    with pytest.raises(errors.SubnetChangeRefused, match="cidrBlock"):
        await ipam.ensure_subnet(build_subnet("s", "10.0.1.0/28"))
    with pytest.raises(errors.SubnetChangeRefused, match="gateway"):
        await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/28", gateway="10.0.0.9"))
    await ipam.release("s", "token", holder.token)
    handed = {str((await ipam.reserve("s", token())).ips[0]) for _ in range(12)}
    assert "10.0.0.9" not in handed
    assert {"10.0.0.5", "10.0.0.6"} <= handed  # no longer excluded: back in use
    with pytest.raises(errors.Exhausted):
        await ipam.reserve("s", token())


async def test_a_subnet_in_use_cannot_be_deleted(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    tok = token()
    await ipam.reserve("s", tok, namespace="default", name="web")
    with pytest.raises(errors.SubnetChangeRefused, match=r"1 addresses in use .*pod default/web"):
        await ipam.delete_subnet("s")
    await ipam.release("s", "token", tok)
    await ipam.delete_subnet("s")
    with pytest.raises(errors.UnknownSubnet):
        await ipam.reserve("s", token())


async def test_an_unknown_subnet_is_a_typed_error(ipam: Ipam) -> None:
    with pytest.raises(errors.UnknownSubnet, match="subnet nope does not exist"):
        await ipam.reserve("nope", token())


async def test_an_unreachable_redis_is_a_store_error(redis_settings: RedisSettings) -> None:
    broken = Ipam.connect(RedisSettings(url="redis://127.0.0.1:1/0", socket_timeout_s=0.5))
    try:
        with pytest.raises(errors.StoreUnavailable):
            await broken.ping()
    finally:
        await broken.close()


async def test_a_fenced_subnet_hands_out_nothing(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    await ipam.set_fenced("s", True)
    with pytest.raises(errors.Fenced):
        await ipam.reserve("s", token())
    await ipam.set_fenced("s", False)
    assert (await ipam.reserve("s", token())).ips


async def test_the_redis_url_may_be_a_unix_socket(own_redis: object) -> None:
    from podnet.daemons import RedisServer

    assert isinstance(own_redis, RedisServer)
    client = Ipam.connect(RedisSettings(url=own_redis.unix_url), IpamSettings())
    try:
        await client.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
        assert (await client.reserve("s", token())).ips
    finally:
        await client.close()


async def test_after_a_redis_restart_nothing_new_is_handed_out_until_the_index_is_rebuilt(
    own_redis: object,
) -> None:
    from podnet.daemons import RedisServer

    assert isinstance(own_redis, RedisServer)
    guarded = Ipam.connect(RedisSettings(url=own_redis.url),
                           IpamSettings(require_rebuilt=True))
    try:
        await guarded.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
        with pytest.raises(errors.Fenced):
            await guarded.reserve("s", "t1")
        await guarded.mark_rebuilt("s")
        first = await guarded.reserve("s", "t1")
        own_redis.restart()  # a new replication ID: writes may have been lost
        assert await guarded.reserve("s", "t1") == first  # a retry is still answered
        with pytest.raises(errors.Fenced, match="fenced"):
            await guarded.reserve("s", "t2")
        await guarded.mark_rebuilt("s")
        assert (await guarded.reserve("s", "t2")).ips != first.ips
    finally:
        await guarded.close()


async def test_a_subnet_created_after_a_rebuild_on_the_same_redis_is_open_at_once(
    own_redis: object,
) -> None:
    from podnet.daemons import RedisServer

    assert isinstance(own_redis, RedisServer)
    guarded = Ipam.connect(RedisSettings(url=own_redis.url),
                           IpamSettings(require_rebuilt=True))
    try:
        await guarded.ensure_subnet(build_subnet("old", "10.0.0.0/24"))
        await guarded.set_epoch(await guarded.mark_rebuilt("old"))
        await guarded.ensure_subnet(build_subnet("new", "10.1.0.0/24"))
        assert (await guarded.reserve("new", "t")).ips
        own_redis.restart()
        await guarded.ensure_subnet(build_subnet("newer", "10.2.0.0/24"))
        with pytest.raises(errors.Fenced):  # the epoch is from before the restart
            await guarded.reserve("newer", "t")
    finally:
        await guarded.close()


async def test_ippool_addresses_go_only_to_pool_requests_until_the_pool_is_deleted(
    ipam: Ipam,
) -> None:
    from ipam.pool import parse_ippool

    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/29"))  # .2-.6 usable
    spec = parse_ippool({"metadata": {"name": "fixed"},
                         "spec": {"subnet": "s", "ips": ["10.0.0.3..10.0.0.4"]}})
    pool = await ipam.ensure_pool(spec)
    dynamic = [str((await ipam.reserve("s", f"d{i}")).ips[0]) for i in range(3)]
    assert dynamic == ["10.0.0.2", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(errors.Exhausted):
        await ipam.reserve("s", "d3")
    pooled = await ipam.reserve("s", "p0", ReserveRequest(pool=pool))
    assert str(pooled.ips[0]) == "10.0.0.3"
    await ipam.release("s", "token", "p0")
    await ipam.delete_pool("fixed")
    back = {str((await ipam.reserve("s", f"e{i}")).ips[0]) for i in range(2)}
    assert back == {"10.0.0.3", "10.0.0.4"}


async def test_concurrent_calls_share_a_pipeline_and_survive_a_flushed_script_cache(
    ipam: Ipam, redis_settings: RedisSettings
) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/22"))
    client = Redis.from_url(redis_settings.url)
    await client.script_flush()
    await client.aclose()
    allocations = await asyncio.gather(*(ipam.reserve("s", f"t{i}") for i in range(200)))
    assert len({a.ips for a in allocations}) == 200


async def test_a_kept_address_the_statefulset_no_longer_asks_for_is_freed_not_handed_over(
    ipam: Ipam,
) -> None:
    spec = await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    old = ReserveRequest(static_ips=parse_static_ips("10.0.0.20"), sticky_key="ns/db/0")
    await ipam.reserve(spec, "t1", old, namespace="ns", name="db-0")
    await ipam.bind("s", "t1", uid="u1", namespace="ns", name="db-0")
    await ipam.release("s", "uid", "u1", keep_sticky=True)
    # The StatefulSet's ip_pool now gives ordinal 0 another address.
    new = ReserveRequest(static_ips=parse_static_ips("10.0.0.30"), sticky_key="ns/db/0")
    again = await ipam.reserve(spec, "t2", new, namespace="ns", name="db-0")
    assert again.ip_strings() == ["10.0.0.30"]
    assert await ipam.lookup_ip("10.0.0.20") is None


@pytest.mark.parametrize(("field", "value"), [
    ("token", "tok\x1f0\x1f1"), ("token", ""), ("name", "web\x1f1"), ("namespace", "NS"),
    ("sticky_key", "ns/db/0\x1fx"), ("name", "web-0\n"),
])
async def test_a_request_field_that_could_pose_as_structure_is_refused_before_reserving(
    ipam: Ipam, field: str, value: str
) -> None:
    spec = await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/29"))
    arguments = {"token": "tok", "namespace": "ns", "name": "web-0", "sticky_key": ""}
    arguments[field] = value
    with pytest.raises(errors.MalformedValue):
        await ipam.reserve(spec, arguments["token"],
                           ReserveRequest(sticky_key=arguments["sticky_key"]),
                           namespace=arguments["namespace"], name=arguments["name"])
    assert (await ipam.usage("s")).families[0].reserved == 0
