"""Generated hostile input against the real webhook over HTTPS and the CNI request path:
no 5xx, no traceback, and no reservation left for a request that was not allowed.

Bounded (a hundred or so examples per route) so the suite stays fast; ``bench/fuzz.py``
runs the long version.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node_agent import errors as cni_errors
from node_agent import netconf, protocol
from node_agent.server import CniServer
from podnet.daemons import RedisServer
from tests.fuzzing import (
    Served,
    answered,
    cni_requests,
    json_values,
    pods,
    review,
    serving,
    strings,
)

EXAMPLES = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
           ) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("fuzz"), redis_server.url) as running:
        yield running


@EXAMPLES
@given(pod=pods())
def test_generated_pod_creates_get_an_answer_and_a_denial_keeps_no_reservation(
    served: Served, pod: dict[str, Any]
) -> None:
    uid, body = review(pod, "Pod", "", "pods", "CREATE")
    response = answered(served, "/mutate-pods", body)
    if response is None or not response["allowed"]:
        assert not served.reservation_left(uid)


@EXAMPLES
@given(old=pods(), new=pods())
def test_generated_pod_updates_get_an_answer(
    served: Served, old: dict[str, Any], new: dict[str, Any]
) -> None:
    _, body = review(new, "Pod", "", "pods", "UPDATE", old)
    answered(served, "/validate-pods", body)


@EXAMPLES
@given(spec=st.dictionaries(st.sampled_from(
    ["cidrBlock", "gateway", "excludeIps", "namespaces", "private", "allowSubnets",
     "natOutgoing", "gatewayType", "nodeSelector", "subnet", "ips", "default"]) | strings,
    json_values, max_size=5), kind=st.sampled_from(["Subnet", "IPPool"]),
    operation=st.sampled_from(["CREATE", "UPDATE", "DELETE"]), name=strings)
def test_generated_subnets_and_ippools_get_an_answer(
    served: Served, spec: dict[str, Any], kind: str, operation: str, name: str
) -> None:
    obj = {"apiVersion": "kubeovn.io/v1", "kind": kind, "metadata": {"name": name},
           "spec": spec}
    path = "/validate-subnets" if kind == "Subnet" else "/validate-ippools"
    resource = "subnets" if kind == "Subnet" else "ippools"
    new, old = (None, obj) if operation == "DELETE" else (obj, obj)
    _, body = review(new, kind, "kubeovn.io", resource, operation, old)
    answered(served, path, body)


@EXAMPLES
@given(args=st.dictionaries(st.sampled_from(["Pod", "Nodes", "NodeNames"]) | strings,
                            json_values, max_size=3) | json_values,
       verb=st.sampled_from(["filter", "prioritize"]))
def test_generated_scheduler_extender_args_get_an_answer(
    served: Served, args: Any, verb: str
) -> None:
    status, answer = served.post(f"/scheduler/{verb}", json.dumps(args).encode())
    assert status < 500, (status, answer)
    assert not served.errors, [r.getMessage() for r in served.errors]


@EXAMPLES
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_generated_bodies_that_are_no_review_get_a_400(served: Served, body: bytes) -> None:
    status, answer = served.post("/mutate-pods", body)
    assert status in (200, 400), (status, answer)
    assert not served.errors


# ------------------------------------------------------------------ CNI


async def parse_only(request: protocol.Request) -> dict[str, Any] | None:
    netconf.parse_call(request)
    return None


@settings(max_examples=400, deadline=None, derandomize=True)
@given(message=cni_requests)
def test_generated_cni_requests_get_a_cni_error_never_an_internal_one(message: Any) -> None:
    server = CniServer("/nonexistent", parse_only)
    reply = asyncio.run(server.answer(json.dumps(message).encode()))
    if not reply.get("ok"):
        error = reply["error"]
        assert error["code"] != cni_errors.InternalError.code, error
        assert error["msg"]


def test_a_cni_netns_path_with_dot_dot_or_control_characters_is_refused() -> None:
    for bad in ("/run/netns/../../proc/1/ns/net", "/run/netns/x\n", "/run/netns/\x00x",
                "/" + "a" * 5000):
        with pytest.raises(cni_errors.InvalidEnvironment, match="CNI_NETNS"):
            netconf.check_netns(bad, "ADD")
    assert netconf.check_netns("/proc/4242/ns/net", "ADD") == "/proc/4242/ns/net"

