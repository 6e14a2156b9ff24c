"""The naming contracts of ``ipam.names``: each spelled once, each read back exactly."""

from __future__ import annotations

import pytest

from ipam import names


def test_a_pod_port_is_the_pod_name_then_its_namespace() -> None:
    assert names.pod_port("web-0", "default") == "web-0.default"


@pytest.mark.parametrize(("pod", "expected"), [
    ("db-0", 0), ("db-12", 12), ("db-01", None), ("db-", None), ("db-1\n", None),
    ("db-١", None), ("other-1", None), ("db-x-1", None),
])
def test_a_statefulset_ordinal_is_a_plain_decimal_suffix_of_the_set_name(
    pod: str, expected: int | None
) -> None:
    assert names.statefulset_ordinal(pod, "db") == expected


def test_sticky_keys_read_back_as_what_they_were_written_for() -> None:
    assert names.parse_sticky_key(names.sticky_key("ns", "db", 3)) == names.OrdinalKey(
        "ns", "db", 3)
    assert names.parse_sticky_key(names.node_sticky_key("n1")) == names.NodeKey("n1")


@pytest.mark.parametrize("key", ["", "ns/db", "ns/db/x", "ns//1", "a/b/c/1", "node/"])
def test_a_sticky_key_podnet_did_not_write_has_no_owner(key: str) -> None:
    assert names.parse_sticky_key(key) is None
