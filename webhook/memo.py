"""The answer given to each AdmissionReview uid, shared by every webhook replica.

kube-apiserver retries a review whose answer it did not receive, possibly on another
replica. The first answer is kept in Redis (``SET NX EX``) under ``<prefix>review:<uid>``
so the retry gets the same addresses and reserves nothing more. What is kept is the
annotations and node selector, not the patch: the patch is rebuilt against the object
the retry carries, so it always applies.

Every admission keeps its answer, so ``put`` is on the hot path. It is a script
(``SET NX EX``, else ``GET``: a retry learns the kept answer in the same round trip),
and the puts made in one event-loop turn share one script call
(``ScriptBatcher.call_merged``): under load, the client's cost per command and per
round trip is most of a put's cost. Each put is still settled on its own, in order,
and written before its caller gets an answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import orjson
import redis.exceptions

from ipam.batching import UNIT_SEPARATOR, ScriptBatcher
from ipam.connection import RedisClient, close_client, is_cluster, redis_client
from ipam.errors import StoreUnavailable
from ipam.settings import RedisSettings

_KEEP_FIRST = r"""
local replies = {}
for i, request in ipairs(ARGV) do
  local ttl, answer, uid = string.match(request, '^(%d+)\31([^\31]*)\31(.*)$')
  local key = KEYS[1] .. uid
  if redis.call('SET', key, answer, 'NX', 'EX', ttl) then
    replies[i] = ''
  else
    replies[i] = redis.call('GET', key) or ''
  end
end
return replies
"""
"""KEYS[1] is the prefix of the review keys; each ARGV is one put: the TTL, the answer
and the uid, joined by the unit separator (the answer is JSON, which escapes it; the
uid comes last, so it may hold anything). In order, each put keeps its answer unless
one is kept already, and replies '' when it kept its own, else the one kept before."""


@dataclass(frozen=True)
class MemoEntry:
    """What a successful admission wrote into the pod."""

    annotations: Mapping[str, str]
    node_selector: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return orjson.dumps(
            {"annotations": dict(self.annotations), "nodeSelector": dict(self.node_selector)}
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> MemoEntry:
        data = orjson.loads(text)
        return cls(dict(data.get("annotations", {})), dict(data.get("nodeSelector", {})))


class ReviewMemo(Protocol):
    async def get(self, uid: str) -> MemoEntry | None: ...

    async def put(self, uid: str, entry: MemoEntry) -> MemoEntry:
        """Keep ``entry`` unless one is already kept; return the kept one."""
        ...


class RedisReviewMemo:
    """``ReviewMemo`` on Redis, beside the IPAM's keys."""

    def __init__(
        self, client: RedisClient, prefix: str, ttl_s: int, min_replica_acks: int = 0,
        replica_ack_timeout_ms: int = 1000,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl = str(ttl_s)
        # On Redis Cluster the review keys share a hash tag, so the script that puts
        # many of them at once touches one slot, as a cluster requires.
        self._base = f"{prefix}{{review}}:" if is_cluster(client) else f"{prefix}review:"
        self._keys = [self._base]
        self._keep_first = client.register_script(_KEEP_FIRST)
        self._batcher = ScriptBatcher(client, min_replica_acks=min_replica_acks,
                                      replica_ack_timeout_ms=replica_ack_timeout_ms)

    @classmethod
    def connect(cls, redis: RedisSettings, ttl_s: int) -> RedisReviewMemo:
        return cls(redis_client(redis), redis.prefix, ttl_s, redis.min_replica_acks,
                   redis.replica_ack_timeout_ms)

    def key(self, uid: str) -> str:
        return f"{self._base}{uid}"

    async def get(self, uid: str) -> MemoEntry | None:
        try:
            raw = await self._redis.get(self.key(uid))
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from exc
        return MemoEntry.from_json(str(raw)) if raw else None

    async def put(self, uid: str, entry: MemoEntry) -> MemoEntry:
        request = UNIT_SEPARATOR.join((self._ttl, entry.to_json(), uid))
        call = self._batcher.call_merged(self._keep_first, self._keys, request)
        try:
            kept = await call
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from exc
        return MemoEntry.from_json(str(kept)) if kept else entry

    async def close(self) -> None:
        await close_client(self._redis)
