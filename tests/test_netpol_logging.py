"""NetworkPolicy logging proved on the datapath: a real OVN central, a real chassis
(ovs-vswitchd and ovn-controller) and pods as network namespaces.

A policy with Kube-OVN's logging annotations isolates a pod; a pod the policy does not
allow is refused, and ovn-controller's log gets an ``acl_log`` line naming the policy;
an allowed client's connection is logged under the policy's rule; a namespace asking
for deny logs (OVN-Kubernetes' annotation) gets its isolation drops logged under its
own name; and a flood of refused packets is logged only as often as the policy's meter
lets through.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ipam import names
from ipam.subnet import build_subnet
from podnet.ovn import OvnCentral, OvsNode
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.cluster import PodView, parse_pod
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState
from podnet_sync.netpol import (
    PolicyView,
    add_network_policies,
    parse_namespace,
    parse_network_policy,
)
from podnet_sync.topology import ClusterView, desired_state
from tests.ovn_fixtures import NetnsPod, netns_node, plug_pod, running_node, token
from tests.waiting import until

pytestmark = pytest.mark.slow

NAMESPACE = "shop"
POLICY = "only-clients"
RATE = 5
"""The policy's meter: logged packets a second."""
FLOOD = 400
FLOOD_INTERVAL_S = 0.005


@dataclass(frozen=True)
class Lab:
    central: OvnCentral
    node: OvsNode
    northbound: Northbound
    subnet: str
    prefix: str
    """The subnet's first three octets."""

    @property
    def log(self) -> Path:
        return self.node.controller.logfile


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with OvnCentral(tmp_path_factory.mktemp("netpol-log-central")) as central:
        node = netns_node(tmp_path_factory.mktemp("netpol-log-node"), central)
        with running_node(node):
            api = nb_api(central.nb_remote)
            writer = Northbound(api)
            try:
                yield Lab(central, node, writer, f"logs-{token()}", "10.253.7")
            finally:
                writer.reconcile(DesiredState())
                close_api(api)


def pod_view(lab: Lab, name: str, host: int, labels: dict[str, str]) -> PodView:
    return parse_pod({
        "metadata": {"namespace": NAMESPACE, "name": name, "uid": f"u-{name}",
                     "labels": labels, "annotations": {
                         "ovn.kubernetes.io/allocated": "true",
                         "ovn.kubernetes.io/logical_switch": lab.subnet,
                         "ovn.kubernetes.io/ip_address": f"{lab.prefix}.{host}",
                         "ovn.kubernetes.io/mac_address": f"0a:58:0a:fd:07:{host:02x}"}},
        "spec": {"nodeName": lab.node.name, "containers": [{"name": "c"}]},
        "status": {"phase": "Running"},
    })


def logged_policy(actions: str) -> dict[str, object]:
    return {"metadata": {"namespace": NAMESPACE, "name": POLICY, "annotations": {
                "ovn.kubernetes.io/enable_log": "true",
                "ovn.kubernetes.io/log_acl_actions": actions,
                "ovn.kubernetes.io/acl_log_meter_rate": str(RATE)}},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}}


@dataclass
class Pods:
    web: NetnsPod
    client: NetnsPod
    stranger: NetnsPod


@pytest.fixture
def pods(lab: Lab) -> Iterator[Pods]:
    """Three pods on the node: web (isolated by the policy), client (allowed), and a
    stranger (not allowed); their ports written to the NB with the policy."""
    views = {"web": pod_view(lab, "web", 5, {"app": "web"}),
             "client": pod_view(lab, "client", 6, {"app": "client"}),
             "stranger": pod_view(lab, "stranger", 7, {"app": "other"})}
    plugged: dict[str, NetnsPod] = {}
    try:
        for name, view in views.items():
            plugged[name] = plug_pod(lab.node, names.pod_port(name, NAMESPACE),
                                     f"{view.ips[0]}/24", view.mac)
        yield Pods(plugged["web"], plugged["client"], plugged["stranger"])
    finally:
        for pod in plugged.values():
            pod.cleanup()


def apply(lab: Lab, pods: list[PodView], policies: list[dict[str, object]],
          namespace_annotations: dict[str, str] | None = None) -> None:
    desired = desired_state(ClusterView(
        subnets=[build_subnet(lab.subnet, f"{lab.prefix}.0/24")], pods=pods, nodes=[]))
    namespace = parse_namespace({"metadata": {"name": NAMESPACE,
                                              "annotations": namespace_annotations or {}}})
    add_network_policies(desired, PolicyView(
        [parse_network_policy(p) for p in policies], pods, {NAMESPACE: namespace}))
    lab.northbound.reconcile(desired)


