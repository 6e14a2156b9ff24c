"""Which connectivity checks ``podnet up`` runs between its pods, and how it judges them.

Pure functions over plain values; ``tests/test_lab.py`` runs the checks for real.
"""

from __future__ import annotations

from typing import Any

from podnet.lab.checks import (
    CHECK_PORT,
    SEPARATOR,
    Check,
    Host,
    Listener,
    Outcome,
    ServiceTarget,
    judge,
    node_addresses,
    plan_checks,
    pod_host,
    results_table,
    service_targets,
)

A1 = Host("shop/a1", "ns-a1", "10.66.0.20", "node-1", "shop")
A2 = Host("shop/a2", "ns-a2", "10.66.0.21", "node-1", "shop")
B1 = Host("shop/b1", "ns-b1", "10.66.0.22", "node-2", "shop")
T1 = Host("tools/t1", "ns-t1", "10.67.0.2", "node-2", "tools")
OUTSIDE = Host("outside 198.51.100.10", "ext", "198.51.100.10")
NODES = {"node-1": "172.30.0.11", "node-2": "172.30.0.12"}


def kinds(checks: list[Check]) -> list[tuple[str, str, str]]:
    return [(c.kind, c.client.label, c.destination) for c in checks]


def test_each_kind_of_path_gets_one_check_between_suitable_pods() -> None:
    checks = plan_checks([T1, B1, A2, A1], [], OUTSIDE, {"shop"}, NODES)
    assert kinds(checks) == [
        ("same node", "shop/a1", "shop/a2"),
        ("across nodes (Geneve)", "shop/a1", "shop/b1"),
        ("across subnets", "shop/a1", "tools/t1"),
        ("outside world (SNAT)", "shop/a1", "outside 198.51.100.10"),
        ("outside world (SNAT)", "shop/b1", "outside 198.51.100.10"),
    ]
    assert checks[0].listeners == (Listener(A2, CHECK_PORT),)
    assert [c.expect_source for c in checks[3:]] == ["172.30.0.11", "172.30.0.12"]


def test_kinds_without_suitable_pods_are_left_out() -> None:
    assert kinds(plan_checks([A1, A2], [], None, set(), {})) == [
        ("same node", "shop/a1", "shop/a2")]
    assert plan_checks([A1], [], OUTSIDE, set(), NODES) == []


def test_a_service_is_checked_from_a_pod_that_is_not_one_of_its_backends() -> None:
    service = ServiceTarget("service shop/web", "10.96.0.10", 80,
                            (Listener(A1, 8080), Listener(A2, 8080)), sticky=True)
    (check,) = [c for c in plan_checks([A1, A2, B1], [service], None, set(), {})
                if c.kind == "Service VIP"]
    assert (check.client, check.address, check.port, check.sticky) == (B1, "10.96.0.10", 80,
                                                                        True)
    assert check.destination == "service shop/web 10.96.0.10:80"
    assert check.listeners == service.backends


def answers(*pairs: tuple[str, str]) -> tuple[str, ...]:
    return tuple(f"{label}{SEPARATOR}{source}" for label, source in pairs)


def test_a_check_passes_with_every_request_answered_and_reports_the_median() -> None:
    check = Check("same node", A1, A2.ip, CHECK_PORT, A2.label, (Listener(A2, CHECK_PORT),))
    result = judge(check, Outcome(answers(*[("shop/a2", A1.ip)] * 3), (0.9, 0.5, 0.7)))
    assert (result.ok, result.latency_ms, result.detail) == (True, 0.7, "answered by shop/a2")
    assert result.cells()[3:5] == ("pass", "0.70 ms")


def test_a_check_with_missing_answers_fails_with_the_clients_error() -> None:
    check = Check("same node", A1, A2.ip, CHECK_PORT, A2.label, (Listener(A2, CHECK_PORT),))
    result = judge(check, Outcome((), (), "timed out"))
    assert (result.ok, result.latency_ms, result.detail) == (False, None,
                                                             "0/3 answered: timed out")
    assert result.cells()[3:5] == ("FAIL", "-")


