"""NetworkPolicy proved on the real datapath with truth tables.

Three namespaces (x, y, z) of three pods each (a, b, c), spread over two nodes, serve
TCP and UDP on ports 80 and 81. For every case the suite applies some policies, then
has every pod probe every other pod on each protocol and port (and a Service VIP),
and compares the whole reachability matrix with what an independent oracle, written
from the API's definitions (``tests/netpol_oracle.py``), says the policies allow. A
case passes once a round of probes matches the oracle; it fails when none does within
a bound, printing the matrix diff. Every case starts from, and returns to, a cluster
without policies where everything reaches everything.

One lab serves all the cases: bringing up the system is what costs, and a policy
implementation that only works on a fresh cluster would not be one.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

from podnet.lab import LabSettings, up
from podnet.lab.kubelet import sandbox_name
from podnet.lab.nodes import lab_nodes
from podnet.lab.rest import Rest
from podnet.lab.trace import explain
from podnet.lab.up import central_of, lab_processes
from podnet_plumbing import kube
from tests.lab_fixtures import lab_settings, removed_after
from tests.netpol_matrix import (
    Agent,
    Cell,
    Matrix,
    Round,
    Service,
    Target,
    cells,
    cluster_from,
    converge,
    expected,
    probe_round,
    show,
)
from tests.netpol_oracle import EGRESS, INGRESS, TCP, UDP, Cluster

pytestmark = [pytest.mark.slow, pytest.mark.flaky(reruns=2)]
"""Slow; and a case that fails is run up to twice more (after the fixture's reset)
before it counts: the userspace datapath of Open vSwitch 3.1.0 has been seen to stall
a few pairs."""
NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = (80, 81)
NODES = 2
CONVERGE_S = 75.0
"""How long a case may take to match the oracle. Cases converge in 1-8 s; but a few UDP
pairs have stayed blocked for over 30 s after policies were removed (once in about six
runs, on a loaded 2-core machine, cause not found), so the bound is above the userspace
datapath's UDP connection-tracking timeout (60 s). A case that never converges still
fails."""
SERVICE = Service("y/web (VIP)", "", 80, TCP, "y/a", 81)
"""Service ``y/web``: VIP port 80 to pod y/a's port 81, on TCP and on UDP."""
JSON_PATCH = "application/json-patch+json"
COMPLAINTS = ("ERROR", "WARNING", "Traceback", "Error")
ACLS_SHOWN = 40
needs_policies = pytest.mark.skipif(
    importlib.util.find_spec("podnet_sync.netpol") is None,
    reason="the sync worker does not implement NetworkPolicy yet")


def sctp_available() -> bool:
    """Whether this kernel speaks SCTP (no module, no SCTP columns)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


def columns() -> tuple[tuple[str, int], ...]:
    protocols = (TCP, UDP, "SCTP") if sctp_available() else (TCP, UDP)
    return tuple((protocol, port) for protocol in protocols for port in PORTS)


# ---------------------------------------------------------------- manifests


def container_ports(pod: str) -> list[dict[str, Any]]:
    """The same four ports on every pod, but named differently on pod c, so a named
    port resolves per destination: ``web`` is TCP 80 on a and b, TCP 81 on c; ``dns``
    is UDP 80 on a and b, UDP 81 on c."""
    swap = pod == "c"
    return [{"name": "alt" if swap else "web", "containerPort": 80, "protocol": TCP},
            {"name": "web" if swap else "alt", "containerPort": 81, "protocol": TCP},
            {"name": "dns-alt" if swap else "dns", "containerPort": 80, "protocol": UDP},
            {"name": "dns" if swap else "dns-alt", "containerPort": 81, "protocol": UDP}]


def pod_manifest(namespace: str, name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"pod": name}},
            "spec": {"nodeName": node, "containers": [
                {"name": "server", "image": "agnhost", "ports": container_ports(name)}]}}


def manifests() -> list[dict[str, Any]]:
    """Namespaces x, y, z and pods a, b, c in each, alternating between the nodes so
    that every namespace has pods on both; the Service in front of y/a."""
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": {"ns": ns}}} for ns in NAMESPACES]
    for index, (ns, name) in enumerate((ns, name) for ns in NAMESPACES for name in PODS):
        objects.append(pod_manifest(ns, name, f"node-{index % NODES + 1}"))
    objects.append({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "y"},
        "spec": {"selector": {"pod": "a"}, "ports": [
            {"name": "tcp", "port": 80, "targetPort": 81, "protocol": TCP},
            {"name": "udp", "port": 80, "targetPort": 81, "protocol": UDP}]}})
    return objects


def policy(namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": dict(spec)}


def labels(**wanted: str) -> dict[str, Any]:
    return {"matchLabels": wanted}


# ---------------------------------------------------------------- the lab


class TruthTable:
    """The lab seen as a reachability matrix: pods with their agents, the policies the
    current case applied, and the oracle's verdict on them."""

    def __init__(self, lab: LabSettings, rest: Rest) -> None:
        self.lab, self.rest = lab, rest
        self.agents: dict[str, Agent] = {}
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}
        self.extra_pods: list[tuple[str, str]] = []
        self.columns = columns()
        self.vip = ""
        self.rounds = 0

    # ------------------------------------------------------------ objects

    def pods(self) -> list[dict[str, Any]]:
        return [p for ns in NAMESPACES for p in self.rest.list("Pod", ns)]

    def cluster(self) -> Cluster:
        namespaces = [n for n in self.rest.list("Namespace")
                      if n["metadata"]["name"] in NAMESPACES]
        pods = [p for p in self.pods() if f"{p['metadata']['namespace']}/"
                f"{p['metadata']['name']}" in self.agents]
        return cluster_from(namespaces, pods, self.policies.values())

    def start_agents(self) -> None:
        for pod in self.pods():
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            if key not in self.agents:
                self.agents[key] = Agent(sandbox_name(self.lab.prefix, pod), key, PORTS,
                                         any(p == "SCTP" for p, _ in self.columns))

    def stop_agents(self, keys: list[str] | None = None) -> None:
        for key in list(self.agents) if keys is None else keys:
            self.agents.pop(key).stop()

    def apply(self, *policies: dict[str, Any]) -> None:
        for each in policies:
            meta = each["metadata"]
            self.rest.create(each)
            self.policies[(meta["namespace"], meta["name"])] = each

    def replace(self, changed: dict[str, Any]) -> None:
        """A policy's spec replaced as a whole (``kubectl replace``, or an edit)."""
        meta = changed["metadata"]
        self.rest.patch("NetworkPolicy", meta["name"],
                        [{"op": "replace", "path": "/spec", "value": changed["spec"]}],
                        meta["namespace"], content_type=JSON_PATCH)
        self.policies[(meta["namespace"], meta["name"])] = changed

    def delete(self, namespace: str, name: str) -> None:
        self.rest.delete("NetworkPolicy", name, namespace)
        self.policies.pop((namespace, name), None)

    def add_pod(self, namespace: str, name: str, node: str) -> None:
        """A new pod, running and probing, once the lab's kubelet has attached it."""
        self.rest.create(pod_manifest(namespace, name, node))
        self.extra_pods.append((namespace, name))
        deadline = time.monotonic() + 60
        while True:
            pod = self.rest.get("Pod", name, namespace)
            if pod and (pod.get("status") or {}).get("phase") == "Running" and \
                    (pod.get("status") or {}).get("podIPs"):
                break
            assert time.monotonic() < deadline, f"pod {namespace}/{name} did not start"
            time.sleep(0.5)
        self.start_agents()

    def remove_extra_pods(self) -> None:
        for namespace, name in self.extra_pods:
            self.stop_agents([k for k in self.agents if k == f"{namespace}/{name}"])
            self.rest.delete("Pod", name, namespace, grace_s=0)
        deadline = time.monotonic() + 60
        for namespace, name in self.extra_pods:
            while self.rest.get("Pod", name, namespace) is not None:
                assert time.monotonic() < deadline, f"pod {namespace}/{name} stayed"
                time.sleep(0.5)
        self.extra_pods.clear()

    def reset(self) -> None:
        """No policies and no extra pods left, and everything reaching everything."""
        for ns in (*NAMESPACES, "default"):
            for found in self.rest.list("NetworkPolicy", ns):
                self.rest.delete("NetworkPolicy", found["metadata"]["name"], ns)
        self.policies.clear()
        self.remove_extra_pods()
        self.flush_conntrack()
        self.expect("with no policies left")

    def flush_conntrack(self) -> None:
        """Forget every connection the nodes' datapaths track, so that each case judges
        its own connections only. On Open vSwitch 3.1.0 one case's tracked connections
        (Service traffic through NAT among them) have broken the replies of a later
        case's new connections for minutes (seen in a CI run; the exact cause was not
        pinned down, and 3.1.0's userspace conntrack has known NAT bugs:
        docs/datapath-crash.md)."""
        central = central_of(self.lab)
        for node in lab_nodes(self.lab):
            node.ovs(central).vswitchd.appctl("dpctl/flush-conntrack")

    # ------------------------------------------------------------ probing

    def services(self) -> list[Service]:
        return [Service(SERVICE.label, self.vip, SERVICE.port, protocol, SERVICE.backend,
                        SERVICE.target_port) for protocol in (TCP, UDP)]

    def observe(self, wanted: list[Cell], cluster: Cluster) -> Round:
        by_key = {p.key: p for p in cluster.pods}

        def target(cell: Cell) -> Target:
            if cell.destination == SERVICE.label:
                return Target(self.vip, frozenset({SERVICE.backend}))
            return Target(by_key[cell.destination].ip, frozenset({cell.destination}))

        self.rounds += 1
        return probe_round(self.agents, target, wanted)

    def want(self, cluster: Cluster) -> tuple[list[Cell], Matrix]:
        wanted = cells(cluster.pods, self.services(), self.columns)
        return wanted, expected(cluster, wanted, self.services())

    def expect(self, when: str = "") -> None:
        """Probe until the matrix matches the oracle; fail with the diff when it never
        does within the bound."""
        cluster = self.cluster()
        wanted, want = self.want(cluster)
        ok, last = converge(lambda: self.observe(wanted, cluster), want, CONVERGE_S)
        policies = "\n".join(f"  {ns}/{name}: {p['spec']}"
                             for (ns, name), p in sorted(self.policies.items())) or "  none"
        assert ok, (f"the datapath disagrees with the oracle {when} after "
                    f"{CONVERGE_S:.0f} s\npolicies:\n{policies}\n"
                    f"{show(want, last.seen, last.details)}\n{lab_health(self.lab)}")


