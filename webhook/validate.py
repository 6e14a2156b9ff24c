"""Validation of ``Subnet`` and ``IPPool`` objects before Kubernetes stores them.

A wrong subnet is cheapest to fix at ``kubectl apply``: malformed CIDRs, overlaps,
a gateway outside its CIDR, bad ``excludeIps``, pool addresses outside their subnet.
And some changes would strand pods that already hold addresses: deleting a subnet or
pool in use, or moving a subnet's CIDR under its pods. The parsing is the IPAM's own
(``parse_subnet``, ``parse_ippool``, ``check_no_overlap``), so the webhook refuses
exactly what the IPAM would.

Workloads (Deployments, StatefulSets, Jobs, ...) are checked for pod template
annotations podnet cannot honour (``webhook.compat``), so that a Deployment asking for,
say, custom routes is refused at ``kubectl apply`` rather than leaving its ReplicaSet
unable to create pods, with the reason only in an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from ipam import errors
from ipam.addresses import IPAddress, IPNetwork
from ipam.pool import Pool, parse_ippool
from ipam.records import Allocation
from ipam.store import Ipam
from ipam.subnet import (
    JOIN_CIDR,
    JOIN_SUBNET,
    SubnetSpec,
    check_cluster_networks,
    check_no_overlap,
    parse_subnet,
)
from webhook.admit import Answer, denial_for
from webhook.compat import IC_CONFIG, WORKLOAD_TEMPLATES, check_config_map, check_workload
from webhook.errors import DENIED_BAD_REQUEST, DENIED_FORBIDDEN, Denial, MalformedReview
from webhook.guard import owned_annotation_edit
from webhook.review import AdmissionRequest, review_response
from webhook.settings import WebhookSettings

_SHOWN_HOLDERS = 3
SUBNET_WAIT_ATTEMPTS = 4
SUBNET_WAIT_S = 0.25


def _holders(count: int, allocations: Sequence[Allocation]) -> str:
    names = ", ".join(a.owner for a in allocations[:_SHOWN_HOLDERS])
    more = ", ..." if count > _SHOWN_HOLDERS else ""
    return f"{count} {'address' if count == 1 else 'addresses'} in use (by {names}{more})"


def _object_name(request: AdmissionRequest) -> str:
    for obj in (request.object, request.old_object):
        metadata = obj.get("metadata") if obj else None
        if isinstance(metadata, Mapping) and metadata.get("name"):
            return str(metadata["name"])
    return request.name


async def _answer(request: AdmissionRequest, check: Any) -> Answer:
    try:
        await check
    except Denial as denial:
        review = review_response(request.uid, False, message=denial.message, code=denial.code)
        return Answer(review, "denied")
    except errors.IpamError as exc:
        mapped = denial_for(exc, None)
        outcome = "unavailable" if isinstance(exc, errors.StoreUnavailable) else "denied"
        review = review_response(request.uid, False, message=mapped.message, code=mapped.code)
        return Answer(review, outcome)
    return Answer(review_response(request.uid, True), "allowed")


def cluster_networks(service_cidrs: Iterable[str], node_addresses: Mapping[str, Iterable[str]]
                     ) -> list[tuple[str, IPNetwork]]:
    """What no pod subnet may overlap, beside other subnets: the join subnet (even
    before it is registered), the Service CIDRs and each node's addresses."""
    taken: list[tuple[str, IPNetwork]] = [("the join subnet", ipaddress.ip_network(JOIN_CIDR))]
    taken += [("the Service CIDR", ipaddress.ip_network(cidr)) for cidr in service_cidrs]
    for node, addresses in sorted(node_addresses.items()):
        for address in addresses:
            with contextlib.suppress(ValueError):
                taken.append((f"the address of node {node}", ipaddress.ip_network(address)))
    return taken


async def validate_subnet(request: AdmissionRequest, ipam: Ipam,
                          taken: Sequence[tuple[str, IPNetwork]] = ()) -> Answer:
    if request.kind != "Subnet" or request.operation == "CONNECT":
        return Answer(review_response(request.uid, True), "unchanged")
    if request.operation == "DELETE":
        return await _answer(request, _check_subnet_delete(ipam, _object_name(request)))
    if request.object is None:
        raise MalformedReview("request.object is missing")
    return await _answer(request, _check_subnet_change(ipam, request.object, taken))


async def _held(ipam: Ipam, name: str) -> tuple[int, list[Allocation]]:
    usage = await ipam.usage(name)
    count = max((f.used + f.reserved for f in usage.families), default=0)
    if count == 0:
        return 0, []
    page = await ipam.allocations(name, limit=_SHOWN_HOLDERS)
    return count, page.allocations


async def _check_subnet_delete(ipam: Ipam, name: str) -> None:
    try:
        count, holders = await _held(ipam, name)
    except errors.UnknownSubnet:
        return
    if count:
        raise Denial(f"subnet {name} has {_holders(count, holders)}; delete those pods first")


async def _check_subnet_change(ipam: Ipam, obj: Mapping[str, Any],
                               taken: Sequence[tuple[str, IPNetwork]]) -> None:
    spec = parse_subnet(obj)
    others = await ipam.subnets()
    check_no_overlap(spec, others)
    if spec.name != JOIN_SUBNET:
        check_cluster_networks(spec, taken)
    previous = next((s for s in others if s.name == spec.name), None)
    if previous is None or not _networks_changed(previous, spec):
        return
    count, holders = await _held(ipam, spec.name)
    if count:
        raise Denial(
            f"spec.cidrBlock {spec.cidr_block}: cannot change subnet {spec.name} from "
            f"{previous.cidr_block} while it has {_holders(count, holders)}"
        )


