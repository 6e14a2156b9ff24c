"""The IPAM on a real three-shard Redis Cluster: every operation works across shards, a
busy subnet's slot moves to another shard while pods are admitted, and shards fail over
(by hand and by a killed primary), with no address handed out twice and no error a
caller sees beyond a retryable ``StoreUnavailable`` or ``Fenced``.

A subnet whose shard failed over, or whose slot moved, is fenced until it is rebuilt on
the Redis serving it now; the other shards' subnets go on. The measured times are
printed (run with ``-s``), never asserted: they are the machine's, not podnet's.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.crc import key_slot

from ipam import errors
from ipam.settings import IpamSettings, RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from podnet.daemons import require_binary
from tests.cluster_fixtures import ShardedCluster
from tests.sentinel_fixtures import admin
from tests.waiting import eventually
from webhook.memo import MemoEntry, RedisReviewMemo

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ShardedCluster]:
    cluster = ShardedCluster(tmp_path)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def settings_for(cluster: ShardedCluster, acks: int = 0) -> RedisSettings:
    return RedisSettings(url=cluster.url, prefix=f"c{uuid.uuid4().hex[:8]}:",
                         socket_timeout_s=1.0, min_replica_acks=acks,
                         replica_ack_timeout_ms=500)


def connect(settings: RedisSettings) -> Ipam:
    return Ipam.connect(settings, IpamSettings(require_rebuilt=True))


def slot_of(ipam: Ipam, subnet: str) -> int:
    return key_slot(ipam.keys.subnet_base(subnet).encode())


async def subnets_on_every_shard(ipam: Ipam, cluster: ShardedCluster) -> dict[int, str]:
    """A rebuilt subnet on each shard: primary port -> subnet name."""
    found: dict[int, str] = {}
    for n in itertools.count():
        name = f"s{n}"
        primary = cluster.primary_of_slot(slot_of(ipam, name))
        if primary not in found:
            await ipam.ensure_subnet(build_subnet(name, f"10.{n}.0.0/22"))
            await ipam.mark_rebuilt(name)
            found[primary] = name
        if len(found) == len(cluster.primaries()):
            return found
    raise AssertionError("unreachable")


@dataclass
class Admissions:
    """Pods admitted without pause into some subnets: who got what, and what failed."""

    ipam: Ipam
    subnets: list[str]
    given: dict[str, str] = field(default_factory=dict)  # address -> token
    doubled: list[str] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)
    running: bool = True
    last_refusal: dict[str, float] = field(default_factory=dict)

    async def admit(self, worker: int) -> None:
        for n in itertools.count():
            if not self.running:
                return
            subnet = self.subnets[n % len(self.subnets)]
            token = f"w{worker}-{n}"
            try:
                allocation = await self.ipam.reserve(subnet, token)
            except (errors.StoreUnavailable, errors.Fenced) as exc:
                kind = f"{subnet} {type(exc).__name__}"
                self.refusals[kind] = self.refusals.get(kind, 0) + 1
                self.last_refusal[subnet] = time.monotonic()
                await asyncio.sleep(0.01)
                continue
            for ip in allocation.ips:
                if str(ip) in self.given:
                    self.doubled.append(f"{ip} to {token} and {self.given[str(ip)]}")
                self.given[str(ip)] = token
            await asyncio.sleep(0.005)

    async def run(self, workers: int = 8) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.admit(w)) for w in range(workers)]


async def stop(admissions: Admissions, tasks: list[asyncio.Task[None]]) -> None:
    admissions.running = False
    await asyncio.gather(*tasks)


async def test_every_operation_works_with_subnets_on_every_shard(
    cluster: ShardedCluster,
) -> None:
    settings = settings_for(cluster, acks=1)
    ipam = connect(settings)
    memo = RedisReviewMemo.connect(settings, ttl_s=60)
    try:
        by_shard = await subnets_on_every_shard(ipam, cluster)
        names = sorted(by_shard.values())
        assert await ipam.subnet_names() == names
        assert [s.name for s in await ipam.subnets()] == names
        made = await asyncio.gather(*(ipam.reserve(names[n % 3], f"t{n}") for n in range(30)))
        assert len({ip for a in made for ip in a.ips}) == 30
        pod = made[4]
        await ipam.bind(pod.subnet, pod.token, uid="u-4", namespace="ns", name="p-4")
        assert (await ipam.lookup_uid("u-4"), await ipam.lookup_pod("ns", "p-4"),
                await ipam.lookup_ip(pod.ips[0]), await ipam.lookup_token(pod.token)) == (
            (await ipam.lookup_token(pod.token),) * 4)
        assert (await ipam.usage(pod.subnet)).families[0].used == 1
        ids = await ipam.replication_ids()
        assert len(set(ids.values())) == 3  # one per shard
        assert await ipam.release(pod.subnet, "uid", "u-4") is not None
        kept = await memo.put("review-1", MemoEntry({"a": "1"}))
        assert await memo.put("review-1", MemoEntry({"a": "2"})) == kept
        assert await memo.get("review-1") == kept
        assert await ipam.reserve(names[0], "t0") == made[0]  # a retry gets its own
    finally:
        await memo.close()
        await ipam.close()


def move_slot(cluster: ShardedCluster, slot: int, to_port: int, keys_per_step: int = 3) -> None:
    """Move ``slot`` to the primary on ``to_port`` as ``redis-cli --cluster reshard`` does:
    importing and migrating marks, its keys a few at a time, then the new owner."""
    from_port = cluster.primary_of_slot(slot)
    ids = {int(n["port"]): n["id"] for n in cluster.nodes()}
    with admin(from_port) as source, admin(to_port) as target:
        target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[from_port])
        source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[to_port])
        while keys := source.execute_command("CLUSTER GETKEYSINSLOT", slot, keys_per_step):
            source.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
            time.sleep(0.05)  # the slot stays split a while, as under a slow reshard
        for port in cluster.primaries():
            with admin(port) as node:
                node.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[to_port])


async def test_a_busy_subnet_moves_to_another_shard_with_no_address_given_twice(
    cluster: ShardedCluster,
) -> None:
    ipam = connect(settings_for(cluster))
    try:
        by_shard = await subnets_on_every_shard(ipam, cluster)
        busy = next(iter(by_shard.values()))
        slot = slot_of(ipam, busy)
        target = next(p for p in cluster.primaries() if p != cluster.primary_of_slot(slot))
        admissions = Admissions(ipam, [busy])
        tasks = await admissions.run()
        await asyncio.sleep(0.5)
        before = len(admissions.given)
        ids_before = await ipam.replication_ids()
        started = time.monotonic()
        await asyncio.to_thread(move_slot, cluster, slot, target)
        moved_s = time.monotonic() - started
        # The subnet's rebuilt mark names the shard it came from: fenced until rebuilt,
        # which the sync worker does as soon as the watched replication IDs change.
        ids_after = await ipam.replication_ids()
        assert ids_after[busy] != ids_before[busy]
        await ipam.mark_rebuilt(busy)
        rebuilt_at = time.monotonic()
        count = len(admissions.given)
        await eventually(lambda: len(admissions.given) > count + 20, timeout_s=10)
        await stop(admissions, tasks)
        assert admissions.doubled == []
        assert cluster.primary_of_slot(slot) == target
        held = await ipam.usage(busy)
        assert held.families[0].reserved == len(admissions.given)
        print(f"\nreshard of a busy subnet's slot: {moved_s:.2f} s, {before} addresses "
              f"before, {len(admissions.given)} after; refusals {admissions.refusals}; "
              f"allocating again {time.monotonic() - rebuilt_at:.2f} s after the rebuild")
    finally:
        await ipam.close()


async def fail_over(cluster: ShardedCluster, primary: int, *, kill: bool) -> int:
    """Fail the shard of ``primary`` over to its replica; returns the replica's port."""
    replica = cluster.replica_of(primary)
    if kill:
        cluster.server_on(primary).stop(kill=True)
    else:
        with admin(replica) as client:
            client.execute_command("CLUSTER FAILOVER")
    await eventually(lambda: replica in cluster.primaries() and cluster.healthy(),
                     timeout_s=30)
    return replica