def lab_health(lab: LabSettings) -> str:
    """What a failed case should be read with: the lab's processes that died, and the
    sync worker's last complaints."""
    dead = sorted(name for name, process in lab_processes(lab).items() if process.pid() is None)
    sync = lab_processes(lab)["sync"].logfile
    lines = sync.read_text(errors="replace").splitlines() if sync.exists() else []
    complaints = [line for line in lines if any(word in line for word in COMPLAINTS)]
    return (f"lab processes not running: {', '.join(dead) or 'none'}\n"
            "sync worker's last complaints:\n" + "\n".join(complaints[-15:] or ["  none"])
            + "\nACLs in the northbound database:\n" + northbound_acls(lab))


def northbound_acls(lab: LabSettings) -> str:
    """Every ACL row (priority, direction, action, match), as the sync worker left it."""
    try:
        rows = central_of(lab).nbctl("--format=csv", "--no-headings",
                                     "--columns=priority,direction,action,match", "list", "ACL")
    except Exception as exc:  # a diagnosis must not hide the failure it explains
        return f"  (not readable: {exc})"
    lines = sorted(rows.splitlines(), reverse=True)
    shown = [f"  {line}" for line in lines[:ACLS_SHOWN]]
    if len(lines) > ACLS_SHOWN:
        shown.append(f"  ... and {len(lines) - ACLS_SHOWN} more")
    return "\n".join(shown) or "  none"