def _networks_changed(previous: SubnetSpec, new: SubnetSpec) -> bool:
    return {f.network for f in previous.families} != {f.network for f in new.families}


Refresh = Callable[[], Awaitable[object]]


async def _no_refresh() -> None:
    return None


async def validate_ippool(
    request: AdmissionRequest, ipam: Ipam, refresh: Refresh = _no_refresh
) -> Answer:
    """``refresh`` registers what the webhook's source has seen: a Subnet applied together
    with its IPPool may be stored a moment before the webhook has registered it."""
    if request.kind != "IPPool" or request.operation == "CONNECT":
        return Answer(review_response(request.uid, True), "unchanged")
    if request.operation == "DELETE":
        return await _answer(request, _check_pool_delete(ipam, _object_name(request)))
    if request.object is None:
        raise MalformedReview("request.object is missing")
    return await _answer(request, _check_pool_change(ipam, request.object, refresh))


async def _check_pool_delete(ipam: Ipam, name: str) -> None:
    try:
        _, pool = await ipam.pool(name)
    except errors.UnknownPool:
        return
    holders = await ipam.pool_usage(pool)
    if holders:
        raise Denial(f"IPPool {name} has {_holders(len(holders), holders)}; "
                     "delete those pods first")


async def _check_pool_change(ipam: Ipam, obj: Mapping[str, Any], refresh: Refresh) -> None:
    spec = parse_ippool(obj)
    for attempt in range(SUBNET_WAIT_ATTEMPTS):
        try:
            subnet = await ipam.subnet(spec.subnet, fresh=True)
            break
        except errors.UnknownSubnet as exc:
            if attempt + 1 == SUBNET_WAIT_ATTEMPTS:
                raise Denial(f"spec.subnet {spec.subnet}: subnet {spec.subnet} does not exist",
                             DENIED_BAD_REQUEST) from exc
            await refresh()
            await asyncio.sleep(SUBNET_WAIT_S)
    resolved = spec.resolve(subnet)
    try:
        _, previous = await ipam.pool(spec.name)
    except errors.UnknownPool:
        return
    stranded = [holder for holder in await ipam.pool_usage(previous)
                if not all(_in_pool(resolved, subnet, ip) for ip in holder.ips)]
    if stranded:
        raise Denial(
            f"spec.ips: IPPool {spec.name} would no longer hold the address of "
            f"{_holders(len(stranded), stranded)}; delete those pods first")


def _in_pool(pool: Pool, subnet: SubnetSpec, address: IPAddress) -> bool:
    layout = subnet.layout_for(address)
    if layout is None:
        return False
    offset = layout.offset_of(address)
    return any(span.family == layout.family and span.low <= offset <= span.high
               for entry in pool.entries for span in entry.spans)


def validate_pod_update(request: AdmissionRequest, settings: WebhookSettings) -> Answer:
    """Refuse a pod UPDATE that rewrites what podnet wrote at admission."""
    if (request.kind != "Pod" or request.group or request.operation != "UPDATE"
            or request.sub_resource or request.username in settings.trusted_users):
        return Answer(review_response(request.uid, True), "unchanged")
    reason = owned_annotation_edit(request.old_object, request.object)
    if reason is None:
        return Answer(review_response(request.uid, True), "allowed")
    message = f"pod {request.namespace}/{request.name}: {reason}"
    return Answer(
        review_response(request.uid, False, message=message, code=DENIED_FORBIDDEN), "denied"
    )


def validate_ic_config(request: AdmissionRequest) -> Answer:
    """Refuse an ``ovn-ic-config`` ConfigMap with an unusable value (key, value, reason);
    every other ConfigMap passes untouched."""
    if (request.kind != "ConfigMap" or request.operation not in ("CREATE", "UPDATE")
            or (request.namespace, _object_name(request)) != IC_CONFIG):
        return Answer(review_response(request.uid, True), "unchanged")
    if request.object is None:
        raise MalformedReview("request.object is missing")
    verdict = check_config_map({**request.object, "kind": "ConfigMap"})
    if verdict.accepted:
        return Answer(review_response(request.uid, True), "allowed")
    return Answer(review_response(request.uid, False, message=verdict.reason,
                                  code=DENIED_BAD_REQUEST), "denied")


def validate_workload(request: AdmissionRequest) -> Answer:
    """Refuse a workload whose pod template carries annotations podnet cannot honour."""
    if request.kind not in WORKLOAD_TEMPLATES or request.operation not in ("CREATE", "UPDATE"):
        return Answer(review_response(request.uid, True), "unchanged")
    if request.object is None:
        raise MalformedReview("request.object is missing")
    verdict = check_workload({**request.object, "kind": request.kind})
    if verdict.accepted:
        return Answer(review_response(request.uid, True), "allowed")
    message = f"{request.kind} {request.namespace}/{_object_name(request)}: {verdict.reason}"
    return Answer(
        review_response(request.uid, False, message=message, code=DENIED_BAD_REQUEST), "denied"
    )
