"""The IPAM on Redis: the only module that talks to the store.

Every mutation is one Lua script on the keys of one subnet (they share a hash tag, so
the layout works on Redis Cluster too), which makes it atomic against any number of
callers in any number of processes. Scripts run through redis-py's ``Script`` objects:
EVALSHA, loading the script again when the script cache was emptied by a restart or a
failover (``NOSCRIPT``). With ``RedisSettings.min_replica_acks`` a script counts as done
only once that many replicas hold its writes (see ``ipam.batching``).

Idempotency is by token: reserving again under a token returns what the token holds,
binding again to the same pod is a no-op, and releasing what is gone is not an error.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeVar

import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from ipam import errors, names
from ipam.addresses import (
    Interval,
    IPAddress,
    interval_total,
    merge_intervals,
    parse_ip,
    subtract_intervals,
)
from ipam.annotations import MAC_ADDRESS, RESERVATION
from ipam.batching import UNIT_SEPARATOR, ScriptBatcher
from ipam.connection import RedisClient, close_client, is_cluster, redis_client
from ipam.mac import random_mac
from ipam.metrics import IpamMetrics
from ipam.pool import IPPoolSpec, Pool, pooled_intervals
from ipam.records import (
    Allocation,
    FamilyUsage,
    SubnetUsage,
    allocation_from_raw,
    decode_raw,
)
from ipam.requests import ReserveRequest, static_offsets
from ipam.settings import IpamSettings, RedisSettings
from ipam.subnet import SubnetSpec, check_no_overlap, parse_subnet

_SUFFIXES = (
    "meta", "alloc", "owner:4", "owner:6", "free:4", "free:6", "cursor", "expiry",
    "macs", "pods", "uids", "sticky", "stats",
)
_MAC_ATTEMPTS = 8
T = TypeVar("T")
ReleaseBy = Literal["token", "pod", "uid", "sticky"]


def _script_source(name: str) -> str:
    folder = resources.files("ipam") / "lua"
    common = (folder / "common.lua").read_text()
    return common + "\n" + (folder / f"{name}.lua").read_text()


@dataclass(frozen=True)
class Page:
    """One page of a subnet's allocations; ``next_cursor`` is 0 on the last page."""

    allocations: list[Allocation]
    next_cursor: int


class KeyLayout:
    """Key names. One subnet's keys share the hash tag ``{<subnet>}``.

    ``declare_all`` (on Redis Cluster) makes a script declare every key of its subnet,
    not only their base, so Redis can tell whether a slot being moved is wholly on one
    side (see ``lua/common.lua``)."""

    def __init__(self, prefix: str, *, declare_all: bool = False) -> None:
        if "{" in prefix or "}" in prefix:
            raise errors.MalformedValue("redis prefix", prefix, "must not contain braces")
        self.prefix = prefix
        self.declare_all = declare_all

    def script_keys(self, subnet: str) -> list[str]:
        """The keys a script on ``subnet`` declares."""
        return self.subnet_keys(subnet) if self.declare_all else [self.subnet_base(subnet)]

    def subnet_base(self, subnet: str) -> str:
        """The key every script declares; the scripts append the suffixes themselves."""
        return f"{self.prefix}{{{subnet}}}:"

    def subnet_keys(self, subnet: str) -> list[str]:
        return [self.subnet_key(subnet, suffix) for suffix in _SUFFIXES]

    def subnet_key(self, subnet: str, suffix: str) -> str:
        return f"{self.subnet_base(subnet)}{suffix}"

    @property
    def subnet_index(self) -> str:
        return f"{self.prefix}subnets"

    @property
    def pool_index(self) -> str:
        return f"{self.prefix}ippools"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}epoch"


