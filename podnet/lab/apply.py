"""``kubectl apply`` for the lab: manifests into the API server, in dependency order, each
refusal reported with the API server's own message.

Objects go in phases, as a cluster needs them: Namespaces; Subnets, then IPPools (podnet
checks a pool against its subnet, and must know both before it admits pods that use
them); Services and anything else; then workloads and pods. An object that exists
already is patched with what the manifest says (labels, annotations, spec; a merge
patch, so fields others wrote stay), which changes nothing when nothing changed:
applying twice is safe. A refusal (a webhook's denial, an invalid object, a kind the lab
does not serve) becomes a problem naming the file, the object and the reason; the other
objects are applied regardless.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from podnet.lab.rest import Rest, RestError
from podnet_plumbing.kube import KubeError
from podnet_plumbing.manifests import Manifest, ManifestProblem

PHASES: tuple[tuple[str, ...], ...] = (
    ("Namespace",),
    ("Subnet",),
    ("IPPool",),
    (),  # everything not named in another phase
    ("Deployment", "StatefulSet", "ReplicaSet", "Pod"),
)


def phase_of(kind: str) -> int:
    for index, kinds in enumerate(PHASES):
        if kind in kinds:
            return index
    return PHASES.index(())


def in_phases(manifests: Iterable[Manifest]) -> list[list[Manifest]]:
    phases: list[list[Manifest]] = [[] for _ in PHASES]
    for manifest in manifests:
        phases[phase_of(manifest.kind)].append(manifest)
    return phases


@dataclass
class Applied:
    """What applying did: ``created``, ``changed``, ``unchanged`` (descriptions), problems."""

    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    """The objects as stored, created or not."""


def plain(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest as JSON values (YAML timestamps and the like become strings)."""
    result: dict[str, Any] = json.loads(json.dumps(obj, default=str))
    return result


def wanted_patch(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What applying an existing object changes: labels, annotations and the content."""
    metadata = manifest.get("metadata") or {}
    patch: dict[str, Any] = {key: value for key, value in manifest.items()
                             if key not in ("apiVersion", "kind", "metadata", "status")}
    kept = {key: metadata[key] for key in ("labels", "annotations") if metadata.get(key)}
    if kept:
        patch["metadata"] = kept
    return patch


def apply_one(rest: Rest, manifest: Manifest, outcome: Applied) -> None:
    """Create the object, or patch it when it exists (read first, as ``kubectl apply``:
    a create of an existing pod would reach admission before the name conflict)."""
    obj = plain(manifest.obj)
    label = f"{manifest.kind} {_name(obj)}"
    metadata = obj.get("metadata") or {}
    try:
        resource = rest.resource(manifest.kind, str(obj.get("apiVersion")))
        namespace = str(metadata.get("namespace") or "")
        if resource.namespaced and not namespace:
            namespace = "default"
        before = rest.get(manifest.kind, str(metadata.get("name") or ""), namespace)
        if before is None:
            stored = rest.create(obj, namespace)
            outcome.created.append(label)
        else:
            stored = rest.patch(manifest.kind, str(metadata.get("name")), wanted_patch(obj),
                                namespace)
            unchanged = _version(before) == _version(stored)
            (outcome.unchanged if unchanged else outcome.changed).append(label)
    except RestError as exc:
        outcome.problems.append(ManifestProblem(manifest.describe(), exc.detail))
        return
    except KubeError as exc:
        outcome.problems.append(ManifestProblem(manifest.describe(), str(exc)))
        return
    outcome.objects.append(stored)


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def apply_phase(rest: Rest, manifests: Iterable[Manifest], outcome: Applied) -> None:
    for manifest in manifests:
        apply_one(rest, manifest, outcome)


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    name = str(metadata.get("name") or "")
    namespace = str(metadata.get("namespace") or "")
    return f"{namespace}/{name}" if namespace else name
