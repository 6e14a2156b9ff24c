"""The NetworkPolicy cache against the compiler: after any sequence of pod, namespace and
policy changes, the rows an event step writes leave NB exactly as a full compile of the
same cluster would have it."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest

from podnet_sync.cluster import PodView, parse_pod
from podnet_sync.nb_model import AddressSet, DesiredState, PortGroup
from podnet_sync.netpol import (
    NamespaceView,
    NetworkPolicy,
    PolicyView,
    add_network_policies,
    parse_namespace,
    parse_network_policy,
)
from podnet_sync.netpol_cache import Change, PolicyCache

NODE_IPS = (ipaddress.ip_address("100.64.0.2"),)
NAMESPACES = ("a", "b", "c", "d")
APPS = ("web", "db", "cache")


def pod(rng: random.Random, namespace: str, name: str, serial: int) -> PodView:
    port = rng.choice((80, 8080))
    return parse_pod({
        "metadata": {"namespace": namespace, "name": name, "uid": f"u-{name}-{serial}",
                     "labels": {"app": rng.choice(APPS)}, "annotations": {
                         "ovn.kubernetes.io/allocated": "true",
                         "ovn.kubernetes.io/logical_switch": "ovn-default",
                         "ovn.kubernetes.io/ip_address": f"10.0.{serial // 250}.{serial % 250 + 2}",
                         "ovn.kubernetes.io/mac_address": "0a:00:00:00:00:01"}},
        "spec": {"nodeName": "node1", "containers": [
            {"ports": [{"name": "http", "containerPort": port}]}]},
    })


def namespace(rng: random.Random, name: str) -> NamespaceView:
    annotations = ({"k8s.ovn.org/acl-logging": '{"deny": "alert", "allow": "notice"}'}
                   if rng.random() < 0.2 else {})
    return parse_namespace({"metadata": {"name": name, "annotations": annotations,
                                         "labels": {"team": rng.choice("xy")}}})


def peer(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.3:
        return {"podSelector": {"matchLabels": {"app": rng.choice(APPS)}}}
    if roll < 0.6:
        return {"namespaceSelector": {"matchLabels": {"team": rng.choice("xy")}},
                "podSelector": {"matchLabels": {"app": rng.choice(APPS)}}}
    if roll < 0.75:
        return {"namespaceSelector": {}}
    if roll < 0.9:
        return {"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": rng.choice((*NAMESPACES, "new"))}}}
    return {"ipBlock": {"cidr": "10.0.0.0/24"}}


def rule(rng: random.Random, field: str) -> dict[str, Any]:
    body: dict[str, Any] = {field: [peer(rng) for _ in range(rng.randint(0, 2))]}
    if rng.random() < 0.5:
        body["ports"] = [rng.choice(({"port": "http"}, {"port": 443}))]
    return body


def network_policy(rng: random.Random, ns: str, name: str) -> NetworkPolicy:
    spec: dict[str, Any] = {"podSelector": rng.choice(({}, {"matchLabels": {
        "app": rng.choice(APPS)}})), "ingress": [rule(rng, "from")]}
    if rng.random() < 0.4:
        spec["egress"] = [rule(rng, "to")]
    annotations = ({"ovn.kubernetes.io/enable_log": "true",
                    "ovn.kubernetes.io/log_acl_actions": "allow,drop"}
                   if rng.random() < 0.2 else {})
    return parse_network_policy({"metadata": {"namespace": ns, "name": name,
                                              "annotations": annotations}, "spec": spec})


def full(policies: dict[str, NetworkPolicy], pods: dict[str, PodView],
         namespaces: dict[str, NamespaceView]) -> DesiredState:
    state = DesiredState()
    add_network_policies(state, PolicyView(list(policies.values()), list(pods.values()),
                                           namespaces, NODE_IPS))
    return state


def rows(state: DesiredState) -> dict[str, PortGroup | AddressSet]:
    return {**state.port_groups, **state.policy_address_sets}


def apply(nb: dict[str, PortGroup | AddressSet], change: Change) -> None:
    written = rows(change.state)
    for name in change.names:
        if name in written:
            nb[name] = written[name]
        else:
            nb.pop(name, None)


@pytest.mark.parametrize("seed", range(16))
def test_event_steps_leave_the_rows_a_full_compile_makes(seed: int) -> None:
    rng = random.Random(seed)
    namespaces = {name: namespace(rng, name) for name in NAMESPACES[:3]}
    pods = {}
    for serial in range(30):
        view = pod(rng, rng.choice(NAMESPACES[:3]), f"p{serial}", serial)
        pods[view.port_name] = view
    policies = {}
    for serial in range(8):
        item = network_policy(rng, rng.choice(NAMESPACES[:3]), f"np{serial}")
        policies[item.key] = item
    cache = PolicyCache()
    first = DesiredState()
    cache.rebuild(first, list(policies.values()), pods.values(), namespaces, NODE_IPS)
    assert first == full(policies, pods, namespaces)
    nb = rows(first)
    serial = 100
    for _ in range(40):
        changed: dict[str, PodView | None] = {}
        roll = rng.random()
        if roll < 0.45:  # a pod added, relabelled or removed (in any namespace)
            serial += 1
            key = rng.choice([*pods, f"p{serial}.{rng.choice(NAMESPACES)}"])
            name, _, ns = key.partition(".")
            was = pods.get(key)
            now = None if was is not None and rng.random() < 0.4 else pod(rng, ns, name, serial)
            changed[key] = now
            if now is None:
                del pods[key]
            else:
                pods[key] = now
        elif roll < 0.8:  # a policy added, changed or removed
            ns = rng.choice(NAMESPACES)
            name = f"np{rng.randrange(12)}"
            if f"{ns}/{name}" in policies and rng.random() < 0.3:
                del policies[f"{ns}/{name}"]
            else:
                policies[f"{ns}/{name}"] = network_policy(rng, ns, name)
        else:  # a namespace's labels or logging changed, or it came or went
            name = rng.choice(NAMESPACES)
            if name in namespaces and rng.random() < 0.3:
                del namespaces[name]
            else:
                namespaces[name] = namespace(rng, name)
        change = cache.update(list(policies.values()), changed, dict(namespaces), NODE_IPS)
        assert change is not None
        apply(nb, change)
        want = full(policies, pods, namespaces)
        assert nb == rows(want)
        assert change.state.meters == want.meters


def test_a_change_of_the_nodes_asks_for_a_full_compile() -> None:
    cache = PolicyCache()
    cache.rebuild(DesiredState(), [], [], {}, NODE_IPS)
    assert cache.update([], {}, {}, (ipaddress.ip_address("100.64.0.3"),)) is None
