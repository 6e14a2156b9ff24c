"""Hostile input, generated: AdmissionReviews for every webhook route, extender args,
CNI requests, and a running webhook to send them to. The test suite runs a few hundred
of each (tests/test_fuzz.py); bench/fuzz.py runs tens of thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from ipam.settings import RedisSettings
from ipam.store import Ipam
from node_agent import protocol
from tests.test_webhook_server import server_settings
from tests.tls import client_context, make_certificate
from webhook.admit import token_from_uid
from webhook.server import running_webhook

HOSTILE = ["", " ", "\x1f", "a\x1fb", "\n", "x" * 300, "Not_A_Name", "-", "..", "../../etc",
           "0.0.0.0/0", "10.16.0.1", "10.16.0.0", "1e308", "-5", "NaN", "٣", "{}", "[]",
           "10.16.0.5,10.16.0.6", "a;b", "ovn-default", "join", "☃", "\x00", "%s%n"]
KEYS = ["ovn.kubernetes.io/ip_address", "ovn.kubernetes.io/mac_address",
        "ovn.kubernetes.io/ip_pool", "ovn.kubernetes.io/logical_switch",
        "ovn.kubernetes.io/ingress_rate", "ovn.kubernetes.io/egress_rate",
        "podnet.io/reservation", "ovn.kubernetes.io/allocated", "k8s.v1.cni.cncf.io/networks"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.sampled_from(HOSTILE) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(HOSTILE) | st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
strings = st.sampled_from(HOSTILE) | st.text(max_size=30)


@dataclass
class Served:
    url: str
    context: ssl.SSLContext
    redis: RedisSettings
    errors: list[logging.LogRecord]

    def post(self, path: str, body: bytes) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=20, context=self.context) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def reservation_left(self, uid: str) -> bool:
        async def look() -> bool:
            ipam = Ipam.connect(self.redis)
            try:
                return await ipam.lookup_token(token_from_uid(uid)) is not None
            finally:
                await ipam.close()
        return asyncio.run(look())


class ErrorRecords(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@contextlib.contextmanager
def serving(folder: Path, redis_url: str) -> Iterator[Served]:
    """A webhook over HTTPS in a thread of its own, on a key prefix of its own; every
    ERROR record logged meanwhile is collected in ``Served.errors``."""
    cert, key = make_certificate(folder / "tls")
    redis = RedisSettings(url=redis_url, prefix=f"fuzz{uuid.uuid4().hex[:6]}:")
    config = server_settings(folder, redis, cert, key)
    ready, stop = threading.Event(), threading.Event()
    found: dict[str, str] = {}

    async def serve() -> None:
        async with running_webhook(config) as running:
            found["url"] = running.url
            ready.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the webhook did not start")
    records: list[logging.LogRecord] = []
    handler = ErrorRecords(records)
    logging.getLogger().addHandler(handler)
    try:
        yield Served(found["url"], client_context(cert), redis, records)
    finally:
        logging.getLogger().removeHandler(handler)
        stop.set()
        thread.join(30)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": draw(st.sampled_from(["default", "edge", "x"]))}
    if draw(st.booleans()):
        metadata["name"] = draw(strings)
    else:
        metadata["generateName"] = draw(strings)
    metadata["annotations"] = draw(st.dictionaries(st.sampled_from(KEYS) | strings,
                                                   strings, max_size=4))
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if draw(st.booleans()):
        spec["affinity"] = draw(json_values)
    if draw(st.booleans()):
        spec[draw(st.sampled_from(["hostNetwork", "nodeSelector", "containers"]))] = draw(
            json_values)
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                           "spec": spec}
    if draw(st.integers(0, 9)) == 0:
        pod[draw(st.sampled_from(["metadata", "spec", "kind"]))] = draw(json_values)
    return pod


def review(obj: Any, kind: str, group: str, resource: str, operation: str,
           old: Any = None) -> tuple[str, dict[str, Any]]:
    uid = str(uuid.uuid4())
    gvk = {"group": group, "version": "v1", "kind": kind}
    request = {"uid": uid, "kind": gvk, "resource": {"group": group, "version": "v1",
                                                     "resource": resource},
               "namespace": "default", "operation": operation, "object": obj,
               "oldObject": old, "dryRun": False,
               "userInfo": {"username": "system:serviceaccount:default:fuzz"}}
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) and isinstance(
            obj["metadata"].get("name"), str):
        request["name"] = obj["metadata"]["name"]
    return uid, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": request}


def answered(served: Served, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    status, answer = served.post(path, json.dumps(body).encode())
    assert status < 500, (status, answer)
    assert not served.errors, [r.getMessage() for r in served.errors]
    if status != 200:
        assert status in (400, 413) and isinstance(answer, dict) and answer.get("message")
        return None
    response: dict[str, Any] = answer["response"]
    return response


cni_requests = st.fixed_dictionaries({
    "wire": st.sampled_from([protocol.WIRE_VERSION, 0, "1"]),
    "command": st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", ""]) | strings,
    "containerId": strings, "netns": strings | st.just("/run/netns/x"),
    "ifname": strings | st.just("eth0"), "args": strings | st.just(
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"),
    "path": strings,
    "config": st.fixed_dictionaries({"cniVersion": st.sampled_from(["1.0.0", "0.4.0"])
                                     | json_values, "name": json_values,
                                     "type": st.just("podnet-cni")}, optional={
        "runtimeConfig": json_values, "mtu": json_values, "prevResult": json_values}),
}) | json_values
