"""The AdmissionReview wire format: strict about identity, lenient about the rest."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from webhook.errors import MalformedReview
from webhook.review import parse_review, review_response


def body(**changes: Any) -> bytes:
    review: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": {"metadata": {"name": "p"}},
            "dryRun": False,
            "someFutureField": {"ignored": True},
        },
    }
    review.update(changes)
    return json.dumps(review).encode()


def test_a_pod_create_review_is_parsed_into_its_parts() -> None:
    request = parse_review(body())
    assert (request.uid, request.kind, request.operation, request.namespace) == (
        "705ab4f5-6393-11e8-b7cc-42010a800002", "Pod", "CREATE", "default"
    )
    assert request.object == {"metadata": {"name": "p"}} and not request.dry_run


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (body(apiVersion="admission.k8s.io/v1beta1"), "apiVersion"),
        (body(kind="Pod"), "kind"),
        (body(request=None), "request is missing"),
        (body(request={"kind": {"kind": "Pod"}, "operation": "CREATE"}), "uid is missing"),
        (body(request={"uid": "u", "kind": {"kind": "Pod"}, "operation": "PATCH"}), "operation"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_anything_but_a_v1_review_with_a_uid_is_malformed(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedReview, match=reason):
        parse_review(raw)


def test_an_allowed_response_carries_a_base64_json_patch_and_echoes_the_uid() -> None:
    ops: list[Any] = [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]
    review = review_response("u-1", True, ops)
    response = review["response"]
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    assert response["uid"] == "u-1" and response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == ops
    assert "status" not in response


def test_a_denial_carries_a_status_code_and_message_and_no_patch() -> None:
    response = review_response("u-2", False, message="no", code=400)["response"]
    assert response == {"uid": "u-2", "allowed": False, "status": {"code": 400, "message": "no"}}
