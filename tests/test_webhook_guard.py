"""Which pod updates ``webhook.guard`` refuses: edits of what podnet wrote at admission."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.guard import owned_annotation_edit

ADMITTED = {
    "ovn.kubernetes.io/allocated": "true",
    "ovn.kubernetes.io/ip_address": "10.16.0.5",
    "ovn.kubernetes.io/mac_address": "0a:00:00:10:00:05",
    "ovn.kubernetes.io/logical_switch": "ovn-default",
    "ovn.kubernetes.io/cidr": "10.16.0.0/16",
    "ovn.kubernetes.io/gateway": "10.16.0.1",
    "podnet.io/reservation": "tok",
}


def pod(annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", "annotations": annotations}}


@pytest.mark.parametrize("key", sorted(ADMITTED))
def test_changing_or_removing_an_annotation_podnet_wrote_is_refused_naming_it(key: str) -> None:
    changed = {**ADMITTED, key: "something-else"}
    removed = {k: v for k, v in ADMITTED.items() if k != key}
    for after in (changed, removed):
        reason = owned_annotation_edit(pod(ADMITTED), pod(after))
        assert reason is not None and key in reason


def test_asking_for_a_pool_once_the_address_is_given_is_refused() -> None:
    after = {**ADMITTED, "ovn.kubernetes.io/ip_pool": "10.16.0.9"}
    reason = owned_annotation_edit(pod(ADMITTED), pod(after))
    assert reason is not None and "ovn.kubernetes.io/ip_pool" in reason


def test_other_annotations_and_the_routed_mark_may_change() -> None:
    after = {**ADMITTED, "ovn.kubernetes.io/routed": "true", "example.com/x": "y",
             "ovn.kubernetes.io/ingress_rate": "10"}
    assert owned_annotation_edit(pod(ADMITTED), pod(after)) is None


def test_a_pod_podnet_never_admitted_may_not_claim_an_address_by_annotation() -> None:
    reason = owned_annotation_edit(pod({}), pod({"ovn.kubernetes.io/ip_address": "10.16.0.9"}))
    assert reason is not None and "ovn.kubernetes.io/ip_address" in reason
