"""Strategic merge patches, applied to built-in kinds as kube-apiserver applies them.

``kubectl apply`` (client-side), ``kubectl edit``, ``kubectl label``, ``kubectl patch``
and controllers send strategic merge patches for built-in kinds. Read as plain merge
patches, they would go wrong in ways that matter to podnet: a patch naming one container
would drop the pod's others, a ``$patch: delete`` item would be stored as a container,
and ``$setElementOrder`` lists would land in stored objects. kube-apiserver instead reads
each field's patch strategy from the kind's schema:

- maps merge key by key; ``null`` deletes a key;
- a list whose strategy is ``merge`` merges its items by their merge key (containers by
  ``name``, ports by ``containerPort``), or, for values, takes the union; any other list
  is replaced by the patch's;
- directives: ``$patch: replace`` / ``$patch: delete`` in a map or as a list item,
  ``$setElementOrder/<field>``, ``$retainKeys`` and ``$deleteFromPrimitiveList/<field>``.
  Directives steer the merge and are never stored.

The schema is JSON-Schema style: definitions by name, ``$ref: "#/$defs/<name>"``, and
the ``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key`` of each field.
A field the schema does not know merges as in a merge patch. Malformed patches are
refused as kube-apiserver refuses them: a directive of the wrong shape is a 400, a
patch that cannot be merged (an item without its merge key, an unknown ``$patch``) a
422. Pure functions: the schemas come from ``podnet.lab.schemas``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from podnet.lab.apistore import ApiError

__all__ = ["strategic_merge_patch"]

Schema = Mapping[str, Any]
Definitions = Mapping[str, Schema]

PATCH = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
_REF = "#/$defs/"


def strategic_merge_patch(original: Any, patch: Any, schema: Schema | None,
                          definitions: Definitions) -> Any:
    """``original`` with the strategic merge ``patch`` applied; neither is changed.

    ``schema`` is the definition of the object's kind, its ``$ref`` resolved in
    ``definitions``; with none, the patch merges as a merge patch with directives."""
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "a strategic merge patch must be a JSON object")
    merger = _Merger(definitions)
    start = copy.deepcopy(original) if isinstance(original, dict) else None
    return merger.merge_map(start, copy.deepcopy(patch), merger.field_of(schema, ""))


# ------------------------------------------------------------------ fields


@dataclass(frozen=True)
class _Field:
    """Where a value sits, and what the schema says about how it merges."""

    path: str
    schema: Schema | None
    strategies: frozenset[str] = frozenset()
    merge_key: str | None = None

    @property
    def merges(self) -> bool:
        return "merge" in self.strategies

    @property
    def replaced(self) -> bool:
        return "replace" in self.strategies


def _strategies(schema: Schema) -> frozenset[str]:
    text = str(schema.get("x-kubernetes-patch-strategy") or "")
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def _child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Merger:
    """One patch's merge, walking the schema alongside the object."""

    def __init__(self, definitions: Definitions) -> None:
        self.definitions = definitions

    def resolve(self, schema: Schema | None) -> Schema | None:
        for _ in range(32):  # a chain of references, never a cycle in practice
            if schema is None or "$ref" not in schema:
                return schema
            schema = self.definitions.get(str(schema["$ref"]).removeprefix(_REF))
        return None

    def field_of(self, schema: Schema | None, path: str) -> _Field:
        """The field whose own schema (before ``$ref``) is ``schema``."""
        if schema is None:
            return _Field(path, None)
        return _Field(path, self.resolve(schema), _strategies(schema),
                      schema.get("x-kubernetes-patch-merge-key"))

    def member(self, parent: _Field, key: str) -> _Field:
        """The field ``key`` of the map ``parent``."""
        schema = parent.schema or {}
        found = (schema.get("properties") or {}).get(key)
        if found is None and isinstance(schema.get("additionalProperties"), Mapping):
            found = schema["additionalProperties"]
        return self.field_of(found, _child_path(parent.path, key))

    def item(self, parent: _Field) -> _Field:
        """The field of the items of the list ``parent``."""
        return self.field_of((parent.schema or {}).get("items"), f"{parent.path}[]")

    # ---------------------------------------------------------------- maps

    def merge_map(self, original: dict[str, Any] | None, patch: dict[str, Any],
                  field: _Field) -> dict[str, Any]:
        if PATCH in patch:
            return self.map_directive(patch, field)
        result: dict[str, Any] = {} if original is None else original
        retain_keys(result, patch, field.path)
        self.merge_ordered_lists(result, patch, field)
        for key, value in patch.items():
            if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
                delete_from_primitive_list(result, key, value, field.path)
            elif value is None:
                result.pop(key, None)
            else:
                result[key] = self.merge_value(result.get(key), value, self.member(field, key))
        return result

    def map_directive(self, patch: dict[str, Any], field: _Field) -> dict[str, Any]:
        """``$patch`` in a map: ``replace`` keeps only the patch, ``delete`` empties it."""
        directive = patch.pop(PATCH)
        if directive == "replace":
            return self.merge_map(None, patch, field)
        if directive == "delete":
            return {}
        raise ApiError(422, "Invalid", f"{field.path or 'the patch'}: unknown "
                       f"{PATCH} {directive!r}; it is replace or delete in a map")

    def merge_value(self, original: Any, patch: Any, field: _Field) -> Any:
        if isinstance(patch, dict):
            keep = isinstance(original, dict) and not field.replaced
            return self.merge_map(original if keep else None, patch, field)
        if isinstance(patch, list):
            if field.merges:
                return self.merge_list(original if isinstance(original, list) else [],
                                       patch, field)
            return self.fresh_list(patch, field)
        return patch

    # --------------------------------------------------------------- lists

    def fresh_list(self, patch: list[Any], field: _Field) -> list[Any]:
        """A list the patch replaces: its items, directives applied to nothing."""
        element = self.item(field)
        return [self.merge_value(None, item, element) for item in patch
                if not (isinstance(item, dict) and PATCH in item)]

    def merge_list(self, original: list[Any], patch: list[Any], field: _Field) -> list[Any]:
        if not original and not patch:
            return []
        if not _of_maps(original + patch, field):
            return _ordered(_union(original, patch), patch, original, _same)
        key = _merge_key(field)
        original, patch = self.item_directives(original, patch, field, key)
        merged = self.merge_items(original, patch, field, key)
        return _ordered(merged, patch, original, _keyed(key))

    def item_directives(self, original: list[Any], patch: list[Any], field: _Field,
                        key: str) -> tuple[list[Any], list[Any]]:
        """The lists once ``$patch`` items have deleted theirs or replaced the list."""
        kept: list[Any] = []
        replace = False
        for item in patch:
            directive = item.get(PATCH)
            if PATCH not in item:
                kept.append(item)
            elif directive == "delete":
                gone = _key_of(item, key, field)
                original = [o for o in original if not (key in o and o[key] == gone)]
            elif directive == "replace":
                replace = True
            else:
                raise ApiError(422, "Invalid", f"{field.path}: unknown {PATCH} {directive!r} "
                               "in a list item; it is replace or delete")
        if replace:
            element = self.item(field)
            return [self.merge_map(None, item, element) for item in kept], []
        return original, kept

    def merge_items(self, original: list[Any], patch: list[Any], field: _Field,
                    key: str) -> list[Any]:
        """Each patch item merged into the item with its key, or appended."""
        element = self.item(field)
        merged = list(original)
        for item in patch:
            wanted = _key_of(item, key, field)
            at = next((i for i, o in enumerate(merged) if key in o and o[key] == wanted), None)
            if at is None:
                merged.append(self.merge_map(None, item, element))
            else:
                merged[at] = self.merge_map(merged[at], item, element)
        return merged

    def merge_ordered_lists(self, result: dict[str, Any], patch: dict[str, Any],
                            field: _Field) -> None:
        """Each ``$setElementOrder/<name>``: the list merged, then put in that order
        (items it does not name keep their place among the others)."""
        for directive in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
            order = patch.pop(directive)
            name = _directive_field(directive, SET_ELEMENT_ORDER, field.path)
            if not isinstance(order, list):
                raise ApiError(400, "BadRequest", f"{_child_path(field.path, directive)} "
                               "must be a list")
            member = self.member(field, name)
            current, changes = result.get(name) or [], patch.get(name, [])
            if not (member.merges and isinstance(current, list) and isinstance(changes, list)):
                continue  # not a merged list: the patch's list, if any, replaces it
            del patch[name]
            if current or changes:
                result[name] = self.ordered_list(current, changes, order, member)

    def ordered_list(self, current: list[Any], changes: list[Any], order: list[Any],
                     field: _Field) -> list[Any]:
        merged = self.merge_list(current, changes, field)
        identity = _keyed(_merge_key(field)) if _of_maps(merged, field) else _same
        _check_identities(order, identity, field)
        return _ordered(merged, order, current, identity)


