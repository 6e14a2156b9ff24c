"""Manifests become IPAM state here, and only here.

Subnets go first (a pool is checked against its subnet), then IPPools; unchanged ones
are skipped, and each bad object becomes a problem naming it, so one bad file does not
keep the others out. Used by ``podnet ipam load``, the webhook's ``--manifests``, the
sync worker's ``--manifests`` and the lab.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ipam import errors
from ipam.pool import parse_ippool
from ipam.store import Ipam
from ipam.subnet import DEFAULT_SUBNET, default_subnet, parse_subnet
from podnet_plumbing.manifests import Manifest, ManifestProblem, kubeovn_object


@dataclass
class Registration:
    """What ``register_ipam_objects`` did."""

    registered: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)


async def register_ipam_objects(
    ipam: Ipam, manifests: Iterable[Manifest], ensure_default: bool = False
) -> Registration:
    """Register the kubeovn.io Subnets, then IPPools; each bad one becomes a problem.

    With ``ensure_default``, podnet's ``ovn-default`` is created when no subnet is
    marked ``default`` and none of that name exists.
    """
    chosen = [m for m in manifests if m.is_kubeovn]
    subnets = [m for m in chosen if m.kind == "Subnet"]
    pools = [m for m in chosen if m.kind == "IPPool"]
    outcome = Registration()
    stored = {spec.name: spec for spec in await ipam.subnets()}
    has_default = any(spec.default for spec in stored.values())
    for manifest in subnets:
        try:
            spec = parse_subnet(kubeovn_object(manifest.obj))
            has_default = has_default or spec.default
            if stored.get(spec.name) == spec:
                outcome.unchanged.append(f"subnet {spec.name}")
                continue
            await ipam.ensure_subnet(spec)
            outcome.registered.append(f"subnet {spec.name} ({spec.cidr_block})")
        except errors.StoreUnavailable:
            raise
        except errors.IpamError as exc:
            outcome.problems.append(ManifestProblem(manifest.describe(), str(exc)))
    if ensure_default and not has_default and DEFAULT_SUBNET not in stored:
        try:
            spec = await ipam.ensure_subnet(default_subnet())
            outcome.registered.append(f"subnet {spec.name} ({spec.cidr_block})")
        except errors.StoreUnavailable:
            raise
        except errors.IpamError as exc:
            outcome.problems.append(ManifestProblem(f"built-in subnet {DEFAULT_SUBNET}", str(
                exc) + "; mark one subnet `default: true` or free 10.16.0.0/16"))
    known_pools = {pool.name: pool for pool in await ipam.pools()}
    for manifest in pools:
        try:
            pool = parse_ippool(kubeovn_object(manifest.obj))
            if known_pools.get(pool.name) == pool:
                outcome.unchanged.append(f"ippool {pool.name}")
                continue
            resolved = await ipam.ensure_pool(pool)
            outcome.registered.append(
                f"ippool {pool.name} (subnet {pool.subnet}, {resolved.size} addresses)"
            )
        except errors.StoreUnavailable:
            raise
        except errors.IpamError as exc:
            outcome.problems.append(ManifestProblem(manifest.describe(), str(exc)))
    return outcome
