"""Reading Kubernetes manifests from files and directories, as ``kubectl apply -f`` does.

Standalone podnet (``podnet up``, ``podnet ipam load``, the webhook's ``--manifests``)
takes its desired state from ordinary YAML files. A file may hold several documents
(and ``kind: List`` objects); a directory is read in name order, not recursively.
Problems are reported per file and document, so one bad file does not hide the others.

This module only reads; ``ipam.register`` turns the kubeovn.io objects into IPAM state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
