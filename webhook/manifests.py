"""Subnets, IPPools and Namespaces read from a folder of ordinary Kubernetes YAML.

Without an API server, the webhook learns its configuration from ``--manifests DIR``:
``kubeovn.io/v1`` Subnet and IPPool objects are registered into the IPAM (so every
replica and the other components see them), Namespace objects give the labels and
annotations that bind namespaces to subnets. The folder is re-read when a file in it
changes. One bad document is reported and skipped; it never stops the others.
When no subnet is marked ``default``, podnet's own ``ovn-default`` is ensured.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ipam import errors
from ipam.pool import parse_ippool
from ipam.store import Ipam
from ipam.subnet import DEFAULT_SUBNET, default_subnet, parse_subnet
from webhook.decide import NamespaceInfo

log = logging.getLogger(__name__)
Fingerprint = tuple[tuple[str, int, int], ...]
_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Document:
    source: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class ManifestSet:
    subnets: tuple[Document, ...] = ()
    pools: tuple[Document, ...] = ()
    namespaces: Mapping[str, NamespaceInfo] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def fingerprint(folder: Path) -> Fingerprint:
    """Name, mtime and size of every manifest file: changes when any file does."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in _SUFFIXES and path.is_file():
            stat = path.stat()
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def _documents(path: Path) -> Iterator[Mapping[str, Any]]:
    for document in yaml.safe_load_all(path.read_text()):
        if isinstance(document, Mapping) and document.get("kind") == "List":
            yield from (i for i in document.get("items") or [] if isinstance(i, Mapping))
        elif isinstance(document, Mapping):
            yield document


def load_manifests(folder: Path) -> ManifestSet:
    subnets: list[Document] = []
    pools: list[Document] = []
    namespaces: dict[str, NamespaceInfo] = {}
    problems: list[str] = []
    for name, _, _ in fingerprint(folder):
        path = Path(name)
        try:
            documents = list(_documents(path))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        for index, body in enumerate(documents):
            source = f"{path}#{index}"
            kind, api = body.get("kind"), str(body.get("apiVersion", ""))
            if kind == "Subnet" and api.startswith("kubeovn.io/"):
                subnets.append(Document(source, body))
            elif kind == "IPPool" and api.startswith("kubeovn.io/"):
                pools.append(Document(source, body))
            elif kind == "Namespace":
                info = _namespace(body)
                if info is not None:
                    namespaces[info.name] = info
    return ManifestSet(tuple(subnets), tuple(pools), namespaces, tuple(problems))


def _namespace(body: Mapping[str, Any]) -> NamespaceInfo | None:
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping) or not metadata.get("name"):
        return None

    def strings(value: object) -> dict[str, str]:
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}

    return NamespaceInfo(
        str(metadata["name"]), strings(metadata.get("labels")),
        strings(metadata.get("annotations")),
    )


async def register(ipam: Ipam, manifests: ManifestSet) -> list[str]:
    """Ensure the manifests' subnets and pools in the IPAM; returns what was refused."""
    problems = list(manifests.problems)
    stored = {spec.name: spec for spec in await ipam.subnets()}
    declared: list[str] = []
    has_default = False
    for document in manifests.subnets:
        try:
            spec = parse_subnet(document.body)
            declared.append(spec.name)
            has_default = has_default or spec.default
            if stored.get(spec.name) != spec:
                await ipam.ensure_subnet(dict(document.body))
        except errors.StoreUnavailable:
            raise
        except errors.IpamError as exc:
            problems.append(f"{document.source}: {exc}")
    if not has_default and DEFAULT_SUBNET not in declared and DEFAULT_SUBNET not in stored:
        await ipam.ensure_subnet(default_subnet())
    known_pools = {pool.name: pool for pool in await ipam.pools()}
    for document in manifests.pools:
        try:
            pool = parse_ippool(document.body)
            if known_pools.get(pool.name) != pool:
                await ipam.ensure_pool(pool)
        except errors.StoreUnavailable:
            raise
        except errors.IpamError as exc:
            problems.append(f"{document.source}: {exc}")
    for problem in problems:
        log.warning("manifest refused: %s", problem)
    return problems


class ManifestSource:
    """The manifests folder as the webhook sees it, re-registered when it changes."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.current = ManifestSet()
        self.problems: list[str] = []
        self._seen: Fingerprint | None = None
        self.loaded = False

    def namespace(self, name: str) -> NamespaceInfo:
        return self.current.namespaces.get(name) or NamespaceInfo(name)

    async def refresh(self, ipam: Ipam) -> bool:
        """Re-read and register when anything changed; True if it did."""
        if self.folder is None:
            if not self.loaded:
                self.problems = await register(ipam, ManifestSet())
                self.loaded = True
                return True
            return False
        seen = fingerprint(self.folder)
        if self.loaded and seen == self._seen:
            return False
        manifests = load_manifests(self.folder)
        self.problems = await register(ipam, manifests)
        self.current, self._seen, self.loaded = manifests, seen, True
        return True