def test_client_ip_affinity_must_keep_every_answer_on_one_backend() -> None:
    check = Check("Service VIP", B1, "10.96.0.10", 80, "service shop/web",
                  (Listener(A1, 8080), Listener(A2, 8080)), sticky=True)
    held = judge(check, Outcome(answers(*[("shop/a1", B1.ip)] * 3), (1.0, 1.0, 1.0)))
    assert held.ok and held.detail == "answered by shop/a1 (3/3: ClientIP affinity held)"
    broken = judge(check, Outcome(answers(("shop/a1", B1.ip), ("shop/a2", B1.ip),
                                          ("shop/a1", B1.ip)), (1.0, 1.0, 1.0)))
    assert not broken.ok and broken.detail == "affinity broken: answered by shop/a1, shop/a2"


def test_the_outside_world_must_see_the_nodes_address_not_the_pods() -> None:
    check = Check("outside world (SNAT)", A1, OUTSIDE.ip, CHECK_PORT, OUTSIDE.label,
                  (Listener(OUTSIDE, CHECK_PORT),), expect_source="172.30.0.11")
    names = {"172.30.0.11": "node-1"}
    snat = judge(check, Outcome(answers(*[(OUTSIDE.label, "172.30.0.11")] * 3), (1, 1, 1)),
                 names)
    assert snat.ok and snat.detail == "external host saw 172.30.0.11 (node-1)"
    routed = judge(check, Outcome(answers(*[(OUTSIDE.label, A1.ip)] * 3), (1, 1, 1)), names)
    assert not routed.ok
    assert routed.detail == "external host saw 10.66.0.20, not the node's 172.30.0.11"


def pod(name: str, uid: str, ips: list[str], node: str = "node-1",
        phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop", "uid": uid,
                         "annotations": {"ovn.kubernetes.io/logical_switch": "shop"}},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "podIPs": [{"ip": ip} for ip in ips]}}


def test_running_pods_become_hosts_by_their_first_ipv4_address() -> None:
    host = pod_host(pod("web", "u1", ["fd00::5", "10.66.0.5"]), lambda p: "sandbox-u1")
    assert host == Host("shop/web", "sandbox-u1", "10.66.0.5", "node-1", "shop")
    assert pod_host(pod("web", "u1", ["10.66.0.5"], phase="Pending"), str) is None
    assert pod_host(pod("web", "u1", ["fd00::5"]), str) is None


def test_a_services_backends_are_its_ready_endpoints_on_the_target_port() -> None:
    hosts = {"u1": A1, "u2": A2}
    spec: dict[str, Any] = {"clusterIP": "10.96.0.10", "sessionAffinity": "ClientIP",
                            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    service = {"metadata": {"name": "web", "namespace": "shop"}, "spec": spec}
    endpoints = [{"addresses": [A1.ip], "conditions": {"ready": True},
                  "targetRef": {"uid": "u1"}},
                 {"addresses": [A2.ip], "conditions": {"ready": False},
                  "targetRef": {"uid": "u2"}}]
    slices = [{"metadata": {"namespace": "shop",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "ports": [{"name": "http", "port": 8080}], "endpoints": endpoints}]
    assert service_targets([service], slices, hosts) == [ServiceTarget(
        "service shop/web", "10.96.0.10", 80, (Listener(A1, 8080),), sticky=True)]
    headless = {**service, "spec": {**spec, "clusterIP": "None"}}
    assert service_targets([headless], slices, hosts) == []


def test_nodes_are_known_by_their_internal_ip() -> None:
    nodes = [{"metadata": {"name": "node-1"}, "status": {"addresses": [
        {"type": "Hostname", "address": "node-1"},
        {"type": "InternalIP", "address": "172.30.0.11"}]}}]
    assert node_addresses(nodes) == {"node-1": "172.30.0.11"}


def test_no_checks_render_as_a_sentence() -> None:
    assert results_table([]) == "(no connectivity checks: no running pods)"