@pytest.mark.parametrize("kill", [False, True], ids=["cluster-failover", "kill-9"])
async def test_a_shard_failover_fences_only_that_shards_subnets_until_rebuilt(
    cluster: ShardedCluster, kill: bool,
) -> None:
    ipam = connect(settings_for(cluster, acks=1))
    try:
        by_shard = await subnets_on_every_shard(ipam, cluster)
        primary, failing = next(iter(by_shard.items()))
        others = [s for p, s in by_shard.items() if p != primary]
        acknowledged = await ipam.reserve(failing, "before-failover")
        admissions = Admissions(ipam, [failing, *others])
        tasks = await admissions.run()
        await asyncio.sleep(0.5)
        watched = await ipam.replication_id()
        started = time.monotonic()
        await fail_over(cluster, primary, kill=kill)
        promoted_s = time.monotonic() - started
        async def watch_changed() -> bool:
            try:
                return await ipam.replication_id() != watched
            except errors.StoreUnavailable:
                return False

        await eventually(watch_changed, timeout_s=10, what="a changed replication ID")
        if kill:  # the shard has no replica to acknowledge a write (StoreUnavailable)
            # until the old primary is back, as the new primary's replica
            cluster.server_on(primary).start()
            await eventually(cluster.replicated, timeout_s=30, what="the shard replicated")
        fenced = await ipam_refuses(ipam, failing)
        assert fenced == "fenced"
        for other in others:
            assert (await ipam.reserve(other, f"during-{other}")).ips
        await ipam.mark_rebuilt(failing)
        count = len(admissions.given)
        await eventually(lambda: len(admissions.given) > count + 20, timeout_s=10)
        resumed_s = time.monotonic() - started
        await stop(admissions, tasks)
        assert admissions.doubled == []
        assert await ipam.lookup_token("before-failover", failing) == acknowledged
        refused = {k for k in admissions.refusals if not k.startswith(failing)}
        print(f"\n{'kill -9' if kill else 'CLUSTER FAILOVER'} of a shard primary: replica "
              f"primary after {promoted_s:.2f} s, allocating again {resumed_s:.2f} s after "
              f"(rebuild by hand); refusals {admissions.refusals}; other shards refused: "
              f"{sorted(refused)}")
    finally:
        await ipam.close()


async def ipam_refuses(ipam: Ipam, subnet: str) -> str:
    """``fenced`` once the subnet's shard answers and refuses; a new address is a failure."""
    deadline = time.monotonic() + 10
    while True:
        try:
            made = await ipam.reserve(subnet, f"probe-{uuid.uuid4().hex[:6]}")
        except errors.Fenced:
            return "fenced"
        except errors.StoreUnavailable:
            if time.monotonic() > deadline:
                return "unavailable"
            await asyncio.sleep(0.1)
            continue
        raise AssertionError(f"reserved {made} on a shard that was not rebuilt")


def test_the_fixture_cluster_is_what_redis_cli_checks_as_sound(cluster: ShardedCluster) -> None:
    checked = subprocess.run(
        [require_binary("redis-cli"), "--cluster", "check",
         f"127.0.0.1:{cluster.servers[0].port}"],
        check=False, capture_output=True, text=True, timeout=30)
    assert "[OK] All 16384 slots covered." in checked.stdout