def ip_of(cluster: Cluster, key: str) -> str:
    return next(p.ip for p in cluster.pods if p.key == key)


def network_around(ip: str, prefix: int) -> str:
    """The network of ``prefix`` bits holding ``ip``, written as the API expects it."""
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def subnet_of(cluster: Cluster) -> str:
    """The smallest network holding every pod of the matrix."""
    addresses = [ipaddress.ip_address(p.ip) for p in cluster.pods]
    prefix = 32
    while True:
        network = ipaddress.ip_network(f"{addresses[0]}/{prefix}", strict=False)
        if all(a in network for a in addresses):
            return str(network)
        prefix -= 1


T = TypeVar("T", bound=TruthTable)


@contextmanager
def running_table(tmp_path_factory: pytest.TempPathFactory, kind: type[T]) -> Iterator[T]:
    """A lab with the matrix's namespaces, pods and Service, seen as a ``kind`` table
    (a suite that judges more than NetworkPolicy brings its own)."""
    root = tmp_path_factory.mktemp("netpol")
    folder = root / "manifests"
    folder.mkdir()
    (folder / "objects.yaml").write_text("\n---\n".join(json.dumps(o) for o in manifests()))
    with removed_after(lab_settings(root / "state", folder, nodes=NODES)) as settings:
        assert up(settings) == []
        table = kind(settings, Rest(kube.kube_client(settings.kubeconfig("admin"))))
        try:
            service = table.rest.get("Service", "web", "y")
            assert service is not None
            table.vip = str(service["spec"]["clusterIP"])
            table.start_agents()
            yield table
        finally:
            table.stop_agents()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TruthTable]:
    with running_table(tmp_path_factory, TruthTable) as table:
        yield table


