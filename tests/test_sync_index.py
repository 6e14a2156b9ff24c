"""The sync worker's index answers what a step asks, as objects come, change and go."""

from __future__ import annotations

import ipaddress

from podnet_sync.cluster import Endpoint, EndpointPort, EndpointSliceView, PodView
from podnet_sync.index import ClusterIndex


def pod(name: str, node: str = "node1", subnet: str = "apps", deleting: bool = False) -> PodView:
    return PodView("default", name, f"uid-{name}", subnet, (ipaddress.ip_address("10.0.0.5"),),
                   "0a:00:00:00:00:05", node, f"tok-{name}", terminal=False,
                   host_network=False, routed=False, deleting=deleting)


def endpoint_slice(name: str, service: str) -> EndpointSliceView:
    return EndpointSliceView("default", name, service,
                             (Endpoint((ipaddress.ip_address("10.0.0.5"),), True, True, False),),
                             (EndpointPort("http", "TCP", 8080),))


def test_a_pod_that_moves_to_another_node_leaves_its_old_pair() -> None:
    index = ClusterIndex.of([pod("a"), pod("b")], [], [])
    old = index.put_pod(("default", "a"), pod("a", node="node2"))
    assert old == pod("a")
    assert index.stored_pods_in([("apps", "node1")]) == [pod("b")]
    assert index.stored_pods_in([("apps", "node2")]) == [pod("a", node="node2")]


def test_a_pod_in_its_grace_period_stays_in_its_pair_until_it_is_gone() -> None:
    index = ClusterIndex.of([pod("a")], [], [])
    index.put_pod(("default", "a"), pod("a", deleting=True))
    assert index.pods[("default", "a")].deleting
    assert index.stored_pods_in([("apps", "node1")]) == [pod("a", deleting=True)]


def test_a_pod_gone_from_the_store_is_dropped_everywhere() -> None:
    index = ClusterIndex.of([pod("a")], [], [])
    assert index.put_pod(("default", "a"), None) == pod("a")
    assert index.pods == {}
    assert index.stored_pods_in([("apps", "node1")]) == []


def test_a_slice_relabelled_to_another_service_moves_with_it() -> None:
    index = ClusterIndex.of([], [], [endpoint_slice("web-1", "web")])
    old = index.put_slice(("default", "web-1"), endpoint_slice("web-1", "api"))
    assert old is not None and old.service_key == "default/web"
    assert index.slices_of(["default/web"]) == []
    assert index.slices_of(["default/api"]) == [endpoint_slice("web-1", "api")]


def test_a_service_has_all_its_slices_in_a_stable_order() -> None:
    slices = [endpoint_slice(name, "web") for name in ("web-2", "web-1", "web-3")]
    index = ClusterIndex.of([], [], slices)
    assert [s.name for s in index.slices_of(["default/web"])] == ["web-1", "web-2", "web-3"]
    index.put_slice(("default", "web-2"), None)
    assert [s.name for s in index.slices_of(["default/web"])] == ["web-1", "web-3"]