# ------------------------------------------------------------- directives


def retain_keys(result: dict[str, Any], patch: dict[str, Any], path: str) -> None:
    """``$retainKeys``: the map keeps only the keys listed (which the patch may set)."""
    if RETAIN_KEYS not in patch:
        return
    keys = patch.pop(RETAIN_KEYS)
    where = _child_path(path, RETAIN_KEYS)
    if not isinstance(keys, list):
        raise ApiError(400, "BadRequest", f"{where} must be a list of field names")
    for key, value in patch.items():
        if value is not None and key not in keys and not key.startswith(
                (SET_ELEMENT_ORDER, DELETE_FROM_PRIMITIVE_LIST)):
            raise ApiError(400, "BadRequest", f"{where} does not list {key!r}, "
                           "which the patch sets")
    for key in [k for k in result if k not in keys]:
        del result[key]


def delete_from_primitive_list(result: dict[str, Any], directive: str, values: Any,
                               path: str) -> None:
    """``$deleteFromPrimitiveList/<name>``: every occurrence of ``values`` leaves it."""
    name = _directive_field(directive, DELETE_FROM_PRIMITIVE_LIST, path)
    if not isinstance(values, list):
        raise ApiError(400, "BadRequest", f"{_child_path(path, directive)} must be a list")
    current = result.get(name)
    if isinstance(current, list):
        result[name] = [value for value in current if value not in values]