class Ipam:
    """Async IPAM client. Create with ``Ipam.connect`` or use ``open_ipam``."""

    def __init__(
        self,
        client: RedisClient,
        redis_settings: RedisSettings,
        settings: IpamSettings,
        metrics: IpamMetrics | None = None,
    ) -> None:
        self._redis = client
        self.keys = KeyLayout(redis_settings.prefix, declare_all=is_cluster(client))
        self.settings = settings
        self.metrics = metrics or IpamMetrics()
        self._specs: dict[str, tuple[SubnetSpec, float]] = {}
        self._spec_cache_s = 1.0
        self._batcher = ScriptBatcher(
            client, min_replica_acks=redis_settings.min_replica_acks,
            replica_ack_timeout_ms=redis_settings.replica_ack_timeout_ms)
        self._scripts = {
            name: client.register_script(_script_source(name))
            for name in (
                "reserve", "bind", "release", "expire", "configure", "rebuilt", "pooled",
                "replid",
            )
        }

    @classmethod
    def connect(
        cls,
        redis_settings: RedisSettings,
        settings: IpamSettings | None = None,
        metrics: IpamMetrics | None = None,
    ) -> Ipam:
        client = redis_client(redis_settings)
        return cls(client, redis_settings, settings or IpamSettings(), metrics)

    async def close(self) -> None:
        await close_client(self._redis)

    # ---------------------------------------------------------------- plumbing

    async def _call(self, operation: Awaitable[T]) -> T:
        """Await one Redis operation, turning store failures into ``StoreUnavailable``."""
        try:
            return await operation
        except redis.exceptions.RedisError as exc:
            raise errors.StoreUnavailable(f"redis: {exc}") from exc
        except OSError as exc:
            raise errors.StoreUnavailable(f"redis unreachable: {exc}") from exc
        except (AttributeError, TypeError) as exc:
            # redis-py's asyncio connections can be torn down by a concurrent failure
            # (a Cluster node killed) while a command is being written on them, which
            # surfaces as its writer being None: the store was lost, not the request
            raise errors.StoreUnavailable(f"redis connection lost mid-command: {exc!r}") \
                from exc

    async def _run(self, script: str, subnet: str, *args: object) -> Any:
        keys = self.keys.script_keys(subnet)
        call = self._batcher.call(self._scripts[script], keys, [str(a) for a in args])
        return await self._call(call)

    async def _run_merged(self, script: str, subnet: str, request: str) -> Any:
        """One request to a script that takes many (see ``ScriptBatcher.call_merged``):
        the requests for ``subnet`` made in one loop turn share one script call."""
        keys = self.keys.script_keys(subnet)
        return await self._call(self._batcher.call_merged(self._scripts[script], keys, request))

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    # ----------------------------------------------------------------- subnets

    async def ensure_subnet(self, spec: SubnetSpec | dict[str, Any]) -> SubnetSpec:
        """Register or update a subnet; refuses overlaps and changes that hurt holders."""
        parsed = parse_subnet(spec) if isinstance(spec, dict) else spec
        others = await self.subnets()
        check_no_overlap(parsed, others)
        previous = next((s for s in others if s.name == parsed.name), None)
        reset, reopened = _config_change(previous, parsed)
        gateways = {str(f.family): str(f.offset_of(f.gateway)) for f in parsed.families}
        stored = _subnet_object(parsed)
        epoch = await self._call(self._redis.get(self.keys.epoch)) or ""
        result = await self._run(
            "configure", parsed.name,
            json.dumps(parsed.allocator_config()), json.dumps(stored),
            json.dumps(gateways), json.dumps(reopened), json.dumps(reset), epoch,
        )
        if result[0] == "gateway_in_use":
            raise errors.SubnetChangeRefused(
                "spec.gateway", parsed.gateway, f"is held by reservation {result[3]}"
            )
        if result[0] == "in_use":
            raise errors.SubnetChangeRefused(
                "spec.cidrBlock", parsed.cidr_block,
                f"cannot change while {result[2]} addresses of subnet {parsed.name} are in use",
            )
        await self._call(self._redis.sadd(self.keys.subnet_index, parsed.name))
        self._specs[parsed.name] = (parsed, time.monotonic())
        return parsed

    async def delete_subnet(self, name: str) -> None:
        """Remove a subnet; refused while any address of it is held."""
        holders = await self._call(self._redis.hvals(self.keys.subnet_key(name, "alloc"))
        )
        if holders:
            spec = await self.subnet(name)
            owners = [allocation_from_raw(decode_raw(h), spec).owner for h in holders[:3]]
            raise errors.SubnetChangeRefused(
                "subnet", name,
                f"has {len(holders)} addresses in use (by {', '.join(owners)}"
                f"{', ...' if len(holders) > 3 else ''})",
            )

        async def delete() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(*self.keys.subnet_keys(name))
                pipe.srem(self.keys.subnet_index, name)
                await pipe.execute()

        await self._call(delete())
        self._specs.pop(name, None)

    async def subnet_names(self) -> list[str]:
        names = await self._call(self._redis.smembers(self.keys.subnet_index))
        return sorted(str(name) for name in names)

    async def subnets(self) -> list[SubnetSpec]:
        names = await self.subnet_names()

        async def fetch() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hget(self.keys.subnet_key(name, "meta"), "spec")
                return list(await pipe.execute())

        specs: list[SubnetSpec] = []
        now = time.monotonic()
        for raw in await self._call(fetch()):
            if raw:
                spec = parse_subnet(json.loads(raw))
                self._specs[spec.name] = (spec, now)
                specs.append(spec)
        return specs

    async def subnet(self, name: str, fresh: bool = False) -> SubnetSpec:
        cached = self._specs.get(name)
        if cached and not fresh and time.monotonic() - cached[1] < self._spec_cache_s:
            return cached[0]
        raw = await self._call(self._redis.hget(self.keys.subnet_key(name, "meta"), "spec"))
        if raw is None:
            self._specs.pop(name, None)
            raise errors.UnknownSubnet(name)
        spec = parse_subnet(json.loads(raw))
        self._specs[name] = (spec, time.monotonic())
        return spec

    async def mark_rebuilt(self, subnet: str) -> str:
        """Record that ``subnet``'s index now holds every live pod (see ``require_rebuilt``);
        returns the replication ID of the Redis it was rebuilt on."""
        replication_id: str = await self._run("rebuilt", subnet)
        return replication_id

    async def replication_id(self) -> str:
        """The replication ID of the Redis serving now (``master_replid``): it changes
        when Redis restarts or a replica is promoted, i.e. whenever the index may have
        lost writes and must be rebuilt from the live pods.

        On Redis Cluster each shard has its own, and a subnet may move to another
        shard: this is then a digest of ``replication_ids()``, which changes when any
        subnet's shard restarts, fails over or is another one."""
        if not isinstance(self._redis, RedisCluster):
            info = await self._call(self._redis.info("replication"))
            return str(info.get("master_replid", ""))
        ids = await self.replication_ids()
        text = "\n".join(f"{name} {ids[name]}" for name in sorted(ids))
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    async def replication_ids(self) -> dict[str, str]:
        """Per subnet, the replication ID of the Redis serving it now: the one its
        ``rebuilt`` mark is compared with (on one Redis, the same for every subnet)."""
        names = await self.subnet_names()
        script = self._scripts["replid"]  # a read: sent alone, never waits for replicas
        ids = await asyncio.gather(*(self._call(script(keys=self.keys.script_keys(name)))
                                     for name in names))
        return {name: str(replication_id) for name, replication_id in zip(names, ids,
                                                                          strict=True)}

    async def set_epoch(self, replication_id: str) -> None:
        """Record that the whole index was rebuilt on the Redis with ``replication_id``:
        subnets created from now on start out rebuilt. On Redis Cluster it may name the
        shards' IDs, separated by spaces: a subnet created on one of them starts out
        rebuilt."""
        await self._call(self._redis.set(self.keys.epoch, replication_id))

    async def set_fenced(self, subnet: str, fenced: bool) -> None:
        """Pause (or resume) allocation in a subnet while its index is rebuilt."""
        key = self.keys.subnet_key(subnet, "meta")
        await self._call(self._redis.hset(key, "fenced", "1" if fenced else "0"))

    # ------------------------------------------------------------------- pools

    async def ensure_pool(self, pool: IPPoolSpec) -> Pool:
        """Register or update an IPPool (validated against its subnet)."""
        resolved = pool.resolve(await self.subnet(pool.subnet, fresh=True))
        document = json.dumps(
            {"metadata": {"name": pool.name}, "spec": {
                "subnet": pool.subnet, "ips": list(pool.ips),
                "namespaces": list(pool.namespaces), "nodeSelector": dict(pool.node_selector),
            }}
        )
        await self._call(self._redis.hset(self.keys.pool_index, pool.name, document))
        await self._sync_pooled(pool.subnet)
        return resolved

    async def _sync_pooled(self, subnet_name: str) -> None:
        """Tell the scripts which offsets the subnet's IPPools hold back from dynamic
        allocation (as Kube-OVN does: a pod without the pool never gets its addresses)."""
        subnet = await self.subnet(subnet_name, fresh=True)
        pools = [p.resolve(subnet) for p in await self.pools() if p.subnet == subnet_name]
        raw = await self._call(self._redis.hget(self.keys.subnet_key(subnet_name, "meta"),
                                                "pooled"))
        previous: dict[str, list[list[int]]] = json.loads(raw) if raw else {}
        pooled = pooled_intervals(subnet, pools)
        reopened = {
            family: [list(i) for i in subtract_intervals(
                [(a, b) for a, b in previous.get(family, [])],
                [(a, b) for a, b in pooled.get(family, [])])]
            for family in previous
        }
        await self._run("pooled", subnet_name, json.dumps(pooled), json.dumps(reopened))

    async def pool(self, name: str) -> tuple[IPPoolSpec, Pool]:
        from ipam.pool import parse_ippool

        raw = await self._call(self._redis.hget(self.keys.pool_index, name))
        if raw is None:
            raise errors.UnknownPool(name)
        spec = parse_ippool(json.loads(raw))
        return spec, spec.resolve(await self.subnet(spec.subnet))

    async def pool_usage(self, pool: Pool) -> list[Allocation]:
        """The allocations holding any address of ``pool``.

        Each family costs the smaller of the pool's addresses and the subnet's held
        addresses: a pool of millions of addresses is checked against what is held."""
        spec = await self.subnet(pool.subnet)
        tokens: set[str] = set()
        by_family: dict[int, list[tuple[int, int]]] = {}
        for entry in pool.entries:
            for span in entry.spans:
                by_family.setdefault(span.family, []).append((span.low, span.high))
        for family, spans in by_family.items():
            key = self.keys.subnet_key(pool.subnet, f"owner:{family}")
            merged = merge_intervals(spans)
            if interval_total(merged) <= await self._call(self._redis.hlen(key)):
                tokens |= await self._holders_by_offset(key, merged)
            else:
                tokens |= await self._holders_by_scan(key, merged)
        return [a for a in [await self._by_token(spec, t) for t in sorted(tokens)] if a]

    async def _holders_by_offset(self, key: str, spans: list[Interval]) -> set[str]:
        tokens: set[str] = set()
        fields = [str(o) for low, high in spans for o in range(low, high + 1)]
        for start in range(0, len(fields), 1000):
            held = await self._call(self._redis.hmget(key, fields[start:start + 1000]))
            tokens.update(str(t) for t in held if t)
        return tokens

    async def _holders_by_scan(self, key: str, spans: list[Interval]) -> set[str]:
        lows = [low for low, _ in spans]
        tokens: set[str] = set()
        cursor = 0
        while True:
            cursor, chunk = await self._call(self._redis.hscan(key, cursor, count=1000))
            held: dict[str, str] = chunk  # type: ignore[assignment]
            for offset, token in held.items():
                if offset.isdigit():
                    index = bisect.bisect_right(lows, int(offset)) - 1
                    if index >= 0 and int(offset) <= spans[index][1]:
                        tokens.add(str(token))
            if cursor == 0:
                return tokens

    async def delete_pool(self, name: str) -> None:
        _, resolved = await self.pool(name)
        holders = await self.pool_usage(resolved)
        if holders:
            raise errors.SubnetChangeRefused(
                "ippool", name,
                f"has {len(holders)} addresses in use (by "
                f"{', '.join(a.owner for a in holders[:3])}{', ...' if len(holders) > 3 else ''})",
            )
        await self._call(self._redis.hdel(self.keys.pool_index, name))
        await self._sync_pooled(resolved.subnet)

    async def pools(self) -> list[IPPoolSpec]:
        from ipam.pool import parse_ippool

        raw = await self._call(self._redis.hvals(self.keys.pool_index))
        return sorted((parse_ippool(json.loads(r)) for r in raw), key=lambda p: p.name)

    # -------------------------------------------------------------- lifecycle

    async def reserve(
        self,
        subnet: SubnetSpec | str,
        token: str,
        request: ReserveRequest | None = None,
        *,
        namespace: str = "",
        name: str = "",
    ) -> Allocation:
        """Reserve addresses (and a MAC) under ``token``; retrying returns the same.

        ``subnet`` is the spec when the caller holds it (the webhook's plan does), else
        its name; the reservation lives ``IpamSettings.reservation_ttl_s`` unless bound.
        """
        request = request or ReserveRequest()
        _check_fields(token, namespace, name, request.sticky_key)
        spec = subnet if isinstance(subnet, SubnetSpec) else await self.subnet(subnet)
        ttl_ms = int(1000 * self.settings.reservation_ttl_s)
        mode, payload = _mode_payload(spec, request)
        started = time.perf_counter()
        for _ in range(_MAC_ATTEMPTS):
            mac = request.mac or random_mac()
            fields = (
                token, str(ttl_ms), mac, "1" if request.mac else "0", mode, payload,
                request.sticky_key, namespace, name,
                "1" if self.settings.require_rebuilt else "0",
            )
            result = await self._run_merged("reserve", spec.name, UNIT_SEPARATOR.join(fields))
            if result[0] != "mac_taken":
                break
        outcome = result[0]
        self.metrics.observe("reserve", outcome, time.perf_counter() - started, spec.name)
        if outcome == "ok":
            return allocation_from_raw(decode_raw(result[1]), spec)
        raise await self._reserve_error(spec, request, result)

    async def _reserve_error(
        self, spec: SubnetSpec, request: ReserveRequest, result: Sequence[str]
    ) -> errors.IpamError:
        outcome = result[0]
        if outcome == "unknown_subnet":
            self._specs.pop(spec.name, None)
            return errors.UnknownSubnet(spec.name)
        if outcome == "fenced":
            return errors.Fenced(spec.name)
        if outcome == "conflict":
            holder = allocation_from_raw(decode_raw(result[3]), spec)
            if result[1] == "mac":
                return errors.AllocationConflict(MAC_ADDRESS, result[2], holder.owner)
            layout = spec.layout(4 if result[1] == "4" else 6)
            value = str(layout.address_at(int(result[2]))) if layout else result[2]
            return errors.AllocationConflict(request.field, value, holder.owner)
        if outcome == "sticky_held":
            holder = allocation_from_raw(decode_raw(result[2]), spec)
            held_by = f"{holder.owner} ({holder.state})"
            return errors.StickyHeld(result[1], held_by)
        if outcome == "exhausted":
            layout = spec.layout(4 if result[1] == "4" else 6)
            total = layout.usable if layout else 0
            return errors.Exhausted(f"subnet {spec.name}", min(int(result[2]), total), total)
        if outcome == "pool_exhausted":
            name = request.pool.name if request.pool and request.pool.name else "ip_pool"
            return errors.Exhausted(name, int(result[1]), int(result[2]))
        if outcome == "mac_taken":
            return errors.StoreUnavailable("could not find a free MAC after several attempts")
        return errors.IpamError(f"unexpected answer from the reserve script: {outcome}")

    async def bind(
        self, subnet: str, token: str, *, uid: str, namespace: str, name: str
    ) -> Allocation:
        """Tie a reservation to the stored pod; idempotent for the same pod."""
        spec = await self.subnet(subnet)
        result = await self._run("bind", subnet, token, uid, namespace, name)
        if result[0] == "unknown":
            raise errors.UnknownReservation(token)
        allocation = allocation_from_raw(decode_raw(result[1]), spec)
        if result[0] == "conflict":
            raise errors.AllocationConflict(RESERVATION, token, allocation.owner)
        return allocation

    async def release(
        self, subnet: str, by: ReleaseBy, value: str, *, keep_sticky: bool = False,
        only_reserved: bool = False,
    ) -> Allocation | None:
        """Free what ``value`` holds (or keep a StatefulSet ordinal's); None if nothing.

        ``only_reserved`` leaves a record alone that was bound meanwhile.
        """
        spec = await self.subnet(subnet)
        started = time.perf_counter()
        result = await self._run("release", subnet, by, value, "1" if keep_sticky else "0",
                                 "1" if only_reserved else "0")
        self.metrics.observe("release", result[0], time.perf_counter() - started, subnet)
        if result[0] == "none":
            return None
        return allocation_from_raw(decode_raw(result[1]), spec)

    async def expire(self, subnet: str) -> list[str]:
        """Release reservations past their TTL; returns their tokens."""
        expired: list[str] = await self._run("expire", subnet, self.settings.expire_batch)
        return expired

    async def expire_all(self) -> int:
        count = 0
        for name in await self.subnet_names():
            count += len(await self.expire(name))
        return count

    # ----------------------------------------------------------------- lookups

    async def _by_token(self, spec: SubnetSpec, token: str) -> Allocation | None:
        raw = await self._call(self._redis.hget(self.keys.subnet_key(spec.name, "alloc"), token)
        )
        return allocation_from_raw(decode_raw(raw), spec) if raw else None

    async def lookup_ip(self, ip: str | IPAddress) -> Allocation | None:
        address = parse_ip("ip", ip) if isinstance(ip, str) else ip
        for spec in await self.subnets():
            layout = spec.layout_for(address)
            if layout is None:
                continue
            key = self.keys.subnet_key(spec.name, f"owner:{layout.family}")
            offset = str(layout.offset_of(address))
            token = await self._call(self._redis.hget(key, offset))
            return await self._by_token(spec, str(token)) if token else None
        return None

    async def lookup_pod(self, namespace: str, name: str) -> Allocation | None:
        return await self._lookup_index("pods", f"{namespace}/{name}")

    async def lookup_uid(self, uid: str) -> Allocation | None:
        return await self._lookup_index("uids", uid)

    async def lookup_token(self, token: str, subnet: str | None = None) -> Allocation | None:
        specs = [await self.subnet(subnet)] if subnet else await self.subnets()
        for spec in specs:
            found = await self._by_token(spec, token)
            if found:
                return found
        return None

    async def _lookup_index(self, index: str, field: str) -> Allocation | None:
        specs = await self.subnets()

        async def fetch() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for spec in specs:
                    pipe.hget(self.keys.subnet_key(spec.name, index), field)
                return list(await pipe.execute())

        for spec, token in zip(specs, await self._call(fetch()), strict=True):
            if token:
                found = await self._by_token(spec, token)
                if found:
                    return found
        return None

    async def allocations(self, subnet: str, cursor: int = 0, limit: int = 100) -> Page:
        """A page of a subnet's allocations; resume with ``next_cursor``.

        Pages follow Redis HSCAN, whose count is a hint: a page may hold more than
        ``limit`` items (a small subnet comes back whole), sorted by address within it.
        """
        spec = await self.subnet(subnet)
        key = self.keys.subnet_key(subnet, "alloc")
        found: list[Allocation] = []
        while True:
            cursor, chunk = await self._call(self._redis.hscan(key, cursor, count=limit))
            records: dict[str, str] = chunk  # type: ignore[assignment]
            found.extend(allocation_from_raw(decode_raw(v), spec) for v in records.values())
            if cursor == 0 or len(found) >= limit:
                break
        found.sort(key=lambda a: [int(ip) for ip in a.ips])
        return Page(found, cursor)

    async def reservations(self, subnet: str) -> list[Allocation]:
        """The subnet's allocations still waiting for their pod (state reserved): the
        members of its expiry index, so the cost is theirs, not the subnet's."""
        spec = await self.subnet(subnet)
        found = await self._call(
            self._redis.zrange(self.keys.subnet_key(subnet, "expiry"), 0, -1))
        tokens = [str(token) for token in found]
        if not tokens:
            return []
        raw = await self._call(self._redis.hmget(self.keys.subnet_key(subnet, "alloc"), tokens))
        return [allocation_from_raw(decode_raw(value), spec) for value in raw if value]

    async def all_allocations(self, subnet: str) -> AsyncIterator[Allocation]:
        cursor = 0
        while True:
            page = await self.allocations(subnet, cursor, 1000)
            for allocation in page.allocations:
                yield allocation
            cursor = page.next_cursor
            if cursor == 0:
                return

    async def usage(self, subnet: str) -> SubnetUsage:
        spec = await self.subnet(subnet, fresh=True)

        async def fetch() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for layout in spec.families:
                    pipe.hlen(self.keys.subnet_key(subnet, f"owner:{layout.family}"))
                pipe.hgetall(self.keys.subnet_key(subnet, "stats"))
                pipe.hget(self.keys.subnet_key(subnet, "meta"), "fenced")
                return list(await pipe.execute())

        *held, stats, fenced = await self._call(fetch())
        reserved = int(stats.get("reserved", 0))
        families = tuple(
            FamilyUsage(
                family=layout.family,
                cidr=str(layout.network),
                total=layout.usable,
                used=max(int(count) - reserved, 0),
                reserved=reserved,
                excluded=layout.excluded_count,
            )
            for layout, count in zip(spec.families, held, strict=True)
        )
        return SubnetUsage(spec, families, int(stats.get("kept", 0)), fenced == "1")

    async def counters(self, subnet: str) -> dict[str, int]:
        stats = await self._call(self._redis.hgetall(self.keys.subnet_key(subnet, "stats"))
        )
        return {str(key): int(value) for key, value in stats.items()}


