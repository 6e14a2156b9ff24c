"""Reservations made in one event-loop turn share one reserve script call.

Each must still come out exactly as if it had been a call of its own: its own answer
(success or refusal), idempotency by token, counters, and no trace of a refusal.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from ipam import errors
from ipam.requests import ReserveRequest, parse_static_ips
from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet


def token() -> str:
    return uuid.uuid4().hex


async def evalsha_calls(settings: RedisSettings) -> int:
    client = Redis.from_url(settings.url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_reservations_of_one_turn_share_a_script_call(
    ipam: Ipam, redis_settings: RedisSettings
) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    before = await evalsha_calls(redis_settings)
    allocations = await asyncio.gather(*(ipam.reserve("s", f"t{i}") for i in range(20)))
    # The subnet's other calls (if any) plus one reserve call; not twenty.
    assert await evalsha_calls(redis_settings) - before <= 2
    assert [str(a.ips[0]) for a in allocations] == [f"10.0.0.{i}" for i in range(2, 22)]
    assert len({a.mac for a in allocations}) == 20


async def test_the_same_token_twice_in_one_turn_gets_one_allocation(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    first, other, again = await asyncio.gather(
        ipam.reserve("s", "tok", namespace="default", name="web"),
        ipam.reserve("s", token()),
        ipam.reserve("s", "tok", namespace="default", name="web"),
    )
    assert again == first and other.ips != first.ips
    assert (await ipam.usage("s")).families[0].reserved == 2


async def test_refusals_in_a_shared_call_touch_only_their_own_request(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("tiny", "10.0.0.0/29"))  # .2-.6 usable
    taken = ReserveRequest(static_ips=parse_static_ips("10.0.0.2"))
    answers = await asyncio.gather(
        ipam.reserve("tiny", "holder", taken, name="a"),
        ipam.reserve("tiny", token(), taken),
        *(ipam.reserve("tiny", token()) for _ in range(6)),
        return_exceptions=True,
    )
    assert not isinstance(answers[0], BaseException)
    assert isinstance(answers[1], errors.AllocationConflict)
    got = [a for a in answers[2:] if not isinstance(a, BaseException)]
    refused = [a for a in answers[2:] if isinstance(a, BaseException)]
    assert len(got) == 4 and all(isinstance(e, errors.Exhausted) for e in refused)
    assert sorted(str(a.ips[0]) for a in got) == [f"10.0.0.{i}" for i in range(3, 7)]
    counters = await ipam.counters("tiny")
    assert (counters["reserved"], counters["allocations"]) == (5, 5)
    assert (counters["conflicts"], counters["exhausted"]) == (1, 2)


async def test_a_mac_taken_within_the_shared_call_is_drawn_again(
    ipam: Ipam, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    fresh = (f"02:00:00:00:01:{i:02x}" for i in itertools.count(1))
    draws: Iterator[str] = itertools.chain(["02:00:00:00:00:01"] * 2, fresh)
    monkeypatch.setattr("ipam.store.random_mac", lambda: next(draws))
    first, second = await asyncio.gather(ipam.reserve("s", "a"), ipam.reserve("s", "b"))
    assert first.mac == "02:00:00:00:00:01"
    assert second.mac == "02:00:00:00:01:01"
    assert first.ips != second.ips


async def test_a_kept_address_is_handed_over_within_a_shared_call(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    sticky = ReserveRequest(sticky_key="default/web/0")
    first = await ipam.reserve("s", "t1", sticky, namespace="default", name="web-0")
    await ipam.bind("s", "t1", uid="u1", namespace="default", name="web-0")
    await ipam.release("s", "uid", "u1", keep_sticky=True)
    second, other = await asyncio.gather(
        ipam.reserve("s", "t2", sticky, namespace="default", name="web-0"),
        ipam.reserve("s", token()),
    )
    assert (second.ips, second.mac) == (first.ips, first.mac)
    assert other.ips != first.ips
    counters = await ipam.counters("s")
    assert (counters["reserved"], counters["kept"]) == (2, 0)


async def test_a_fenced_subnet_refuses_every_request_of_a_shared_call(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    held = await ipam.reserve("s", "held")
    await ipam.set_fenced("s", True)
    answers = await asyncio.gather(
        ipam.reserve("s", token()), ipam.reserve("s", "held"), return_exceptions=True
    )
    assert isinstance(answers[0], errors.Fenced)
    assert answers[1] == held  # a known token is answered even while fenced
