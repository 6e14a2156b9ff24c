"""Reading Kubernetes manifests from files and directories, as ``kubectl apply -f`` does.

Standalone podnet (``podnet up``, ``podnet ipam load``, the webhook's ``--manifests``)
takes its desired state from ordinary YAML files. A file may hold several documents
(and ``kind: List`` objects); a directory is read in name order, not recursively.
Problems are reported per file and document, so one bad file does not hide the others.

``register_ipam_objects`` is the one place where manifests become IPAM state: Subnets
first (a pool is checked against its subnet), then IPPools, unchanged ones skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ipam import errors
from ipam.pool import parse_ippool
from ipam.store import Ipam
from ipam.subnet import DEFAULT_SUBNET, default_subnet, parse_subnet

KUBEOVN_GROUP = "kubeovn.io/"


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys instead of keeping the last one:
    a manifest with two ``kind:`` lines is an error to report, not an object to guess."""


def _no_duplicate_keys(
    loader: StrictLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def load_documents(text: str) -> list[Any]:
    """Every YAML document in ``text``, strictly (see ``StrictLoader``)."""
    return list(yaml.load_all(text, Loader=StrictLoader))


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and where it came from."""

    source: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def is_kubeovn(self) -> bool:
        return str(self.obj.get("apiVersion", "")).startswith(KUBEOVN_GROUP)

    @property
    def name(self) -> str:
        metadata = self.obj.get("metadata") or {}
        return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""

    def describe(self) -> str:
        return f"{self.source}: {self.kind or 'object'} {self.name or '(unnamed)'}"


@dataclass(frozen=True)
class ManifestProblem:
    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


def manifest_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json")
            )
        else:
            yield path


def read_manifests(paths: Iterable[Path]) -> tuple[list[Manifest], list[ManifestProblem]]:
    """Every object in ``paths``; unreadable files and non-objects become problems."""
    manifests: list[Manifest] = []
    problems: list[ManifestProblem] = []
    for path in manifest_files(paths):
        try:
            documents = load_documents(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            problems.append(ManifestProblem(str(path), f"cannot be read: {exc}"))
            continue
        for index, document in enumerate(documents):
            if document is None:
                continue
            source = f"{path}#{index}" if len(documents) > 1 else str(path)
            if not isinstance(document, dict) or "kind" not in document:
                problems.append(ManifestProblem(source, "is not a Kubernetes object"))
            elif document["kind"] == "List":
                items = document.get("items") or []
                manifests += [Manifest(f"{source}[{i}]", item) for i, item in enumerate(items)
                              if isinstance(item, dict)]
            else:
                manifests.append(Manifest(source, document))
    return manifests, problems


def kubeovn_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A manifest trimmed to what the IPAM parses and stores, as plain JSON values.

    YAML may carry values JSON cannot (the timestamps of ``kubectl get -o yaml``
    metadata), so only the name and a JSON-clean spec travel on.
    """
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {"name": name},
        "spec": json.loads(json.dumps(obj.get("spec"), default=str)),
    }


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
