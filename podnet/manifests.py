"""Reading Kubernetes manifests from files and directories, as ``kubectl apply -f`` does.

Standalone podnet (``podnet up``, ``podnet ipam load``, the webhook's ``--manifests``)
takes its desired state from ordinary YAML files. A file may hold several documents;
a directory is read in name order, not recursively. Problems are reported per file and
document, so one bad file does not hide the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and where it came from."""

    source: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

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
            documents = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            problems.append(ManifestProblem(str(path), f"cannot be read: {exc}"))
            continue
        for index, document in enumerate(documents):
            if document is None:
                continue
            source = f"{path}#{index}" if len(documents) > 1 else str(path)
            if not isinstance(document, dict) or "kind" not in document:
                problems.append(ManifestProblem(source, "is not a Kubernetes object"))
                continue
            manifests.append(Manifest(source, document))
    return manifests, problems
