"""A Sentinel failover, for real: the primary is killed, a replica takes over, and
podnet hands out no address twice.

The promoted replica has a replication ID of its own, so every subnet is fenced there
until the index is rebuilt; allocation then resumes through the same client, which
found the new primary by asking the sentinels. Writes acknowledged by a replica
(``min_replica_acks``) are still there after the failover. A primary that comes back
as it was refuses what podnet asks of it. The measured times are printed (run with
``-s``), never asserted: they are the machine's, not podnet's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio
import yaml

from ipam import errors
from ipam.records import Allocation
from ipam.settings import IpamSettings, RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from tests.sentinel_fixtures import SentinelCluster, admin, config_options
from tests.waiting import eventually

pytestmark = pytest.mark.slow
MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"


DEBUG_FROM_LOOPBACK = ("--enable-debug-command", "local")  # for the test to freeze it


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(tmp_path, primary_options=DEBUG_FROM_LOOPBACK)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def connect(url: str, acks: int = 1) -> Ipam:
    settings = RedisSettings(url=url, prefix=f"f{uuid.uuid4().hex[:8]}:", socket_timeout_s=1.0,
                             min_replica_acks=acks, replica_ack_timeout_ms=500)
    return Ipam.connect(settings, IpamSettings(require_rebuilt=True))


async def start_subnet(ipam: Ipam) -> None:
    await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/22"))
    await ipam.mark_rebuilt("s")


async def fenced_or_unavailable(ipam: Ipam, token: str) -> str:
    """``fenced`` or ``unavailable``; a reservation made is a failure of the test."""
    try:
        made = await ipam.reserve("s", token)
    except errors.Fenced:
        return "fenced"
    except errors.StoreUnavailable:
        return "unavailable"
    raise AssertionError(f"{token} got {made.ips} before the index was rebuilt")


async def rebuild(ipam: Ipam, live: list[Allocation]) -> None:
    """What the sync worker's full resync does once the new primary answers: every live
    pod's allocation is in the index (here: still there, since a replica held it), then
    the subnet is marked rebuilt on this Redis. Retried while the remaining replica has
    not yet attached to the new primary (WAIT finds no replica)."""
    for allocation in live:
        assert await ipam.lookup_token(allocation.token, "s") == allocation
    while True:
        try:
            await ipam.mark_rebuilt("s")
            return
        except errors.StoreUnavailable:
            await asyncio.sleep(0.05)


def distinct(allocations: list[Allocation]) -> bool:
    ips = [ip for allocation in allocations for ip in allocation.ips]
    macs = [allocation.mac for allocation in allocations]
    return len(set(ips)) == len(ips) and len(set(macs)) == len(macs)


async def test_after_a_failover_allocation_is_fenced_until_the_rebuild_then_resumes_by_itself(
    cluster: SentinelCluster,
) -> None:
    ipam = connect(cluster.url)
    try:
        await start_subnet(ipam)
        before = list(await asyncio.gather(*(ipam.reserve("s", f"b{i}") for i in range(50))))
        old = cluster.primary_port()
        killed = time.monotonic()
        cluster.server_on(old).stop(kill=True)  # kill -9

        seen: list[str] = []
        while not seen or seen[-1] != "fenced":  # the new primary answers, fenced
            seen.append(await fenced_or_unavailable(ipam, f"d{len(seen)}"))
            if seen[-1] == "unavailable":
                await asyncio.sleep(0.05)
        answered = time.monotonic()
        new = cluster.primary_port()
        assert new != old
        for n in range(5):  # stays fenced, for any number of callers
            assert await fenced_or_unavailable(ipam, f"again{n}") == "fenced"

        # An emptied script cache on the new primary is reloaded as the scripts run.
        with admin(new) as direct:
            direct.script_flush()
        await rebuild(ipam, before)
        rebuilt = time.monotonic()
        after = list(await asyncio.gather(*(ipam.reserve("s", f"a{i}") for i in range(50))))
        resumed = time.monotonic()
        assert distinct(before + after)
        print(f"\nfailover: {seen.count('unavailable')} calls unavailable for "
              f"{answered - killed:.2f}s until the new primary answered (fenced); "
              f"fenced until the rebuild {rebuilt - answered:.2f}s later; allocation "
              f"unavailable {resumed - killed:.2f}s in all")
    finally:
        await ipam.close()


async def test_a_concurrent_load_through_a_failover_never_hands_out_an_address_twice(
    cluster: SentinelCluster,
) -> None:
    ipam = connect(cluster.url)
    made: list[Allocation] = []
    refused = {"fenced": 0, "unavailable": 0}
    stop = asyncio.Event()

    async def worker(name: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                made.append(await ipam.reserve("s", f"{name}-{n}"))
            except errors.Fenced:
                refused["fenced"] += 1
                await asyncio.sleep(0.02)
            except errors.StoreUnavailable:
                refused["unavailable"] += 1
                await asyncio.sleep(0.02)

    try:
        await start_subnet(ipam)
        workers = [asyncio.create_task(worker(f"w{i}")) for i in range(8)]
        await eventually(lambda: len(made) >= 100, 60, "100 reservations")
        old = cluster.primary_port()
        cluster.server_on(old).stop(kill=True)
        killed, at_kill = time.monotonic(), len(made)
        await eventually(lambda: refused["fenced"] > 0, 60, "a fenced answer")
        answered = time.monotonic()
        await rebuild(ipam, made)  # every reservation podnet reported is still held
        await eventually(lambda: len(made) >= at_kill + 100, 60, "100 more reservations")
        resumed = time.monotonic()
        stop.set()
        await asyncio.gather(*workers)
        assert distinct(made)
        for allocation in made:
            assert await ipam.lookup_token(allocation.token, "s") == allocation
        print(f"\nunder load: {len(made)} reservations, {refused} refusals; new primary "
              f"answered {answered - killed:.2f}s after the kill, allocation resumed "
              f"{resumed - killed:.2f}s after it")
    finally:
        stop.set()
        await ipam.close()


async def test_a_write_no_replica_acknowledges_is_reported_unavailable_never_done(
    cluster: SentinelCluster,
) -> None:
    ipam = connect(cluster.url, acks=3)  # there are only two replicas
    try:
        with pytest.raises(errors.StoreUnavailable, match="fewer than the 3 asked for"):
            await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
    finally:
        await ipam.close()


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[SentinelCluster]:
    """The cluster with the replication options of the shipped Redis servers
    (``min-replicas-*`` of ``manifests/redis/sentinel/redis-ha.yaml``)."""
    options = (*shipped_replication_options(), *DEBUG_FROM_LOOPBACK)
    cluster = SentinelCluster(tmp_path, primary_options=options)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def shipped_replication_options() -> tuple[str, ...]:
    path = MANIFESTS / "redis" / "sentinel" / "redis-ha.yaml"
    [config] = [d["data"]["redis.conf"] for d in yaml.safe_load_all(path.read_text())
                if d and d["kind"] == "ConfigMap" and "redis.conf" in d.get("data", {})]
    options = config_options(config, "min-replicas-")
    assert "--min-replicas-to-write" in options
    return options


async def outcome(ipam: Ipam, token: str) -> str:
    try:
        made = await ipam.reserve("s", token)
    except errors.IpamError as exc:
        return f"{type(exc).__name__} ({exc})"
    return f"ok {made.ips[0]}"


def direct(port: int, prefix: str, acks: int) -> Ipam:
    """A podnet client still talking to one server by its address: one whose connection
    outlived the failover, or that was pointed at the old primary."""
    settings = RedisSettings(url=f"redis://127.0.0.1:{port}/0", prefix=prefix, retries=0,
                             socket_timeout_s=10.0, min_replica_acks=acks,
                             replica_ack_timeout_ms=500)
    return Ipam.connect(settings, IpamSettings(require_rebuilt=True))


async def wait_role(port: int, role: str, timeout_s: float = 30.0) -> float:
    started = time.monotonic()
    client = redis.asyncio.Redis(port=port, socket_timeout=1.0, decode_responses=True)
    try:
        while time.monotonic() - started < timeout_s:
            try:
                if (await client.info("replication"))["role"] == role:
                    return time.monotonic() - started
            except redis.exceptions.RedisError:
                pass
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    raise AssertionError(f"port {port} did not become {role} in {timeout_s}s")


async def test_an_old_primary_restarted_as_it_was_hands_out_nothing_and_loses_nothing_acked(
    shipped: SentinelCluster,
) -> None:
    ipam = connect(shipped.url)
    try:
        await start_subnet(ipam)
        before = [await ipam.reserve("s", f"b{i}") for i in range(20)]
        old = shipped.primary_port()
        shipped.server_on(old).stop(kill=True)
        await ipam_answers_fenced(ipam)
        new = shipped.primary_port()
        shipped.server_on(old).start()  # its own AOF, no replica, still a primary itself
        stale = direct(old, ipam.keys.prefix, acks=0)  # not even WAIT to help
        try:
            answers = [await outcome(stale, f"stale{n}") for n in range(20)]
        finally:
            await stale.close()
        assert not [a for a in answers if a.startswith("ok")], answers
        demoted = await wait_role(old, "slave")
        await rebuild(ipam, before)
        after = [await ipam.reserve("s", f"a{i}") for i in range(20)]
        assert distinct(before + after)
        assert new == shipped.primary_port()
        print(f"\nthe old primary, back as a primary, answered {set(answers)}; "
              f"Sentinel made it a replica {demoted:.2f}s after its restart")
    finally:
        await ipam.close()


async def ipam_answers_fenced(ipam: Ipam) -> None:
    """Until the new primary answers (fenced: its index is not rebuilt yet)."""
    n = 0
    while await fenced_or_unavailable(ipam, f"probe{n}") != "fenced":
        n += 1
        await asyncio.sleep(0.05)


async def test_a_partitioned_primary_reports_no_write_done_that_a_failover_loses(
    cluster: SentinelCluster,
) -> None:
    await partition(cluster, "without min-replicas-to-write")


async def test_with_the_shipped_options_a_partitioned_primary_reports_no_write_done(
    shipped: SentinelCluster,
) -> None:
    await partition(shipped, "with the shipped options")


async def partition(shipped: SentinelCluster, what: str) -> None:
    """Freeze the primary past the sentinels' patience while two podnet clients still
    talk to it, one with WAIT and one without; a reservation reported done must be
    held after the failover."""
    ipam = connect(shipped.url)
    try:
        await start_subnet(ipam)
        before = [await ipam.reserve("s", f"b{i}") for i in range(20)]
        old = shipped.primary_port()
        acked = direct(old, ipam.keys.prefix, acks=1)
        unacked = direct(old, ipam.keys.prefix, acks=0)
        await acked.ping()
        await unacked.ping()
        # The primary stops answering anyone for 4 s: the sentinels see it down and
        # promote a replica; what reached it meanwhile runs once it wakes.
        frozen = redis.asyncio.Redis(port=old, socket_timeout=10.0)
        try:
            sleeping = asyncio.create_task(
                frozen.execute_command("DEBUG", "SLEEP", "4"))  # type: ignore[no-untyped-call]
            await asyncio.sleep(0.3)
            answers = await asyncio.gather(outcome(acked, "partitioned-acked"),
                                           outcome(unacked, "partitioned-unacked"))
            await sleeping
        finally:
            await frozen.aclose()
        await acked.close()
        await unacked.close()
        assert answers[0].startswith("StoreUnavailable"), answers  # never reported as done
        await wait_role(old, "slave")
        await ipam_answers_fenced(ipam)
        await rebuild(ipam, before)
        kept = await ipam.lookup_token("partitioned-unacked", "s")
        print(f"\npartitioned primary {what}: with WAIT {answers[0]}; without WAIT "
              f"{answers[1]}, {'still held' if kept else 'lost'} after the failover")
        after = [await ipam.reserve("s", f"a{i}") for i in range(40)]
        assert distinct(before + after)
    finally:
        await ipam.close()
