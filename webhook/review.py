"""The AdmissionReview wire format (``admission.k8s.io/v1``), typed, and nothing else.

kube-apiserver posts an AdmissionReview and expects one back with the same ``uid``.
Parsing is strict about what identifies a review (apiVersion, kind, request, uid) and
lenient about the rest, because the apiserver adds fields over time. Anything that is
not a review is ``MalformedReview``, which the HTTP adapter answers with a 400, never
a 500.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

import orjson

from webhook.errors import MalformedReview

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
_OPERATIONS: tuple[Operation, ...] = ("CREATE", "UPDATE", "DELETE", "CONNECT")


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequestWire(TypedDict):
    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    operation: Operation
    userInfo: UserInfo
    subResource: NotRequired[str]
    requestKind: NotRequired[GroupVersionKind]
    requestResource: NotRequired[GroupVersionResource]
    requestSubResource: NotRequired[str]
    name: NotRequired[str]
    namespace: NotRequired[str]
    object: NotRequired[dict[str, Any] | None]
    oldObject: NotRequired[dict[str, Any] | None]
    dryRun: NotRequired[bool]
    options: NotRequired[dict[str, Any] | None]


class StatusWire(TypedDict):
    code: int
    message: str


class AdmissionResponseWire(TypedDict):
    uid: str
    allowed: bool
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    status: NotRequired[StatusWire]
    warnings: NotRequired[list[str]]


class AdmissionReviewWire(TypedDict):
    apiVersion: str
    kind: str
    request: NotRequired[AdmissionRequestWire]
    response: NotRequired[AdmissionResponseWire]


class PatchOp(TypedDict):
    """One RFC 6902 operation (podnet only ever emits ``add``)."""

    op: Literal["add", "replace", "remove"]
    path: str
    value: NotRequired[Any]


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of a review request podnet acts on."""

    uid: str
    group: str
    version: str
    kind: str
    operation: Operation
    namespace: str
    name: str
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None
    dry_run: bool
    sub_resource: str = ""
    username: str = ""
    """``userInfo.username``: who asks (``system:serviceaccount:<ns>:<name>`` for pods)."""


def parse_review(body: bytes) -> AdmissionRequest:
    """Parse a review request body, or raise ``MalformedReview`` saying what is wrong.

    orjson parses a pod's review several times faster than ``json``; it is also stricter
    (no ``NaN``, no lone surrogates), which kube-apiserver never sends.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedReview(f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise MalformedReview("body is not a JSON object")
    if document.get("apiVersion") != API_VERSION:
        raise MalformedReview(
            f"apiVersion {document.get('apiVersion')!r}: expected {API_VERSION}"
        )
    if document.get("kind") != KIND:
        raise MalformedReview(f"kind {document.get('kind')!r}: expected {KIND}")
    request = document.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("request is missing")
    return _parse_request(request)


def _parse_request(request: Mapping[str, Any]) -> AdmissionRequest:
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is missing")
    kind = request.get("kind")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise MalformedReview("request.kind is missing")
    operation = request.get("operation")
    if operation not in _OPERATIONS:
        raise MalformedReview(f"request.operation {operation!r} is not one of {_OPERATIONS}")
    return AdmissionRequest(
        uid=uid,
        group=str(kind.get("group") or ""),
        version=str(kind.get("version") or ""),
        kind=str(kind["kind"]),
        operation=operation,
        namespace=_string(request, "namespace"),
        name=_string(request, "name"),
        object=_object(request, "object"),
        old_object=_object(request, "oldObject"),
        dry_run=request.get("dryRun") is True,
        sub_resource=_string(request, "subResource"),
        username=_username(request),
    )


def _username(request: Mapping[str, Any]) -> str:
    user = request.get("userInfo")
    name = user.get("username") if isinstance(user, Mapping) else None
    return name if isinstance(name, str) else ""


def _string(request: Mapping[str, Any], key: str) -> str:
    value = request.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedReview(f"request.{key} is not a string")
    return value


def _object(request: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = request.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedReview(f"request.{key} is not an object")
    return value


def review_response(
    uid: str,
    allowed: bool,
    patch_ops: Sequence[PatchOp] | None = None,
    *,
    message: str | None = None,
    code: int | None = None,
    warnings: Sequence[str] = (),
) -> AdmissionReviewWire:
    """The AdmissionReview to send back: a patch when allowed, a status when denied."""
    response: AdmissionResponseWire = {"uid": uid, "allowed": allowed}
    if allowed and patch_ops:
        encoded = orjson.dumps(list(patch_ops))
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(encoded).decode("ascii")
    if not allowed or message:
        response["status"] = {
            "code": code if code is not None else (200 if allowed else 403),
            "message": message or "",
        }
    if warnings:
        response["warnings"] = list(warnings)
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}

