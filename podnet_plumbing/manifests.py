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
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value, not a list or a mapping",
                key_node.start_mark)
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


MAX_FILE_BYTES = 16 << 20
"""The largest manifest file read (kube-apiserver takes objects of up to 3 MiB)."""
MAX_MESSAGE = 500
MAX_NODES = 1_000_000
"""The most YAML nodes a document may expand to, its aliases followed: a few lines of
anchors and aliases ("billion laughs") can otherwise stand for 10^9 values."""


class UnreadableManifest(yaml.YAMLError):
    """A file that is not UTF-8, or a file or document beyond the bounds above."""


def load_documents(text: str) -> list[Any]:
    """Every YAML document in ``text``, strictly (see ``StrictLoader``) and bounded (see
    ``MAX_NODES``); a document nested too deep for the parser is a ``YAMLError`` too."""
    loader = StrictLoader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                _check_expansion(node)
                documents.append(loader.construct_document(node))
    except RecursionError:
        raise UnreadableManifest("nests too deeply to be read") from None
    finally:
        loader.dispose()
    return documents


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose nodes, aliases followed, exceed ``MAX_NODES``.

    Each distinct node is sized once (aliases share nodes), so the check costs the
    document's size, not its expansion."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not children_done and children:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        sizes[id(node)] = size = 1 + sum(sizes.get(id(child), 1) for child in children)
        if size > MAX_NODES:
            mark = node.start_mark
            raise UnreadableManifest(f"line {mark.line + 1}: expands to more than {MAX_NODES} "
                                   "values (YAML aliases)")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


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
    """What is wrong with one file or object; the message is cut to ``MAX_MESSAGE``
    characters (errors may quote values, and a manifest sizes its values)."""

    source: str
    message: str

    def __post_init__(self) -> None:
        if len(self.message) > MAX_MESSAGE:
            cut = f"{self.message[:MAX_MESSAGE]}... ({len(self.message)} characters)"
            object.__setattr__(self, "message", cut)

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
            documents = load_documents(read_text(path))
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


def read_text(path: Path) -> str:
    """A manifest file's text: UTF-8, at most ``MAX_FILE_BYTES``."""
    with path.open("rb") as handle:
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise UnreadableManifest(f"is larger than {MAX_FILE_BYTES >> 20} MiB")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UnreadableManifest(f"line {line}: is not UTF-8 text (byte "
                               f"0x{raw[exc.start]:02x})") from None


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
