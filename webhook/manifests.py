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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipam.register import register_ipam_objects
from ipam.store import Ipam
from podnet_plumbing.manifests import Manifest, manifest_files, read_manifests
from webhook.decide import NamespaceInfo

log = logging.getLogger(__name__)
Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class ManifestSet:
    manifests: tuple[Manifest, ...] = ()
    namespaces: Mapping[str, NamespaceInfo] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def fingerprint(folder: Path) -> Fingerprint:
    """Name, mtime and size of every manifest file: changes when any file does."""
    found = []
    for path in manifest_files([folder]):
        if path.is_file():
            stat = path.stat()
            found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def load_manifests(folder: Path) -> ManifestSet:
    manifests, problems = read_manifests([folder])
    namespaces = {
        info.name: info
        for info in (_namespace(m.obj) for m in manifests if m.kind == "Namespace")
        if info is not None
    }
    return ManifestSet(tuple(manifests), namespaces, tuple(map(str, problems)))


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
    outcome = await register_ipam_objects(ipam, manifests.manifests, ensure_default=True)
    problems = list(manifests.problems) + [str(p) for p in outcome.problems]
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

    def node_addresses(self) -> dict[str, tuple[str, ...]]:
        """None known: manifests hold no Node objects."""
        return {}

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
