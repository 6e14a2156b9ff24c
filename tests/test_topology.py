"""Desired OVN state from Kubernetes objects: names, addresses, gateways, services."""

from __future__ import annotations

import ipaddress
from typing import Any

from ipam.subnet import build_subnet
from podnet_sync.cluster import parse_endpoint_slice, parse_pod, parse_service
from podnet_sync.topology import ClusterView, NodeJoin, desired_state

SUBNETS = [
    build_subnet("ovn-default", "10.16.0.0/16", nat_outgoing=True),
    build_subnet("join", "100.64.0.0/16"),
    build_subnet("secure", "10.70.0.0/24", private=True, allow_subnets=["10.16.0.0/16"]),
    build_subnet("egress", "10.71.0.0/24,fd00:71::/64", gateway_type="centralized",
                 gateway_node="node2,node1"),
]
NODES = [
    NodeJoin("node1", (ipaddress.ip_address("100.64.0.2"),), "0a:58:00:00:00:02",
             (ipaddress.ip_address("192.168.1.11"),)),
    NodeJoin("node2", (ipaddress.ip_address("100.64.0.3"),), "0a:58:00:00:00:03",
             (ipaddress.ip_address("192.168.1.12"),)),
]


def pod(name: str, subnet: str, ips: str, node: str = "node1", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default", "name": name, "uid": f"uid-{name}",
                     "annotations": {
                         "ovn.kubernetes.io/allocated": "true",
                         "ovn.kubernetes.io/logical_switch": subnet,
                         "ovn.kubernetes.io/ip_address": ips,
                         "ovn.kubernetes.io/mac_address": "0a:00:00:00:00:01",
                     }},
        "spec": {"nodeName": node, **extra.get("spec", {})},
        "status": extra.get("status", {"phase": "Running"}),
    }


def view(pods: list[dict[str, Any]], **kwargs: Any) -> ClusterView:
    return ClusterView(SUBNETS, [parse_pod(p) for p in pods], NODES, **kwargs)


def test_each_subnet_is_a_switch_joined_to_the_cluster_router() -> None:
    state = desired_state(view([]))
    assert set(state.switches) == {"ovn-default", "join", "secure", "egress"}
    port = state.router_ports["ovn-cluster-egress"]
    assert port.networks == ("10.71.0.1/24", "fd00:71::1/64")
    assert state.switch_ports["egress-ovn-cluster"].options == (
        ("router-port", "ovn-cluster-egress"),
    )
    assert state.switch_ports["node-node2"].addresses == ("0a:58:00:00:00:03 100.64.0.3",)


def test_a_pod_port_carries_its_addresses_and_port_security() -> None:
    state = desired_state(view([pod("web", "ovn-default", "10.16.0.5")]))
    port = state.switch_ports["web.default"]
    assert port.switch == "ovn-default"
    assert port.addresses == port.port_security == ("0a:00:00:00:00:01 10.16.0.5",)
    assert ("podnet.io/owner", "podnet") in port.external_ids


def test_finished_host_network_and_unknown_subnet_pods_get_no_port() -> None:
    state = desired_state(view([
        pod("done", "ovn-default", "10.16.0.6", status={"phase": "Succeeded"}),
        pod("host", "ovn-default", "10.16.0.7", spec={"hostNetwork": True}),
        pod("lost", "nowhere", "10.99.0.7"),
    ]))
    assert not {"done.default", "host.default", "lost.default"} & set(state.switch_ports)
    assert state.skipped == ["pod default/lost: subnet 'nowhere' is unknown"]


def test_a_private_subnet_admits_only_itself_its_allowed_subnets_and_nodes() -> None:
    state = desired_state(view([]))
    allow = state.acls["secure/private-allow"]
    assert allow.match == "ip4.src == {10.16.0.0/16, 10.70.0.0/24, 100.64.0.0/16}"
    assert (allow.direction, allow.action) == ("to-lport", "allow-related")
    assert state.acls["secure/private-drop"].priority < allow.priority


def test_gateways_reroute_to_the_right_node() -> None:
    state = desired_state(view([pod("a", "ovn-default", "10.16.0.5", node="node2")]))
    centralized = state.policies["gateway/egress/4"]
    assert (centralized.match, centralized.nexthops) == ("ip4.src == 10.71.0.0/24",
                                                         ("100.64.0.3",))
    assert "gateway/egress/6" not in state.policies  # node2 has no IPv6 join address
    distributed = state.policies["gateway/ovn-default/node2/4"]
    assert distributed.nexthops == ("100.64.0.3",)
    address_set = distributed.match.removeprefix("ip4.src == $")
    assert state.address_sets[address_set].addresses == ("10.16.0.5",)
    assert state.policies["cluster-internal"].priority > distributed.priority


SERVICE = {
    "metadata": {"namespace": "default", "name": "web"},
    "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "type": "NodePort",
             "sessionAffinity": "ClientIP",
             "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}},
             "ports": [{"name": "http", "protocol": "TCP", "port": 80, "nodePort": 30080},
                       {"name": "dns", "protocol": "UDP", "port": 53}]},
}


def endpoint_slice(*endpoints: tuple[str, bool, bool]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "default", "name": "web-abc",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {
            "ready": ready, "serving": ready or terminating, "terminating": terminating}}
            for ip, ready, terminating in endpoints],
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080},
                  {"name": "dns", "protocol": "UDP", "port": 5353}],
    }


def test_a_service_is_one_load_balancer_per_protocol_with_ready_backends() -> None:
    slices = [parse_endpoint_slice(endpoint_slice(
        ("10.16.0.5", True, False), ("10.16.0.6", False, True)))]
    state = desired_state(view([], services=[parse_service(SERVICE)], slices=slices))
    tcp = state.load_balancers["podnet/svc/default/web/tcp"]
    assert dict(tcp.vips) == {
        "10.96.0.10:80": "10.16.0.5:8080",
        "192.168.1.11:30080": "10.16.0.5:8080",
        "192.168.1.12:30080": "10.16.0.5:8080",
    }
    assert dict(tcp.options) == {"affinity_timeout": "65535"}  # OVN's maximum
    assert dict(state.load_balancers["podnet/svc/default/web/udp"].vips) == {
        "10.96.0.10:53": "10.16.0.5:5353"}


def test_terminating_endpoints_serve_only_when_none_is_ready() -> None:
    slices = [parse_endpoint_slice(endpoint_slice(("10.16.0.6", False, True)))]
    state = desired_state(view([], services=[parse_service(SERVICE)], slices=slices))
    assert dict(state.load_balancers["podnet/svc/default/web/tcp"].vips)["10.96.0.10:80"] == (
        "10.16.0.6:8080")


def test_headless_services_get_no_load_balancer() -> None:
    headless = {"metadata": {"namespace": "default", "name": "db"},
                "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}
    assert not desired_state(view([], services=[parse_service(headless)])).load_balancers
