"""Script calls made in the same event-loop turn travel to Redis in one pipeline.

Under load many coroutines reserve at once (every admission in flight, every pod of a
resync). Sent one by one, each call pays a client round trip; packed into one pipeline
they pay one between them, which is most of the client's cost per reservation. A lone
call waits one loop iteration and goes alone, so an idle caller loses nothing.

Each call is still its own script, atomic on its own; a batch is only a transport.
``NOSCRIPT`` (the script cache emptied by a restart or failover) is answered by sending
that call again through the script object, which loads the script.

A script written to take many requests at once (one ``ARGV`` each, one reply each, each
request handled as if it were a call of its own) can go further: ``call_merged`` packs
the requests made in one turn for the same script and keys into one script call. Redis
then parses one command and runs the script once for all of them, and the client packs
and reads one command instead of many; the requests keep their own answers.

With ``min_replica_acks`` a batch ends with ``WAIT``: Redis replicates asynchronously,
and a reply sent before any replica holds the write is lost with a failed primary. WAIT
counts the replicas that hold everything the connection wrote, so one WAIT after a
pipeline covers all of its scripts. Too few replicas in time and every script of the
batch fails with ``StoreUnavailable`` (retryable): its write may still survive, which is
why callers retry under the same token and never free an address on a timeout. Off (0),
nothing is added, not even the pipeline a lone call does not need.

On Redis Cluster a batch is split by the node serving each call's slot, and each part
is one pipeline on one connection of that node (redis-py's cluster pipeline refuses
scripts), ended by its own ``WAIT`` with ``min_replica_acks``: each shard's replicas
acknowledge that shard's writes. A call the node turns away because its slot moved
(``MOVED``, ``ASK``, ``TRYAGAIN``) goes again alone through the cluster client, which
follows the redirection; with ``min_replica_acks`` it fails as ``StoreUnavailable``
instead (retryable), since a call sent alone would have no ``WAIT`` of its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.commands.core import AsyncScript

from ipam.connection import RedisClient
from ipam.errors import StoreUnavailable

UNIT_SEPARATOR = "\x1f"
"""Joins a request's fields into one script argument (no field can hold it: names,
tokens and MACs are printable, and JSON escapes control characters)."""


@dataclass(frozen=True)
class _Call:
    script: AsyncScript
    keys: list[str]
    args: list[str]
    futures: list[asyncio.Future[Any]]
    """One future: a plain call, settled by the script's answer. Several (a merged
    call, one argument each): settled by the matching items of the answer."""
    merged: bool = False

    def settle(self, result: Any) -> None:
        if not self.merged:
            if not self.futures[0].done():  # done: its caller was cancelled
                self.futures[0].set_result(result)
            return
        if not isinstance(result, list) or len(result) != len(self.futures):
            self.fail(redis.exceptions.ResponseError(
                f"expected {len(self.futures)} replies from a merged script call"))
            return
        for future, item in zip(self.futures, result, strict=True):
            if not future.done():
                future.set_result(item)

    def fail(self, exc: BaseException) -> None:
        for future in self.futures:
            if not future.done():
                future.set_exception(exc)


class ScriptBatcher:
    def __init__(
        self, client: RedisClient, max_batch: int = 256, max_merge: int = 32,
        *, min_replica_acks: int = 0, replica_ack_timeout_ms: int = 1000,
    ) -> None:
        self._client = client
        self._acks = min_replica_acks
        self._ack_timeout_ms = replica_ack_timeout_ms
        self._max_batch = max_batch
        self._max_merge = max_merge
        """Most requests in one merged script call: Redis serves no one else while it
        runs, so a bound keeps the wait it imposes on other callers short."""
        self._queue: list[_Call] = []
        self._merging: dict[tuple[str, tuple[str, ...]], _Call] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, keys: list[str], args: list[str]) -> Any:
        future = self._enqueue()
        self._queue.append(_Call(script, keys, args, [future]))
        return await future

    async def call_merged(self, script: AsyncScript, keys: list[str], arg: str) -> Any:
        """One request to a many-request script (see the module's docstring); returns
        this request's reply."""
        future = self._enqueue()
        group = (script.sha, tuple(keys))
        pending = self._merging.get(group)
        if pending is None or len(pending.futures) >= self._max_merge:
            pending = self._merging[group] = _Call(script, keys, [], [], merged=True)
            self._queue.append(pending)
        pending.args.append(arg)
        pending.futures.append(future)
        return await future

    def _enqueue(self) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return loop.create_future()

    def _flush(self) -> None:
        self._scheduled = False
        self._merging.clear()
        while self._queue:
            batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
            task = asyncio.ensure_future(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Call]) -> None:
        if isinstance(self._client, RedisCluster):
            await _NodeBatches(self._client, self).send(batch)
            return
        if self._acks > 0:
            await self._send_acknowledged(batch)
            return
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
                call.fail(exc)
            return
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, redis.exceptions.NoScriptError):
                await self._settle_alone(call)
            elif isinstance(result, Exception):
                call.fail(result)
            else:
                call.settle(result)

    @property
    def acks(self) -> int:
        return self._acks

    @property
    def ack_timeout_ms(self) -> int:
        return self._ack_timeout_ms

    @staticmethod
    async def _settle_alone(call: _Call) -> None:
        try:
            result = await call.script(keys=call.keys, args=call.args)
        except (redis.exceptions.RedisError, OSError) as exc:
            call.fail(exc)
            return
        call.settle(result)

    async def _send_acknowledged(self, batch: list[_Call]) -> None:
        """Send ``batch`` and WAIT on the same connection; the scripts the cache had
        lost go again, loaded first, with a WAIT of their own."""
        results = await self._acknowledged(batch, load=False)
        again = [c for c, r in zip(batch, results, strict=True)
                 if isinstance(r, redis.exceptions.NoScriptError)]
        settled = dict(zip(map(id, batch), results, strict=True))
        if again:
            settled.update(zip(map(id, again), await self._acknowledged(again, load=True),
                               strict=True))
        for call in batch:
            result = settled[id(call)]
            if isinstance(result, BaseException):
                call.fail(result)
            else:
                call.settle(result)

    async def _acknowledged(self, calls: list[_Call], *, load: bool) -> list[Any]:
        """Each call's answer (or its exception); a success that too few replicas
        acknowledged becomes ``StoreUnavailable``."""
        scripts = list({c.script.sha: c.script for c in calls}.values()) if load else []
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for script in scripts:
                    pipe.script_load(script.script)
                for call in calls:
                    pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
                pipe.wait(self._acks, self._ack_timeout_ms)
                replies = await pipe.execute(raise_on_error=False)
        except (redis.exceptions.RedisError, OSError) as exc:
            return [exc] * len(calls)
        *answers, acked = replies[len(scripts):]
        shortfall = self.shortfall(acked)
        if shortfall is None:
            return answers
        return [a if isinstance(a, BaseException) else shortfall for a in answers]

    def shortfall(self, acked: Any) -> StoreUnavailable | None:
        if isinstance(acked, int) and acked >= self._acks:
            return None
        got = f"{acked} replicas" if isinstance(acked, int) else f"WAIT failed ({acked})"
        return StoreUnavailable(
            f"redis: the write was acknowledged by {got}, fewer than the "
            f"{self._acks} asked for within {self._ack_timeout_ms} ms; it may or may not "
            "survive a failover, so it is not reported as done")


