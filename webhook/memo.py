"""The answer given to each AdmissionReview uid, shared by every webhook replica.

kube-apiserver retries a review whose answer it did not receive, possibly on another
replica. The first answer is kept in Redis (``SET NX EX``) under ``<prefix>review:<uid>``
so the retry gets the same addresses and reserves nothing more. What is kept is the
annotations and node selector, not the patch: the patch is rebuilt against the object
the retry carries, so it always applies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
import redis.exceptions

from ipam.errors import StoreUnavailable


@dataclass(frozen=True)
class MemoEntry:
    """What a successful admission wrote into the pod."""

    annotations: Mapping[str, str]
    node_selector: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"annotations": dict(self.annotations), "nodeSelector": dict(self.node_selector)}
        )

    @classmethod
    def from_json(cls, text: str) -> MemoEntry:
        data = json.loads(text)
        return cls(dict(data.get("annotations", {})), dict(data.get("nodeSelector", {})))


class ReviewMemo(Protocol):
    async def get(self, uid: str) -> MemoEntry | None: ...

    async def put(self, uid: str, entry: MemoEntry) -> MemoEntry:
        """Keep ``entry`` unless one is already kept; return the kept one."""
        ...


class RedisReviewMemo:
    """``ReviewMemo`` on Redis, beside the IPAM's keys."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s

    @classmethod
    def connect(cls, url: str, prefix: str, ttl_s: int, timeout_s: float) -> RedisReviewMemo:
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        return cls(client, prefix, ttl_s)

    def key(self, uid: str) -> str:
        return f"{self._prefix}review:{uid}"

    async def get(self, uid: str) -> MemoEntry | None:
        try:
            raw = await self._redis.get(self.key(uid))
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from exc
        return MemoEntry.from_json(str(raw)) if raw else None

    async def put(self, uid: str, entry: MemoEntry) -> MemoEntry:
        key = self.key(uid)
        try:
            if await self._redis.set(key, entry.to_json(), nx=True, ex=self._ttl_s):
                return entry
            raw = await self._redis.get(key)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from exc
        return MemoEntry.from_json(str(raw)) if raw else entry

    async def close(self) -> None:
        await self._redis.aclose()
