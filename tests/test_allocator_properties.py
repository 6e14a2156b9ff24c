"""Invariants of the allocator, explored by hypothesis against a real redis-server.

A state machine reserves (any or a chosen address), binds and releases at random in a
small subnet, and after every step checks the store against a model: every offset is in
exactly one state (held, released, never used, or excluded), holders match the model,
and the gateway and excluded addresses are never handed out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from redis.asyncio import Redis

from ipam import errors
from ipam.requests import ReserveRequest
from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from podnet.daemons import RedisServer

T = TypeVar("T")
CIDR = "10.9.0.0/27"
EXCLUDES = ["10.9.0.10..10.9.0.12", "10.9.0.20"]


class AllocatorMachine(RuleBasedStateMachine):
    url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.ipam = Ipam.connect(RedisSettings(url=self.url, prefix=f"h{uuid.uuid4().hex[:8]}:"))
        self.raw: Redis = Redis.from_url(self.url, decode_responses=True)
        self.spec = self.run(self.ipam.ensure_subnet(build_subnet("s", CIDR, exclude_ips=EXCLUDES)))
        self.layout = self.spec.families[0]
        self.held: dict[str, int] = {}  # token -> offset
        self.bound: set[str] = set()
        self.issued = 0

    def next_token(self) -> str:
        """Deterministic tokens, so that hypothesis can replay the draws that pick them."""
        self.issued += 1
        return f"tok{self.issued:04d}"

    def run(self, coroutine: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.ipam.close())
        self.run(self.raw.aclose())
        self.loop.close()

    @rule()
    def reserve_any(self) -> None:
        tok = self.next_token()
        try:
            allocation = self.run(self.ipam.reserve("s", tok))
        except errors.Exhausted:
            assert len(self.held) == self.layout.usable
            return
        self.held[tok] = self.layout.offset_of(allocation.ips[0])

    @rule(offset=st.integers(0, 31))
    def reserve_static(self, offset: int) -> None:
        address = self.layout.address_at(offset)
        tok = self.next_token()
        request = ReserveRequest(static_ips=(address,))
        try:
            self.run(self.ipam.reserve("s", tok, request))
        except (errors.ExcludedAddress, errors.GatewayAddress):
            assert self.layout.is_excluded(offset)
            return
        except errors.AllocationConflict:
            assert offset in self.held.values()
            return
        assert offset not in self.held.values()
        self.held[tok] = offset

    @rule(data=st.data())
    def bind(self, data: st.DataObject) -> None:
        if not self.held:
            return
        tok = data.draw(st.sampled_from(sorted(self.held)))
        self.run(self.ipam.bind("s", tok, uid=f"uid-{tok}", namespace="ns", name=tok[:8]))
        self.bound.add(tok)

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if not self.held:
            return
        tok = data.draw(st.sampled_from(sorted(self.held)))
        by = "uid" if tok in self.bound and data.draw(st.booleans()) else "token"
        value = f"uid-{tok}" if by == "uid" else tok
        released = self.run(self.ipam.release("s", by, value))  # type: ignore[arg-type]
        assert released is not None
        del self.held[tok]
        self.bound.discard(tok)

    @invariant()
    def every_offset_is_in_exactly_one_state(self) -> None:
        keys = dict(zip(("owner", "free", "cursor"), (
            self.ipam.keys.subnet_key("s", "owner:4"),
            self.ipam.keys.subnet_key("s", "free:4"),
            self.ipam.keys.subnet_key("s", "cursor"),
        ), strict=True))
        owners: dict[str, str] = self.run(self.raw.hgetall(keys["owner"]))  # type: ignore[arg-type]
        members: list[str] = self.run(self.raw.zrange(keys["free"], 0, -1))  # type: ignore[arg-type]
        free = {int(member) for member in members}
        cursor = int(self.run(self.raw.hget(keys["cursor"], "4")) or 0)
        held = {int(offset): tok for offset, tok in owners.items()}
        assert held == {offset: tok for tok, offset in self.held.items()}
        for offset in range(self.layout.size):
            states = [
                offset in held,
                offset in free,
                self.layout.is_excluded(offset),
                offset >= cursor and offset not in held and not self.layout.is_excluded(offset),
            ]
            assert sum(states) == 1, (offset, states)
        assert not any(self.layout.is_excluded(offset) for offset in held)

    @invariant()
    def utilisation_adds_up(self) -> None:
        usage = self.run(self.ipam.usage("s")).families[0]
        assert usage.used + usage.reserved == len(self.held)
        assert usage.free == self.layout.usable - len(self.held)


def test_allocator_invariants_hold_under_random_operations(redis_server: RedisServer) -> None:
    AllocatorMachine.url = redis_server.url
    run_state_machine_as_test(
        AllocatorMachine,
        settings=settings(max_examples=40, stateful_step_count=40, deadline=None),
    )


def test_every_released_address_comes_back(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        ipam = Ipam.connect(RedisSettings(url=redis_server.url, prefix=f"r{uuid.uuid4().hex}:"))
        try:
            spec = await ipam.ensure_subnet(build_subnet("s", CIDR, exclude_ips=EXCLUDES))
            usable = spec.families[0].usable
            first = [await ipam.reserve("s", f"a{i}") for i in range(usable)]
            for allocation in first:
                await ipam.release("s", "token", allocation.token)
            second = [await ipam.reserve("s", f"b{i}") for i in range(usable)]
            assert {a.ips for a in second} == {a.ips for a in first}
        finally:
            await ipam.close()

    asyncio.run(scenario())