@pytest.fixture
def truth(lab: TruthTable) -> Iterator[TruthTable]:
    lab.reset()
    yield lab
    lab.reset()


# -------------------------------------------------------------------- cases


def test_without_policies_every_pod_reaches_every_pod_and_the_service(
    truth: TruthTable,
) -> None:
    assert len(truth.agents) == len(NAMESPACES) * len(PODS)
    truth.expect()


@needs_policies
def test_default_deny_ingress_in_x_cuts_every_connection_into_x(truth: TruthTable) -> None:
    truth.apply(policy("x", "deny-ingress", {"podSelector": {}, "policyTypes": [INGRESS]}))
    truth.expect()


@needs_policies
def test_default_deny_egress_in_x_cuts_every_connection_out_of_x(truth: TruthTable) -> None:
    truth.apply(policy("x", "deny-egress", {"podSelector": {}, "policyTypes": [EGRESS]}))
    truth.expect()


@needs_policies
def test_allowing_from_the_same_namespace_keeps_other_namespaces_out(
    truth: TruthTable,
) -> None:
    truth.apply(policy("x", "same-namespace", {
        "podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}))
    truth.expect()


@needs_policies
def test_podnet_trace_names_the_policy_rule_that_allowed_and_the_isolation_that_dropped(
    truth: TruthTable,
) -> None:
    truth.apply(policy("x", "same-namespace", {
        "podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}))
    truth.expect()
    allowed = explain(truth.lab, "x/b", "x/a:80")
    assert "policy:         NetworkPolicy x/same-namespace, ingress rule 0" in allowed
    dropped = explain(truth.lab, "y/b", "x/a:80")
    assert "denied by ACL" in dropped
    assert "policy:         namespace x's ingress isolation" in dropped


@needs_policies
def test_allowing_from_a_namespace_by_its_label_admits_all_its_pods(
    truth: TruthTable,
) -> None:
    truth.apply(policy("x", "from-y", {
        "podSelector": labels(pod="a"),
        "ingress": [{"from": [{"namespaceSelector": labels(ns="y")}]}]}))
    truth.expect()


@needs_policies
def test_pod_and_namespace_selectors_in_one_peer_admit_only_pods_matching_both(
    truth: TruthTable,
) -> None:
    truth.apply(policy("x", "y-and-b", {
        "podSelector": labels(pod="a"),
        "ingress": [{"from": [{"namespaceSelector": labels(ns="y"),
                               "podSelector": labels(pod="b")}]}]}))
    truth.expect()


@needs_policies
def test_pod_and_namespace_selectors_in_two_peers_admit_pods_matching_either(
    truth: TruthTable,
) -> None:
    truth.apply(policy("x", "y-or-b", {
        "podSelector": labels(pod="a"),
        "ingress": [{"from": [{"namespaceSelector": labels(ns="y")},
                              {"podSelector": labels(pod="b")}]}]}))
    truth.expect()


@needs_policies
def test_match_expressions_select_the_protected_pods_and_their_peers(
    truth: TruthTable,
) -> None:
    truth.apply(policy("x", "expressions", {
        "podSelector": {"matchExpressions": [
            {"key": "pod", "operator": "In", "values": ["a", "b"]}]},
        "ingress": [{"from": [{
            "namespaceSelector": {"matchExpressions": [
                {"key": "ns", "operator": "NotIn", "values": ["y"]}]},
            "podSelector": {"matchExpressions": [
                {"key": "pod", "operator": "Exists"},
                {"key": "pod", "operator": "NotIn", "values": ["c"]}]}}]}]}))
    truth.expect()


@needs_policies
def test_ports_by_number_open_that_port_and_protocol_only(truth: TruthTable) -> None:
    truth.apply(policy("x", "tcp-80", {
        "podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": TCP}]}]}),
        policy("y", "udp-81", {
            "podSelector": labels(pod="b"), "ingress": [{"ports": [{"port": 81,
                                                                   "protocol": UDP}]}]}))
    truth.expect()


@needs_policies
def test_ingress_by_port_name_resolves_the_name_on_each_destination_pod(
    truth: TruthTable,
) -> None:
    truth.apply(policy("x", "named", {
        "podSelector": {}, "ingress": [{"ports": [{"port": "web"},
                                                  {"port": "dns", "protocol": UDP}]}]}))
    truth.expect()


@needs_policies
def test_egress_by_port_name_resolves_the_name_on_each_destination_pod(
    truth: TruthTable,
) -> None:
    truth.apply(policy("z", "named-out", {
        "podSelector": labels(pod="a"), "policyTypes": [EGRESS],
        "egress": [{"ports": [{"port": "web", "protocol": TCP}]}]}))
    truth.expect()


@needs_policies
def test_end_port_opens_an_inclusive_range(truth: TruthTable) -> None:
    truth.apply(policy("x", "range-in", {
        "podSelector": {}, "ingress": [{"ports": [
            {"port": 80, "endPort": 81, "protocol": TCP}]}]}),
        policy("y", "range-out", {
            "podSelector": {}, "policyTypes": [EGRESS],
            "egress": [{"ports": [{"port": 79, "endPort": 80, "protocol": UDP},
                                  {"port": 81, "endPort": 90, "protocol": TCP}]}]}))
    truth.expect()


@needs_policies
def test_egress_to_an_ip_block_spares_its_exceptions(truth: TruthTable) -> None:
    cluster = truth.cluster()
    truth.apply(policy("x", "block-out", {
        "podSelector": {}, "policyTypes": [EGRESS], "egress": [{"to": [{"ipBlock": {
            "cidr": subnet_of(cluster),
            "except": [f"{ip_of(cluster, 'y/a')}/32", f"{ip_of(cluster, 'z/b')}/32"]}}]}]}))
    truth.expect()


@needs_policies
def test_ingress_from_an_ip_block_admits_sources_by_their_pod_address(
    truth: TruthTable,
) -> None:
    cluster = truth.cluster()
    truth.apply(policy("z", "block-in", {
        "podSelector": labels(pod="c"), "ingress": [{"from": [
            {"ipBlock": {"cidr": f"{ip_of(cluster, 'x/a')}/32"}},
            {"ipBlock": {"cidr": network_around(ip_of(cluster, 'y/b'), 30),
                         "except": [f"{ip_of(cluster, 'y/b')}/32"]}}]}]}))
    truth.expect()


@needs_policies
def test_egress_to_a_services_backend_holds_through_its_cluster_ip(truth: TruthTable) -> None:
    """The policy names the backend and its target port 81, never the VIP or port 80:
    egress is judged after load balancing, so x's pods still reach the VIP."""
    truth.apply(policy("x", "to-web-backend", {
        "podSelector": {}, "policyTypes": [EGRESS], "egress": [{
            "to": [{"namespaceSelector": labels(ns="y"), "podSelector": labels(pod="a")}],
            "ports": [{"port": 81, "protocol": TCP}, {"port": 81, "protocol": UDP}]}]}))
    truth.expect()


@needs_policies
def test_ingress_of_a_services_backend_judges_the_client_behind_the_cluster_ip(
    truth: TruthTable,
) -> None:
    truth.apply(policy("y", "web-from-x", {
        "podSelector": labels(pod="a"), "ingress": [{
            "from": [{"namespaceSelector": labels(ns="x")}],
            "ports": [{"port": 81, "protocol": TCP}, {"port": 81, "protocol": UDP}]}]}))
    truth.expect()


@needs_policies
def test_policies_selecting_the_same_pods_add_up(truth: TruthTable) -> None:
    truth.apply(
        policy("x", "own-namespace", {
            "podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        policy("x", "z-to-a-on-81", {
            "podSelector": labels(pod="a"), "ingress": [{
                "from": [{"namespaceSelector": labels(ns="z")}],
                "ports": [{"port": 81, "protocol": TCP}]}]}),
        policy("x", "y-b-anywhere", {
            "podSelector": {}, "ingress": [{"from": [
                {"namespaceSelector": labels(ns="y"), "podSelector": labels(pod="b")}]}]}))
    truth.expect()


@needs_policies
def test_egress_denied_at_the_client_wins_over_ingress_allowed_at_the_server(
    truth: TruthTable,
) -> None:
    truth.apply(
        policy("y", "allow-all-in", {"podSelector": {}, "ingress": [{}]}),
        policy("x", "a-no-egress", {"podSelector": labels(pod="a"), "policyTypes": [EGRESS]}),
        policy("y", "b-only-from-x", {
            "podSelector": labels(pod="b"), "policyTypes": [INGRESS, EGRESS],
            "ingress": [{"from": [{"namespaceSelector": labels(ns="x")}]}],
            "egress": [{"to": [{"namespaceSelector": labels(ns="z")}]}]}))
    truth.expect()


@needs_policies
def test_a_policy_created_before_its_pods_applies_to_them_when_they_start(
    truth: TruthTable,
) -> None:
    truth.apply(
        policy("z", "d-from-a-only", {
            "podSelector": labels(pod="d"),
            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": labels(pod="a")}]}]}),
        policy("y", "b-from-d-only", {
            "podSelector": labels(pod="b"),
            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": labels(pod="d")}]}]}))
    truth.expect("before the pod exists")
    truth.add_pod("z", "d", "node-2")
    truth.expect("once the pod runs")


@needs_policies
def test_relabelling_a_namespace_changes_who_its_selector_admits(truth: TruthTable) -> None:
    truth.apply(policy("x", "from-blue", {
        "podSelector": {}, "ingress": [{"from": [{"namespaceSelector": labels(team="blue")}]}]}))
    truth.expect("before the label")
    truth.rest.patch("Namespace", "y", {"metadata": {"labels": {"team": "blue"}}})
    try:
        truth.expect("once y is labelled team=blue")
    finally:
        truth.rest.patch("Namespace", "y", {"metadata": {"labels": {"team": None}}})
    truth.expect("once the label is gone again")


@needs_policies
def test_updating_a_policy_changes_and_then_restores_connectivity(truth: TruthTable) -> None:
    deny = policy("x", "changing", {"podSelector": {}, "policyTypes": [INGRESS]})
    truth.apply(deny)
    truth.expect("denying all ingress")
    truth.replace(policy("x", "changing", {
        "podSelector": {}, "policyTypes": [INGRESS],
        "ingress": [{"from": [{"namespaceSelector": labels(ns="y")}],
                     "ports": [{"port": 81, "protocol": TCP}]}]}))
    truth.expect("allowing y on TCP 81")
    truth.replace(policy("x", "changing", {"podSelector": {}, "ingress": [{}]}))
    truth.expect("allowing everything")


@needs_policies
def test_deleting_the_policies_restores_connectivity(truth: TruthTable) -> None:
    truth.apply(policy("x", "deny-all", {"podSelector": {}, "policyTypes": [INGRESS, EGRESS]}),
                policy("z", "deny-in", {"podSelector": labels(pod="b")}))
    truth.expect("denying")
    truth.delete("x", "deny-all")
    truth.expect("after x's policy is deleted")
    truth.delete("z", "deny-in")
    truth.expect("after every policy is deleted")


@pytest.mark.skipif(not sctp_available(), reason="this kernel has no SCTP")
def test_sctp_is_probed_like_tcp_and_udp_where_the_kernel_has_it(truth: TruthTable) -> None:
    assert ("SCTP", 80) in truth.columns
    truth.expect()
