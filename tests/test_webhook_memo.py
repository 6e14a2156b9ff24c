"""The review memo on a real Redis: the first answer for a uid is kept, whoever asks.

Puts made in one event-loop turn share one script call, so the cases that matter are
puts of one uid in the same turn (two copies of a review racing on one replica) and
uids the request packing must not misread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from ipam.errors import StoreUnavailable
from ipam.settings import RedisSettings
from podnet.daemons import free_port
from webhook.memo import MemoEntry, RedisReviewMemo

FIRST = MemoEntry({"ovn.kubernetes.io/ip_address": "10.0.0.5"}, {"zone": "a"})
SECOND = MemoEntry({"ovn.kubernetes.io/ip_address": "10.0.0.6"})


@pytest.fixture
async def memo(redis_settings: RedisSettings) -> AsyncIterator[RedisReviewMemo]:
    client = RedisReviewMemo.connect(replace(redis_settings, socket_timeout_s=2.0), 600)
    yield client
    await client.close()


async def test_the_first_answer_is_kept_and_returned_to_a_later_put(
    memo: RedisReviewMemo,
) -> None:
    assert await memo.get("uid-1") is None
    assert await memo.put("uid-1", FIRST) is FIRST
    assert await memo.put("uid-1", SECOND) == FIRST
    assert await memo.get("uid-1") == FIRST


async def test_puts_of_one_uid_in_one_turn_all_get_the_first(memo: RedisReviewMemo) -> None:
    entries = [MemoEntry({"n": str(i)}) for i in range(5)]
    kept = await asyncio.gather(*(memo.put("same", e) for e in entries),
                                *(memo.put(f"other-{i}", e) for i, e in enumerate(entries)))
    assert kept[:5] == [entries[0]] * 5
    assert kept[5:] == entries


@pytest.mark.parametrize("uid", ["a\x1fb", "line\nbreak", "ünï cödé", "1234", "x\x1f\x1f"])
async def test_any_uid_is_kept_under_its_own_key(memo: RedisReviewMemo, uid: str) -> None:
    entry = MemoEntry({"key\x1f": "value\n"})
    assert await memo.put(uid, entry) is entry
    assert await memo.get(uid) == entry
    assert await memo.get(uid + "x") is None


async def test_the_answer_expires_after_its_ttl(redis_settings: RedisSettings) -> None:
    memo = RedisReviewMemo.connect(replace(redis_settings, socket_timeout_s=2.0), 77)
    try:
        await memo.put("uid-ttl", FIRST)
        ttl = await memo._redis.ttl(memo.key("uid-ttl"))
        assert 0 < ttl <= 77
    finally:
        await memo.close()


async def test_an_unreachable_store_is_store_unavailable() -> None:
    memo = RedisReviewMemo.connect(
        RedisSettings(f"redis://127.0.0.1:{free_port()}/0", "p:", socket_timeout_s=0.5), 600)
    try:
        with pytest.raises(StoreUnavailable):
            await memo.put("uid", FIRST)
        with pytest.raises(StoreUnavailable):
            await memo.get("uid")
    finally:
        await memo.close()
