"""Many processes allocating at once, and crashes of clients and of Redis itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from podnet.daemons import RedisServer

ROOT = Path(__file__).resolve().parent.parent


def start_worker(
    server: RedisServer, prefix: str, subnet: str, tag: str, count: int, out: Path,
    concurrency: int = 32,
) -> subprocess.Popen[bytes]:
    args = [server.url, prefix, subnet, tag, str(count), str(concurrency), str(out)]
    return subprocess.Popen([sys.executable, "-m", "tests.workers", *args], cwd=ROOT)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def registered(server: RedisServer, prefix: str, cidr: str) -> Ipam:
    async def setup() -> Ipam:
        ipam = Ipam.connect(RedisSettings(url=server.url, prefix=prefix))
        await ipam.ensure_subnet(build_subnet("shared", cidr))
        return ipam

    ipam = asyncio.run(setup())
    return ipam


def stored_owners(server: RedisServer, prefix: str) -> dict[str, str]:
    """IP -> token, straight from the store."""

    async def fetch() -> dict[str, str]:
        ipam = Ipam.connect(RedisSettings(url=server.url, prefix=prefix))
        try:
            return {
                str(a.ips[0]): a.token async for a in ipam.all_allocations("shared")
            }
        finally:
            await ipam.close()

    return asyncio.run(fetch())


@pytest.mark.slow
def test_four_processes_never_share_an_address_and_exhaust_exactly_when_full(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}:"
    registered(redis_server, prefix, "10.20.0.0/18")  # 16,381 usable
    usable = 2**14 - 3
    logs = [tmp_path / f"w{n}.log" for n in range(4)]
    workers = [
        start_worker(redis_server, prefix, "shared", f"w{n}", 5000, log)
        for n, log in enumerate(logs)
    ]
    assert [w.wait(timeout=300) for w in workers] == [0, 0, 0, 0]

    results = [entry for log in logs for entry in read_log(log)]
    assert len(results) == 20_000
    granted = [entry["ip"] for entry in results if "ip" in entry]
    refused = [entry["exhausted"] for entry in results if "exhausted" in entry]
    assert len(granted) == usable
    assert len(set(granted)) == usable
    assert all(used == total == usable for used, total in refused)
    owners = stored_owners(redis_server, prefix)
    assert owners == {entry["ip"]: entry["token"] for entry in results if "ip" in entry}


@pytest.mark.slow
def test_a_client_killed_mid_way_leaves_no_duplicate_and_loses_nothing_acknowledged(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"k{uuid.uuid4().hex[:8]}:"
    registered(redis_server, prefix, "10.30.0.0/16")
    victim_log, survivor_log = tmp_path / "victim.log", tmp_path / "survivor.log"
    victim = start_worker(redis_server, prefix, "shared", "victim", 50_000, victim_log)
    survivor = start_worker(redis_server, prefix, "shared", "survivor", 3000, survivor_log)
    while len(read_log(victim_log)) < 1000:
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert survivor.wait(timeout=120) == 0

    acknowledged = read_log(victim_log) + read_log(survivor_log)
    owners = stored_owners(redis_server, prefix)
    for entry in acknowledged:
        assert owners[entry["ip"]] == entry["token"]
    assert len(owners) == len(set(owners))
    # In-flight reservations of the killed client exist at most once each.
    assert len(owners) - len(acknowledged) <= 32


@pytest.mark.slow
def test_redis_killed_and_restarted_from_its_aof_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync="always").start()
    try:
        prefix = "crash:"
        registered(server, prefix, "10.40.0.0/16")
        log = tmp_path / "client.log"
        client = start_worker(server, prefix, "shared", "c", 6000, log)
        while len(read_log(log)) < 1500:
            time.sleep(0.02)
        server.restart(kill=True)
        assert client.wait(timeout=180) == 0

        acknowledged = read_log(log)
        assert len(acknowledged) == 6000
        owners = stored_owners(server, prefix)
        assert owners == {entry["ip"]: entry["token"] for entry in acknowledged}
        counts = Counter(entry["token"] for entry in acknowledged)
        assert max(counts.values()) == 1
    finally:
        server.stop()
