"""Script calls made in the same event-loop turn travel to Redis in one pipeline.

Under load many coroutines reserve at once (every admission in flight, every pod of a
resync). Sent one by one, each call pays a client round trip; packed into one pipeline
they pay one between them, which is most of the client's cost per reservation. A lone
call waits one loop iteration and goes alone, so an idle caller loses nothing.

Each call is still its own script, atomic on its own; a batch is only a transport.
``NOSCRIPT`` (the script cache emptied by a restart or failover) is answered by sending
that call again through the script object, which loads the script.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.commands.core import AsyncScript


@dataclass(frozen=True)
class _Call:
    script: AsyncScript
    keys: list[str]
    args: list[str]
    future: asyncio.Future[Any]


class ScriptBatcher:
    def __init__(self, client: aioredis.Redis, max_batch: int = 256) -> None:
        self._client = client
        self._max_batch = max_batch
        self._queue: list[_Call] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, keys: list[str], args: list[str]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Call(script, keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue:
            batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
            task = asyncio.ensure_future(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Call]) -> None:
        if len(batch) == 1:
            await self._settle_alone(batch[0])
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for call in batch:
                    pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
                results = await pipe.execute(raise_on_error=False)
        except (redis.exceptions.RedisError, OSError) as exc:
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, redis.exceptions.NoScriptError):
                await self._settle_alone(call)
            elif isinstance(result, Exception):
                call.future.set_exception(result)
            else:
                call.future.set_result(result)

    @staticmethod
    async def _settle_alone(call: _Call) -> None:
        try:
            call.future.set_result(await call.script(keys=call.keys, args=call.args))
        except (redis.exceptions.RedisError, OSError) as exc:
            call.future.set_exception(exc)
