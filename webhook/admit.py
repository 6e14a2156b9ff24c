"""Admission of one pod: decide, reserve in the IPAM, answer with a patch or a denial.

This is where the allocation lifecycle's promises are kept at the webhook's end:

- a retried review (same request uid, any replica) reserves under the token derived
  from the uid, so it gets the reservation the first attempt made, and even two copies
  racing on two replicas land on one; its answer is the one kept in the review memo.
  A fresh admission costs two Redis round trips: the reservation, then keeping the
  answer (``SET NX``, whose script also hands a retry the kept answer; see
  ``webhook.memo``); the memo is read only when an admission would otherwise be
  refused, in case an earlier attempt was not;
- a re-invoked webhook (the pod already carries ``podnet.io/reservation``) gets the
  same allocation back while the token is known; if it expired, the pod keeps its
  annotated address when that is still free;
- ``dryRun`` decides and validates, and reserves nothing;
- every IPAM error becomes a denial whose message names the field, value and reason,
  and a store outage is a denial saying so, never an HTTP 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ipam import annotations as keys
from ipam import errors
from ipam.records import Allocation, allocation_annotations
from ipam.store import Ipam
from webhook.decide import Catalog, NamespaceInfo, Plan, Skip, decide, without_podnet_annotations
from webhook.errors import DENIED_BAD_REQUEST, DENIED_FORBIDDEN, Denial, MalformedReview
from webhook.memo import MemoEntry, ReviewMemo
from webhook.patch import build_patch
from webhook.review import AdmissionRequest, AdmissionReviewWire, review_response
from webhook.settings import WebhookSettings

TOKEN_NAMESPACE = uuid.UUID("0b5e8d4c-3f0e-5a43-9d53-706f646e6574")
_NAMESPACE_BYTES = TOKEN_NAMESPACE.bytes
DRY_RUN_WARNING = "dry run: podnet checked the request and reserved no address"


def token_from_uid(uid: str) -> str:
    """The reservation token for one review: the same on every replica and every retry.

    It is ``uuid.uuid5(TOKEN_NAMESPACE, uid)``, spelled out (SHA-1, then the version and
    variant bits) because building ``UUID`` objects is a measurable part of admission.
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + uid.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class CatalogCache:
    """The IPAM's subnets and pools, re-read at most every ``ttl_s`` (one read at a time)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._catalog: Catalog | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, ipam: Ipam) -> Catalog:
        if self._fresh():
            assert self._catalog is not None
            return self._catalog
        async with self._lock:
            if not self._fresh():
                subnets = await ipam.subnets()
                pools = await ipam.pools()
                self._catalog = Catalog(tuple(subnets), tuple(pools))
                self._read_at = self._clock()
            assert self._catalog is not None
            return self._catalog

    def invalidate(self) -> None:
        self._catalog = None

    def _fresh(self) -> bool:
        return self._catalog is not None and self._clock() - self._read_at < self._ttl_s


def no_namespace_info(name: str) -> NamespaceInfo:
    return NamespaceInfo(name)


@dataclass
class AdmitContext:
    """What admission needs besides the IPAM: the memo, caches and factories."""

    memo: ReviewMemo
    catalog: CatalogCache
    namespaces: Callable[[str], NamespaceInfo] = no_namespace_info
    token_for: Callable[[str], str] = field(default=token_from_uid)


@dataclass(frozen=True)
class Answer:
    """The review to send back, and the outcome to count."""

    review: AdmissionReviewWire
    outcome: str


def denial_for(exc: errors.IpamError, plan: Plan | None) -> Denial:
    """The user-facing denial for an IPAM error, chained by the caller with ``from``."""
    if isinstance(exc, errors.Exhausted) and plan is not None and plan.request.pool is not None:
        return Denial(
            f"{plan.pool_label} of {plan.workload} is exhausted: "
            f"{exc.used} of {exc.total} addresses in use"
        )
    if isinstance(exc, errors.InvalidInput | errors.UnknownSubnet | errors.UnknownPool):
        return Denial(str(exc), DENIED_BAD_REQUEST)
    if isinstance(exc, errors.StoreUnavailable):
        return Denial(
            f"podnet could not reach its address store, so no address was given ({exc}); "
            "the pod was not created, retry once the store is reachable"
        )
    return Denial(str(exc), DENIED_FORBIDDEN)


async def admit_pod(
    request: AdmissionRequest, ipam: Ipam, settings: WebhookSettings, context: AdmitContext
) -> Answer:
    """Answer one AdmissionReview of a pod (anything else is allowed unchanged)."""
    if request.operation != "CREATE" or request.kind != "Pod" or request.group:
        return Answer(review_response(request.uid, True), "unchanged")
    if request.sub_resource:
        return Answer(review_response(request.uid, True), "unchanged")
    pod = request.object
    if pod is None:
        raise MalformedReview("request.object is missing for a pod CREATE")
    plan: Plan | None = None
    try:
        catalog = await context.catalog.get(ipam)
        namespace = context.namespaces(request.namespace or _pod_namespace(pod))
        decision = decide(pod, namespace, catalog, settings, request.name)
        if isinstance(decision, Skip):
            return Answer(review_response(request.uid, True), "skipped")
        plan = decision
        if request.dry_run:
            await check_dry_run(ipam, plan)
            return Answer(review_response(request.uid, True, warnings=[DRY_RUN_WARNING]),
                          "dry_run")
        allocation, plan = await _allocate(
            request, pod, plan, ipam=ipam, settings=settings, context=context, catalog=catalog
        )
        try:
            return await _mutate(request, pod, plan, allocation, ipam, context)
        except (Denial, errors.IpamError):
            raise
        except Exception:
            # A bug, not the user's doing: the server answers it as an error; the
            # reservation must not outlive a request that was not allowed.
            await _release(ipam, plan, allocation)
            raise
    except Denial as denial:
        answer = _denied(request.uid, denial)
    except errors.IpamError as exc:
        mapped = denial_for(exc, plan)
        outcome = "unavailable" if isinstance(exc, errors.StoreUnavailable) else "denied"
        answer = Answer(
            review_response(request.uid, False, message=mapped.message, code=mapped.code),
            outcome,
        )
    kept_answer = None if request.dry_run else await _kept(context.memo, request.uid)
    if kept_answer is not None:
        return Answer(_mutation(request.uid, pod, kept_answer), "retried")
    return answer


async def _mutate(request: AdmissionRequest, pod: Mapping[str, Any], plan: Plan,
                  allocation: Allocation, ipam: Ipam, context: AdmitContext) -> Answer:
    """The patch that gives the pod its allocation (or an earlier attempt's)."""
    entry = MemoEntry(allocation_annotations(allocation, plan.subnet), plan.node_selector)
    kept = await context.memo.put(request.uid, entry)
    if kept is entry:
        return Answer(_mutation(request.uid, pod, entry), "mutated")
    await _drop_stray(ipam, plan, allocation, kept)
    return Answer(_mutation(request.uid, pod, kept), "retried")


async def _release(ipam: Ipam, plan: Plan, allocation: Allocation) -> None:
    with contextlib.suppress(errors.IpamError):  # else it expires with its TTL
        await ipam.release(plan.subnet.name, "token", allocation.token)


async def _kept(memo: ReviewMemo, uid: str) -> MemoEntry | None:
    """The answer an earlier attempt of this review gave, if any (and if readable)."""
    try:
        return await memo.get(uid)
    except errors.IpamError:
        return None


async def _drop_stray(ipam: Ipam, plan: Plan, allocation: Allocation, kept: MemoEntry) -> None:
    """An earlier attempt of this review answered from another subnet (the catalog
    changed in between): the reservation just made under the same token is not used."""
    if kept.annotations.get(keys.LOGICAL_SWITCH) == plan.subnet.name:
        return  # same token, same subnet: the very allocation the earlier attempt made
    await _release(ipam, plan, allocation)


def _denied(uid: str, denial: Denial) -> Answer:
    return Answer(review_response(uid, False, message=denial.message, code=denial.code), "denied")


def _pod_namespace(pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata")
    return str(metadata.get("namespace") or "") if isinstance(metadata, Mapping) else ""


def _mutation(uid: str, pod: Mapping[str, Any], entry: MemoEntry) -> AdmissionReviewWire:
    return review_response(uid, True, build_patch(pod, entry.annotations, entry.node_selector))


async def _allocate(
    request: AdmissionRequest,
    pod: Mapping[str, Any],
    plan: Plan,
    *,
    ipam: Ipam,
    settings: WebhookSettings,
    context: AdmitContext,
    catalog: Catalog,
) -> tuple[Allocation, Plan]:
    """The pod's allocation: the one its token holds, else a new reservation."""
    existing = await reservation_of(ipam, plan)
    if existing is not None:
        return existing, plan
    token = context.token_for(request.uid)
    try:
        return await _reserve(ipam, plan, token), plan
    except errors.AllocationConflict:
        if not plan.reservation:
            raise
    # The pod was admitted before, its token expired and its old address is taken
    # meanwhile: decide again from what the user wrote, without podnet's annotations.
    namespace = context.namespaces(plan.namespace)
    fresh = decide(without_podnet_annotations(pod), namespace, catalog, settings, request.name)
    if isinstance(fresh, Skip):
        raise Denial(f"pod {plan.namespace}/{plan.name} can no longer be admitted: {fresh.reason}")
    return await _reserve(ipam, fresh, token), fresh


async def _reserve(ipam: Ipam, plan: Plan, token: str) -> Allocation:
    return await ipam.reserve(
        plan.subnet, token, plan.request, namespace=plan.namespace, name=plan.name
    )


async def reservation_of(ipam: Ipam, plan: Plan) -> Allocation | None:
    """The reservation the pod's token holds, if it is still this pod's to use.

    A pod copied from another (``kubectl get -o yaml`` and apply) carries the other's
    token; a bound allocation, or one made for another pod, is not reused.
    """
    if not plan.reservation:
        return None
    found = await ipam.lookup_token(plan.reservation, plan.subnet.name)
    if found is None or found.state != "reserved" or found.namespace != plan.namespace:
        return None
    if found.name and plan.name and found.name != plan.name:
        return None
    return found


async def check_dry_run(ipam: Ipam, plan: Plan) -> None:
    """What a real admission would refuse, found by reading only."""
    await ipam.subnet(plan.subnet.name, fresh=True)
    for address in plan.request.static_ips:
        holder = await ipam.lookup_ip(address)
        if holder is None or holder.token == plan.reservation:
            continue
        if plan.request.sticky_key and holder.sticky_key == plan.request.sticky_key:
            continue
        raise errors.AllocationConflict(plan.request.field, str(address), holder.owner)
    if plan.request.static_ips or plan.request.pool is not None or plan.request.sticky_key:
        return  # pools and kept ordinals are checked when the real request reserves
    usage = await ipam.usage(plan.subnet.name)
    for family in usage.families:
        if family.free == 0:
            raise errors.Exhausted(f"subnet {plan.subnet.name}", family.used + family.reserved,
                                   family.total)
