"""Failover: what losing a machine of the control plane costs podnet, measured on real
daemons on loopback.

Run from the repository root: ``python bench/failover.py`` (``--help`` for the options).

- **OVN NB raft**: three NB members; the sync worker's NB writer reconciles a burst of
  ``--pods`` pods (in transactions of ``--batch`` rows, as a large step is cut) while the
  leader is killed with SIGKILL ``--kill-after`` seconds in. ``nb_converge_s`` is the
  time from the kill until the NB holds exactly the desired rows; ``nb_lost_rows`` and
  ``nb_duplicate_rows`` count desired ports missing or written twice. As a reference the
  same burst runs on an undisturbed cluster (``nb_reference_s``), so the ratio says what
  the kill cost.
- **OVN SB raft and northd**: three SB members and two ovn-northd; the SB leader is
  killed and the active northd stopped, then a logical switch is added in the NB:
  ``sb_converge_s`` is the time until its datapath is in the SB, written by the standby
  northd through the new SB leader (``northd_takeover_s`` until a northd is active).

- **Redis under Sentinel**: a primary, two replicas and three sentinels (the lab's
  ``--ha`` group); ``--webhooks`` processes reserve addresses as fast as they can
  (``min_replica_acks=1``, allocation fenced until rebuilt, as the deployed webhook),
  the primary is killed with SIGKILL ``--redis-kill-after`` seconds in, and this process
  does what the sync worker does on a new replication ID: it marks the index rebuilt.
  ``redis_unavailable_s`` is the longest gap between two acknowledged reservations from
  a second before the kill on;
  ``redis_duplicates`` counts addresses acknowledged to two tokens, ``redis_lost``
  acknowledged reservations the new primary does not hold.

It ends with one line ``RESULT name=failover key=value ...``; targets: unavailable
<= 10 s, converge <= 15 s, nothing lost or doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipam import errors
from ipam.settings import IpamSettings, RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from podnet.daemons import free_port
from podnet.lab.redis_group import RedisGroup
from podnet.ovn import NB_SCHEMA
from podnet.ovn_raft import RaftCentral, RaftDatabase
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.nb import Northbound
from tests.nb_burst import desired, port_counts, settle


def nb_burst(directory: Path, pods: int, batch: int, kill_after_s: float | None
             ) -> dict[str, float]:
    """One burst into a fresh NB cluster, with (or without) the leader killed mid-way."""
    with RaftDatabase(directory, NB_SCHEMA, "OVN_Northbound", prefix="nb") as db:
        api = nb_api(db.remote)
        try:
            writer, state = Northbound(api, max_changes=batch), desired(pods)
            killed: list[float] = []
            leader = db.leader()
            assert leader is not None

            def kill() -> None:
                db.kill(leader)
                killed.append(time.monotonic())

            killer = threading.Timer(kill_after_s, kill) if kill_after_s is not None else None
            began = time.monotonic()
            if killer is not None:
                killer.start()
            failures = settle(writer, state, 120)
            ended = time.monotonic()
            if killer is not None:
                killer.join()
                if ended < killed[0]:  # done before the kill: prove it holds after it
                    failures += settle(writer, state, 120)
                    ended = time.monotonic()
        finally:
            close_api(api)
        counts = port_counts(db)
    wanted = set(state.switch_ports)
    return {"took_s": ended - began, "after_kill_s": ended - killed[0] if killed else 0.0,
            "failures": failures, "lost": len(wanted - set(counts)),
            "duplicates": sum(1 for count in counts.values() if count > 1)}


def wait_until(check: Any, timeout_s: float) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout_s:
            raise SystemExit(f"not within {timeout_s} s")
        time.sleep(0.05)
    return time.monotonic() - began


def sb_failover(directory: Path) -> dict[str, float]:
    """The SB leader killed and the active northd stopped: how long until an NB change
    reaches the SB again."""
    with RaftCentral(directory) as central:
        active, leader = central.active_northd(), central.sb.leader()
        assert active is not None and leader is not None
        began = time.monotonic()
        active.stop()
        central.sb.kill(leader)
        central.nbctl("ls-add", "after-failover")
        takeover = wait_until(lambda: central.active_northd() is not None, 60)
        wait_until(lambda: "after-failover" in central.sbctl(
            "--bare", "--columns=external_ids", "list", "Datapath_Binding"), 60)
        return {"sb_converge_s": time.monotonic() - began, "northd_takeover_s": takeover}


REDIS_PREFIX = "failover:"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings(url=url, prefix=REDIS_PREFIX, socket_timeout_s=1.0,
                         min_replica_acks=1, replica_ack_timeout_ms=500)


def webhook_load(url: str, tag: str, until: float) -> list[tuple[float, str, str]]:
    """One webhook-like process: reserve until ``until``; (time, token, ip) acknowledged."""
    async def load() -> list[tuple[float, str, str]]:
        ipam = Ipam.connect(redis_settings(url), IpamSettings(require_rebuilt=True))
        acked, count = [], 0
        try:
            while time.time() < until:
                token = f"{tag}-{count}"
                try:
                    made = await ipam.reserve("s", token)
                    acked.append((time.time(), token, made.ip_strings()[0]))
                    count += 1
                except (errors.Fenced, errors.StoreUnavailable):
                    await asyncio.sleep(0.02)
        finally:
            await ipam.close()
        return acked

    return asyncio.run(load())


async def rebuild_on_new_primary(url: str, until: float) -> None:
    """The sync worker's part: on a new replication ID, mark the index rebuilt (every
    acknowledged write is on the promoted replica, so the index is whole)."""
    ipam = Ipam.connect(redis_settings(url))
    known = ""
    try:
        while time.time() < until:
            with contextlib.suppress(errors.IpamError):
                current = await ipam.replication_id()
                if current != known:
                    await ipam.mark_rebuilt("s")
                    known = current
            await asyncio.sleep(0.2)
    finally:
        await ipam.close()


async def held_tokens(url: str, tokens: list[str]) -> set[str]:
    ipam = Ipam.connect(redis_settings(url))
    held: set[str] = set()
    try:
        for start in range(0, len(tokens), 50):  # within the connection pool
            chunk = tokens[start:start + 50]
            found = await asyncio.gather(*(ipam.lookup_token(t, "s") for t in chunk))
            held |= {t for t, allocation in zip(chunk, found, strict=True) if allocation}
        return held
    finally:
        await ipam.close()


def redis_failover(directory: Path, webhooks: int, duration_s: float,
                   kill_after_s: float) -> dict[str, float]:
    group = RedisGroup(directory, free_port())
    group.start()
    try:
        async def prepare() -> None:
            ipam = Ipam.connect(redis_settings(group.url))
            try:
                while True:  # until the replicas are attached and acknowledge
                    try:
                        await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/12"))
                        await ipam.mark_rebuilt("s")
                        return
                    except errors.StoreUnavailable:
                        await asyncio.sleep(0.1)
            finally:
                await ipam.close()

        asyncio.run(prepare())
        until = time.time() + duration_s
        with concurrent.futures.ProcessPoolExecutor(webhooks) as pool:
            loads = [pool.submit(webhook_load, group.url, f"w{i}", until)
                     for i in range(webhooks)]
            time.sleep(kill_after_s)
            primary = group.primary_process()
            pid = primary.pid() if primary is not None else None
            assert pid is not None
            killed = time.time()
            os.kill(pid, signal.SIGKILL)
            asyncio.run(rebuild_on_new_primary(group.url, until))
            acked = sorted(entry for load in loads for entry in load.result())
        held = asyncio.run(held_tokens(group.url, [token for _, token, _ in acked]))
    finally:
        for process in group.processes().values():
            process.stop()
    times = [when for when, _, _ in acked if when > killed - 1.0]
    if not times or times[-1] <= killed:
        raise SystemExit("no reservation was made after the primary was killed")
    ips = collections.Counter(ip for _, _, ip in acked)
    return {"redis_unavailable_s": max(b - a for a, b in itertools.pairwise(times)),
            "redis_duplicates": sum(1 for count in ips.values() if count > 1),
            "redis_lost": len(acked) - len(held), "redis_acked": len(acked)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=2000, help="pods in the NB burst")
    parser.add_argument("--batch", type=int, default=100,
                        help="rows per NB transaction (default 100)")
    parser.add_argument("--kill-after", type=float, default=0.5,
                        help="seconds into the burst the NB leader is killed")
    parser.add_argument("--webhooks", type=int, default=2,
                        help="processes reserving addresses through the Redis failover")
    parser.add_argument("--redis-duration", type=float, default=15.0,
                        help="seconds of reservations in the Redis run (default 15)")
    parser.add_argument("--redis-kill-after", type=float, default=4.0,
                        help="seconds into the Redis run the primary is killed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="podnet-failover-") as tmp:
        root = Path(tmp)
        reference = nb_burst(root / "reference", args.pods, args.batch, None)
        faulted = nb_burst(root / "faulted", args.pods, args.batch, args.kill_after)
        sb = sb_failover(root / "central")
        redis = redis_failover(root / "redis", args.webhooks, args.redis_duration,
                               args.redis_kill_after)
    print(f"{'NB burst':<28} {'seconds':>8} {'failed steps':>13} {'lost':>5} {'doubled':>8}")
    for label, run in (("undisturbed", reference), ("leader killed", faulted)):
        print(f"{label:<28} {run['took_s']:>8.2f} {run['failures']:>13.0f} "
              f"{run['lost']:>5.0f} {run['duplicates']:>8.0f}")
    print(f"ratio (killed / undisturbed): {faulted['took_s'] / reference['took_s']:.2f}")
    print(f"SB leader killed + active northd stopped: NB change in SB after "
          f"{sb['sb_converge_s']:.2f} s (standby northd active after "
          f"{sb['northd_takeover_s']:.2f} s)")
    print(f"Redis primary killed under {args.webhooks} webhook processes: "
          f"{redis['redis_acked']:.0f} reservations acknowledged, none for "
          f"{redis['redis_unavailable_s']:.2f} s at most, {redis['redis_duplicates']:.0f} "
          f"addresses doubled, {redis['redis_lost']:.0f} acknowledged reservations lost")
    result = {
        "redis_unavailable_s": f"{redis['redis_unavailable_s']:.2f}",
        "redis_duplicates": int(redis["redis_duplicates"]),
        "redis_lost": int(redis["redis_lost"]), "redis_acked": int(redis["redis_acked"]),
        "pods": args.pods, "nb_converge_s": f"{faulted['after_kill_s']:.2f}",
        "nb_reference_s": f"{reference['took_s']:.2f}",
        "nb_lost_rows": int(faulted["lost"]), "nb_duplicate_rows": int(faulted["duplicates"]),
        "nb_failed_steps": int(faulted["failures"]),
        "sb_converge_s": f"{sb['sb_converge_s']:.2f}",
        "northd_takeover_s": f"{sb['northd_takeover_s']:.2f}",
    }
    print("RESULT name=failover " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