_REDIRECTED = (redis.exceptions.MovedError, redis.exceptions.AskError,
               redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)
"""What a node answers when the call's slot is not (or not wholly) its own now."""
_TRANSPORT = (OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
"""A node gone or slow (a failover under way): the cluster client finds the new one."""


class _NodeBatches:
    """One batch on a Redis Cluster: a pipeline per node (see the module's docstring)."""

    def __init__(self, client: RedisCluster, batcher: ScriptBatcher) -> None:
        self._client = client
        self._batcher = batcher

    async def send(self, batch: list[_Call]) -> None:
        try:
            groups = await self._by_node(batch)
        except (redis.exceptions.RedisError, OSError) as exc:
            for call in batch:
                call.fail(exc)
            return
        await asyncio.gather(*(self._send_node(node, calls) for node, calls in groups))

    async def _by_node(self, batch: list[_Call]) -> list[tuple[ClusterNode, list[_Call]]]:
        if self._client._initialize:  # the shards are learnt on first use
            await self._client.initialize()
        groups: dict[str, tuple[ClusterNode, list[_Call]]] = {}
        for call in batch:
            node = self._client.get_node_from_key(call.keys[0])
            assert node is not None  # a primary, and the slot map covers every slot
            groups.setdefault(node.name, (node, []))[1].append(call)
        return list(groups.values())

    async def _send_node(self, node: ClusterNode, calls: list[_Call]) -> None:
        results = await self._pipeline(node, calls, load=False)
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            again = [c for c, r in zip(calls, results, strict=True)
                     if isinstance(r, redis.exceptions.NoScriptError)]
            reloaded = dict(zip(map(id, again), await self._pipeline(node, again, load=True),
                                strict=True))
            results = [reloaded.get(id(c), r) for c, r in zip(calls, results, strict=True)]
        if any(isinstance(r, (*_REDIRECTED, *_TRANSPORT)) for r in results):
            await self._relearn()
        alone = []
        for call, result in zip(calls, results, strict=True):
            if isinstance(result, (*_REDIRECTED, *_TRANSPORT)):
                if self._batcher.acks == 0:
                    alone.append(call)
                else:
                    call.fail(StoreUnavailable(f"redis cluster: {result}; retry"))
            elif isinstance(result, BaseException):
                call.fail(result)
            else:
                call.settle(result)
        await asyncio.gather(*(ScriptBatcher._settle_alone(call) for call in alone))

    async def _relearn(self) -> None:
        """Ask the cluster again which node serves which slot (after a redirection or a
        node gone); while it cannot answer, the next call asks again."""
        try:
            await self._client.nodes_manager.initialize()
        except (redis.exceptions.RedisError, OSError):
            self._client._initialize = True

    async def _pipeline(self, node: ClusterNode, calls: list[_Call], *, load: bool) -> list[Any]:
        """Each call's answer (or its exception) from one pipeline on ``node``; with
        ``min_replica_acks`` a success too few of its replicas hold is
        ``StoreUnavailable``."""
        scripts = list({c.script.sha: c.script for c in calls}.values()) if load else []
        commands = [PipelineCommand(0, "SCRIPT LOAD", s.script) for s in scripts]
        commands += [PipelineCommand(0, "EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
                     for c in calls]
        acks = self._batcher.acks
        if acks > 0:
            commands.append(PipelineCommand(0, "WAIT", acks, self._batcher.ack_timeout_ms))
        try:
            await node.execute_pipeline(commands)
        except (redis.exceptions.RedisError, OSError) as exc:
            return [exc] * len(calls)
        answers = [c.result for c in commands[len(scripts):len(scripts) + len(calls)]]
        if acks == 0:
            return answers
        shortfall = self._batcher.shortfall(commands[-1].result)
        if shortfall is None:
            return answers
        return [a if isinstance(a, BaseException) else shortfall for a in answers]
