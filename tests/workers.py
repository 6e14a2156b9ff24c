"""Client processes for the concurrency and crash tests.

Each worker is a separate OS process with its own connection pool, reserving under
tokens of its own and logging every *acknowledged* result to a file, line by line and
flushed, so a test can kill it at any moment and still know what it was told.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from ipam import errors
from ipam.settings import RedisSettings
from ipam.store import Ipam


async def reserve_many(
    url: str, prefix: str, subnet: str, tag: str, count: int, concurrency: int, out: Path
) -> None:
    ipam = Ipam.connect(RedisSettings(url=url, prefix=prefix, socket_timeout_s=2.0))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    with out.open("a", buffering=1) as log:

        async def one(token: str) -> None:
            while True:  # a lost reply is retried under the same token: idempotent
                try:
                    allocation = await ipam.reserve(subnet, token)
                except errors.Exhausted as exc:
                    log.write(json.dumps({"token": token, "exhausted": [exc.used, exc.total]}))
                    log.write("\n")
                    return
                except errors.StoreUnavailable:
                    await asyncio.sleep(0.05)
                    continue
                log.write(json.dumps({"token": token, "ip": str(allocation.ips[0])}) + "\n")
                return

        async def drain() -> None:
            while not queue.empty():
                await one(f"{tag}-{queue.get_nowait()}")

        await asyncio.gather(*(drain() for _ in range(concurrency)))
    await ipam.close()


def main() -> None:
    url, prefix, subnet, tag, count, concurrency, out = sys.argv[1:8]
    asyncio.run(
        reserve_many(url, prefix, subnet, tag, int(count), int(concurrency), Path(out))
    )


if __name__ == "__main__":
    main()