@asynccontextmanager
async def open_ipam(
    redis_settings: RedisSettings, settings: IpamSettings | None = None
) -> AsyncIterator[Ipam]:
    ipam = Ipam.connect(redis_settings, settings)
    try:
        yield ipam
    finally:
        await ipam.close()


def _check_fields(token: str, namespace: str, name: str, sticky_key: str) -> None:
    """Every field the reserve script reads is checked against its own format first, so
    no value can carry the separator the script splits its request on, nor pose as
    another pod's name or another ordinal's key."""
    problem = names.token_problem(token)
    if problem:
        raise errors.MalformedValue(RESERVATION, token, problem)
    for field, value in (("metadata.namespace", namespace), ("metadata.name", name)):
        problem = names.object_name_problem(value) if value else None
        if problem:
            raise errors.MalformedValue(field, value, problem)
    if sticky_key and names.parse_sticky_key(sticky_key) is None:
        raise errors.MalformedValue("statefulset key", sticky_key,
                                    "is not namespace/statefulset/ordinal or node/<name>")


def _mode_payload(spec: SubnetSpec, request: ReserveRequest) -> tuple[str, str]:
    if request.static_ips:
        offsets = request.offsets
        if offsets is None:
            offsets = static_offsets(spec, request.static_ips, request.field)
        return "static", json.dumps(offsets)
    if request.pool is not None:
        return "pool", json.dumps(request.pool.lua_entries())
    return "any", ""


def _config_change(
    previous: SubnetSpec | None, new: SubnetSpec
) -> tuple[list[str], dict[str, list[list[int]]]]:
    """Families whose CIDR changed (to reset) and offsets no longer excluded."""
    reset: list[str] = []
    reopened: dict[str, list[list[int]]] = {}
    for layout in new.families:
        old = previous.layout(layout.family) if previous else None
        family = str(layout.family)
        if old is None or old.network != layout.network:
            reset.append(family)
            continue
        span = layout.cursor_span - 1
        freed = subtract_intervals(
            merge_intervals((lo, min(hi, span)) for lo, hi in old.excluded if lo <= span),
            list(layout.excluded),
        )
        if freed:
            reopened[family] = [list(interval) for interval in freed]
    return reset, reopened


def _subnet_object(spec: SubnetSpec) -> dict[str, Any]:
    """A Subnet object equivalent to ``spec`` (stored so other processes can parse it)."""
    body: dict[str, Any] = {
        "cidrBlock": spec.cidr_block, "gateway": spec.gateway, **spec.policy_fields(),
    }
    return {
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": spec.name},
        "spec": body,
    }