def _directive_field(directive: str, prefix: str, path: str) -> str:
    """The field ``<prefix>/<field>`` is about."""
    head, _, name = directive.partition("/")
    if head != prefix or not name:
        raise ApiError(400, "BadRequest", f"{_child_path(path, directive)}: a {prefix} "
                       f"directive is written {prefix}/<field>")
    return name


# ------------------------------------------------------------- list order


def _of_maps(items: list[Any], field: _Field) -> bool:
    """Whether the list's items are maps (merged by key) rather than values."""
    maps = sum(isinstance(item, dict) for item in items)
    if any(isinstance(item, list) for item in items):
        raise ApiError(422, "Invalid", f"{field.path}: lists of lists cannot be merged")
    if 0 < maps < len(items):
        raise ApiError(422, "Invalid", f"{field.path}: the list mixes maps and values")
    return maps > 0


def _merge_key(field: _Field) -> str:
    if not field.merge_key:
        raise ApiError(422, "Invalid", f"{field.path}: a list of maps cannot be merged "
                       "without a merge key")
    return field.merge_key


def _key_of(item: dict[str, Any], key: str, field: _Field) -> Any:
    if key not in item:
        raise ApiError(422, "Invalid", f"{field.path}: an item does not contain the "
                       f"merge key {key!r}: {json.dumps(item, sort_keys=True)}")
    return item[key]


def _check_identities(order: list[Any], identity: Callable[[Any], Any], field: _Field) -> None:
    """A ``$setElementOrder`` list names maps by their merge key, values as themselves."""
    if identity is not _same:
        for entry in order:
            if not isinstance(entry, dict):
                raise ApiError(400, "BadRequest", f"{field.path}: {SET_ELEMENT_ORDER} "
                               "names each item as a map of its merge key")
            _key_of(entry, str(field.merge_key), field)


def _same(item: Any) -> Any:
    return item


def _keyed(key: str) -> Callable[[Any], Any]:
    return lambda item: item.get(key) if isinstance(item, dict) else None


def _union(original: list[Any], patch: list[Any]) -> list[Any]:
    union: list[Any] = []
    for value in original + patch:
        if value not in union:
            union.append(value)
    return union


def _index(identities: list[Any], identity: Any) -> int:
    return identities.index(identity) if identity in identities else -1


def _ordered(merged: list[Any], order: list[Any], original: list[Any],
             identity: Callable[[Any], Any]) -> list[Any]:
    """``merged`` with the items ``order`` names in its order, the others in the
    original's, the two interleaved where the original orders both."""
    wanted = [identity(item) for item in order]
    served = [identity(item) for item in original]
    named = [item for item in merged if _index(wanted, identity(item)) >= 0]
    others = [item for item in merged if _index(wanted, identity(item)) < 0]
    named.sort(key=lambda item: _index(wanted, identity(item)))
    others.sort(key=lambda item: _rank(served, identity(item)))
    return _interleave(others, named, served, identity)


def _rank(identities: list[Any], identity: Any) -> int:
    at = _index(identities, identity)
    return at if at >= 0 else len(identities)


def _interleave(others: list[Any], named: list[Any], served: list[Any],
                identity: Callable[[Any], Any]) -> list[Any]:
    """Both lists, each in its order; an item of ``others`` goes before the next of
    ``named`` when the original had it first."""
    result: list[Any] = []
    i = j = 0
    while i < len(others) and j < len(named):
        left, right = _index(served, identity(others[i])), _index(served, identity(named[j]))
        if 0 <= left < right:
            result.append(others[i])
            i += 1
        else:
            result.append(named[j])
            j += 1
    return result + others[i:] + named[j:]
