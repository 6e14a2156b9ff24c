"""The schemas of what the lab serves, and what kube-apiserver does with them: OpenAPI v3
documents for kubectl, and unknown fields dropped (or refused) on every write.

kubectl reads ``/openapi/v3`` to validate manifests (it leaves the check to the server
when the document says the server takes ``fieldValidation``), for ``kubectl explain``
and for the merge keys of strategic merge patches. A server that kept fields its schema
lacks would also hide a class of bugs from the lab: in a cluster, a field a CRD's schema
does not declare is pruned before any webhook sees it, so podnet's "refused by name"
answer for a Kube-OVN field it does not implement only works if the CRD declares it.

Two sources, neither written here:

- built-in kinds: the JSON schemas of Kubernetes v1.32 that the maintained
  ``kubernetes-validate`` package ships (its ``_definitions.json``, converted from the
  upstream OpenAPI with descriptions, merge keys and list types kept);
- ``kubeovn.io``: the ``openAPIV3Schema`` of the CRDs in ``manifests/crds/``, the very
  files users deploy.

Pure functions over plain mappings, plus the two cached loaders.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.resources
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from podnet.lab.objects import Resource

BUILTIN_SCHEMAS = "v1.32.0-local"
"""The Kubernetes release whose built-in schemas the lab serves (kubectl 1.32's)."""
CRD_DIRECTORY = Path(__file__).resolve().parents[2] / "manifests" / "crds"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
FIELD_VALIDATION = ("Ignore", "Warn", "Strict")
"""The values of the ``fieldValidation`` query parameter; ``Warn`` is the default."""
_REF = "#/$defs/"
_WRITE_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation")

Schema = Mapping[str, Any]


@functools.cache
def builtin_definitions() -> Mapping[str, Schema]:
    """Every built-in definition by name (``io.k8s.api.core.v1.Pod``), ``$ref`` by
    ``#/$defs/<name>``."""
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    text = (root / BUILTIN_SCHEMAS / "_definitions.json").read_text()
    definitions: Mapping[str, Schema] = json.loads(text)["$defs"]
    return definitions


@functools.cache
def shipped_crds(directory: Path = CRD_DIRECTORY) -> tuple[Schema, ...]:
    """The CustomResourceDefinitions of ``manifests/crds/`` (none when not shipped)."""
    found: list[Schema] = []
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        found += [doc for doc in yaml.safe_load_all(path.read_text())
                  if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"]
    return tuple(found)


def crd_definition_name(group: str, version: str, kind: str) -> str:
    """Where kube-apiserver lists a custom kind's schema: its group reversed
    (``kubeovn.io`` → ``io.kubeovn.v1.Subnet``)."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _crd_definitions(crd: Schema) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = crd.get("spec") or {}
    group, kind = str(spec.get("group") or ""), str((spec.get("names") or {}).get("kind"))
    for version in spec.get("versions") or []:
        schema = copy.deepcopy((version.get("schema") or {}).get("openAPIV3Schema") or {})
        properties = schema.setdefault("properties", {})
        properties["metadata"] = {"$ref": _REF + OBJECT_META}
        schema["x-kubernetes-group-version-kind"] = [
            {"group": group, "version": version.get("name"), "kind": kind}]
        yield crd_definition_name(group, str(version.get("name")), kind), schema


@dataclass(frozen=True)
class Catalog:
    """The schema of every kind the lab serves, in one ``$defs``-style namespace."""

    definitions: Mapping[str, Schema]
    kinds: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    """(group, version, kind) → the name of its definition."""
    columns: Mapping[tuple[str, str, str], tuple[Schema, ...]] = field(default_factory=dict)
    """(group, version, kind) → its CRD's ``additionalPrinterColumns``."""

    def schema(self, resource: Resource) -> Schema | None:
        name = self.kinds.get((resource.group, resource.version, resource.kind))
        return None if name is None else self.definitions[name]


def catalog(builtin: Mapping[str, Schema], crds: Iterable[Schema]) -> Catalog:
    definitions: dict[str, Schema] = dict(builtin)
    columns: dict[tuple[str, str, str], tuple[Schema, ...]] = {}
    for crd in crds:
        definitions.update(_crd_definitions(crd))
        spec = crd.get("spec") or {}
        for version in spec.get("versions") or []:
            key = (str(spec.get("group")), str(version.get("name")),
                   str((spec.get("names") or {}).get("kind")))
            columns[key] = tuple(version.get("additionalPrinterColumns") or ())
    kinds = {(gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", "")): name
             for name, schema in definitions.items()
             for gvk in schema.get("x-kubernetes-group-version-kind") or []}
    return Catalog(definitions, kinds, columns)


@functools.cache
def lab_catalog() -> Catalog:
    """The built-in schemas and the shipped CRDs' (loaded once per process)."""
    return catalog(builtin_definitions(), shipped_crds())


# -------------------------------------------------------- unknown fields


def resolved(schema: Schema, definitions: Mapping[str, Schema]) -> Schema:
    """``schema`` with its ``$ref`` (or a lone ``allOf`` of one) followed."""
    while True:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF):
            schema = definitions.get(ref.removeprefix(_REF), {})
            continue
        parts = schema.get("allOf")
        if isinstance(parts, list) and len(parts) == 1 and "properties" not in schema:
            schema = parts[0]
            continue
        return schema


def drop_unknown_fields(schema: Schema, value: Any, definitions: Mapping[str, Schema],
                        path: str = "") -> list[str]:
    """Remove from ``value`` (in place) every field ``schema`` does not declare, as
    kube-apiserver's decoding (built-in kinds) and pruning (custom ones) do; return their
    paths (``spec.template.spec.containers[0].colour``)."""
    schema = resolved(schema, definitions)
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    dropped: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key in list(value):
            inner = f"{path}.{key}" if path else str(key)
            if isinstance(properties, Mapping) and key in properties:
                dropped += drop_unknown_fields(properties[key], value[key], definitions, inner)
            elif isinstance(extra, Mapping):
                dropped += drop_unknown_fields(extra, value[key], definitions, inner)
            elif isinstance(properties, Mapping):
                del value[key]
                dropped.append(inner)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            dropped += drop_unknown_fields(schema["items"], item, definitions,
                                           f"{path}[{index}]")
    return dropped


# ------------------------------------------------------------- OpenAPI v3


def group_version_path(group: str, version: str) -> str:
    """``api/v1`` for the core group, ``apis/<group>/<version>`` for the rest."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


class OpenApiV3:
    """The OpenAPI v3 documents of the served resources, each built once."""

    def __init__(self, resources: Sequence[Resource], cat: Catalog) -> None:
        self.resources = tuple(resources)
        self.catalog = cat
        self._documents: dict[str, dict[str, Any] | None] = {}

    def root(self) -> dict[str, Any]:
        """``/openapi/v3``: where each group-version's document is (the hash in the URL
        lets clients cache it)."""
        found: dict[str, Any] = {}
        for path in dict.fromkeys(group_version_path(r.group, r.version)
                                  for r in self.resources):
            text = json.dumps(self.document(path), sort_keys=True).encode()
            digest = hashlib.sha256(text).hexdigest().upper()
            found[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
        return {"paths": found}

    def document(self, path: str) -> dict[str, Any] | None:
        """The document of one group-version (``api/v1``, ``apis/apps/v1``), or None."""
        if path not in self._documents:
            self._documents[path] = openapi_v3_document(self.resources, self.catalog, path)
        return self._documents[path]


def openapi_v3_document(resources: Sequence[Resource], cat: Catalog,
                        path: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group-version, as kube-apiserver writes it: the
    paths with kubectl's operations (``fieldValidation`` among their parameters: the
    server checks fields) and every schema the kinds need."""
    served = [r for r in resources if group_version_path(r.group, r.version) == path]
    if not served:
        return None
    names = [cat.kinds[key] for r in served
             if (key := (r.group, r.version, r.kind)) in cat.kinds]
    schemas = {name: openapi_schema(cat.definitions[name])
               for name in sorted(reachable(names, cat.definitions))}
    paths: dict[str, Any] = {}
    for resource in served:
        paths.update(resource_paths(resource, cat.kinds.get(
            (resource.group, resource.version, resource.kind))))
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": schemas}}


def reachable(names: Iterable[str], definitions: Mapping[str, Schema]) -> set[str]:
    """The definitions ``names`` refer to, directly or not (and ``names`` themselves)."""
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        pending += _refs(definitions[name])
    return seen


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF):
            yield ref.removeprefix(_REF)
        for inner in value.values():
            yield from _refs(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _refs(inner)


def openapi_schema(schema: Any) -> Any:
    """A ``$defs``-style JSON schema as kube-apiserver writes OpenAPI v3: references into
    ``components/schemas`` wrapped in ``allOf``, one type instead of ``[type, "null"]``."""
    if isinstance(schema, list):
        return [openapi_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            ref = "#/components/schemas/" + value.removeprefix(_REF)
            converted["allOf"] = [{"$ref": ref}]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if types:
                converted["type"] = types[0]
        elif key in ("properties", "patternProperties"):
            converted[key] = {name: openapi_schema(inner) for name, inner in value.items()}
        else:
            converted[key] = openapi_schema(value)
    return converted


def resource_paths(resource: Resource, definition: str | None) -> dict[str, Any]:
    """The collection and item paths of a resource, with kubectl's operations on them."""
    prefix = "/" + group_version_path(resource.group, resource.version)
    if resource.namespaced:
        prefix += "/namespaces/{namespace}"
    collection, item = f"{prefix}/{resource.plural}", f"{prefix}/{resource.plural}/{{name}}"
    return {
        collection: {"get": _operation(resource, definition, "list", ()),
                     "post": _operation(resource, definition, "post", _WRITE_PARAMETERS)},
        item: {"get": _operation(resource, definition, "get", ()),
               "put": _operation(resource, definition, "put", _WRITE_PARAMETERS),
               "patch": _operation(resource, definition, "patch",
                                   (*_WRITE_PARAMETERS, "force")),
               "delete": _operation(resource, definition, "delete", ("dryRun",))},
    }


def _operation(resource: Resource, definition: str | None, action: str,
               parameters: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = ({"$ref": f"#/components/schemas/{definition}"} if definition
                            else {"type": "object"})
    return {
        "operationId": f"{action}{resource.kind}",
        "parameters": [{"name": name, "in": "query", "schema": {"type": "string"},
                        "uniqueItems": True} for name in parameters],
        "responses": {"200": {"description": "OK",
                              "content": {"application/json": {"schema": body}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": resource.group,
                                            "version": resource.version,
                                            "kind": resource.kind},
    }