def views(lab: Lab) -> list[PodView]:
    return [pod_view(lab, "web", 5, {"app": "web"}), pod_view(lab, "client", 6, {"app": "client"}),
            pod_view(lab, "stranger", 7, {"app": "other"})]




def acl_lines(lab: Lab, name: str, verdict: str, since: int = 0) -> list[str]:
    """ovn-controller's ``acl_log`` lines for the ACL ``name`` with ``verdict``, in the
    log's text after offset ``since``."""
    text = lab.log.read_text(errors="replace")[since:]
    wanted = re.compile(rf'acl_log\(.*name="{re.escape(name)}", verdict={verdict}\b')
    return [line for line in text.splitlines() if wanted.search(line)]


def installed(lab: Lab, pods: Pods) -> None:
    for pod in (pods.web, pods.client, pods.stranger):
        lab.node.wait_port_installed(pod.host_dev, timeout_s=20)


def test_a_refused_connection_is_logged_by_ovn_controller_under_the_policys_name(
    lab: Lab, pods: Pods
) -> None:
    apply(lab, views(lab), [logged_policy("drop")])
    installed(lab, pods)
    until(lambda: not pods.stranger.pings(pods.web))
    assert pods.client.pings(pods.web)
    until(lambda: bool(acl_lines(lab, f"np:{NAMESPACE}/{POLICY}:deny-in", "drop")))
    line = acl_lines(lab, f"np:{NAMESPACE}/{POLICY}:deny-in", "drop")[-1]
    assert "direction=to-lport" in line and "severity=warning" in line
    assert f"nw_src={pods.stranger.ip}" in line and f"nw_dst={pods.web.ip}" in line
    assert not acl_lines(lab, f"np:{NAMESPACE}/{POLICY}:in0", "allow")  # only drops asked


def test_with_allow_and_drop_asked_an_allowed_connection_is_logged_under_its_rule(
    lab: Lab, pods: Pods
) -> None:
    apply(lab, views(lab), [logged_policy("allow,drop")])
    installed(lab, pods)
    until(lambda: not pods.stranger.pings(pods.web))
    start = lab.log.stat().st_size
    assert pods.client.pings(pods.web)
    until(lambda: bool(acl_lines(lab, f"np:{NAMESPACE}/{POLICY}:in0", "allow", start)))
    line = acl_lines(lab, f"np:{NAMESPACE}/{POLICY}:in0", "allow", start)[-1]
    assert "severity=info" in line and f"nw_src={pods.client.ip}" in line


def test_a_namespace_asking_for_deny_logs_gets_its_isolation_drops_logged_under_its_name(
    lab: Lab, pods: Pods
) -> None:
    quiet = logged_policy("drop")
    quiet["metadata"] = {"namespace": NAMESPACE, "name": POLICY}  # no annotations
    apply(lab, views(lab), [quiet], {"k8s.ovn.org/acl-logging": '{"deny": "alert"}'})
    installed(lab, pods)
    start = lab.log.stat().st_size
    until(lambda: not pods.stranger.pings(pods.web))
    until(lambda: bool(acl_lines(lab, f"np:{NAMESPACE}:deny-in", "drop", start)))
    line = acl_lines(lab, f"np:{NAMESPACE}:deny-in", "drop", start)[-1]
    assert "severity=alert" in line and f"nw_src={pods.stranger.ip}" in line
    assert not acl_lines(lab, f"np:{NAMESPACE}/{POLICY}:deny-in", "drop", start)


def test_a_flood_of_refused_packets_is_logged_at_most_at_the_meters_rate(
    lab: Lab, pods: Pods
) -> None:
    apply(lab, views(lab), [logged_policy("drop")])
    installed(lab, pods)
    until(lambda: not pods.stranger.pings(pods.web))
    time.sleep(1.5)  # the meter's bucket refills from the probes above
    start = lab.log.stat().st_size
    began = time.monotonic()
    flood = pods.stranger.popen("ping", "-q", "-c", str(FLOOD), "-i", str(FLOOD_INTERVAL_S),
                                "-W", "1", pods.web.ip)
    try:
        flood.communicate(timeout=60)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    elapsed = time.monotonic() - began
    time.sleep(1.0)  # let ovn-controller write what it was handed
    logged = acl_lines(lab, f"np:{NAMESPACE}/{POLICY}:deny-in", "drop", start)
    assert logged, "the flood was not logged at all"
    # A packets-per-second meter passes a burst of about a second's worth, then the
    # rate: a generous bound, far below the packets sent.
    bound = RATE * (elapsed + 3)
    assert len(logged) <= bound < FLOOD / 4, (len(logged), elapsed)
