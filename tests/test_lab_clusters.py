"""``podnet up --clusters 2``: two whole clusters on one machine, interconnected over
OVN-IC by their own IC controllers, with pods of one reaching pods of the other by pod IP.

One lab of its own (temporary state, a unique prefix, free ports), brought down at the
end with the proof that no process, namespace or link of either cluster is left.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podnet.lab import DEFAULT_MANIFESTS, LabSettings, status_report, up
from podnet.lab.checks import ACROSS, PING_ACROSS
from podnet.lab.interconnect import (
    CONFIG_MAP,
    CONFIG_NAMESPACE,
    config_map,
    ic_databases,
    ovn_ic_daemon,
)
from podnet.lab.kubelet import sandbox_name
from podnet.lab.report import Report
from podnet.lab.rest import Rest, RestError
from podnet.lab.trace import explain
from podnet.lab.up import check_across_clusters, down
from podnet.ovn_raft import RaftDatabase
from podnet_plumbing import kube
from tests.lab_fixtures import lab_settings, leftovers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabSettings]:
    """One ``up --clusters 2`` for every test of the module that takes it; each test
    leaves the lab as it found it (its objects removed, the ConfigMaps as ``up`` made
    them, every route and daemon back), so that their order does not matter."""
    first = lab_settings(tmp_path_factory.mktemp("clusters") / "state", DEFAULT_MANIFESTS,
                         clusters=2)
    try:
        assert up(first) == []
        yield first
    finally:
        down(first)
        for each in first.all_clusters():
            assert leftovers(each) == []
        assert not any(first.interconnect_bridge in line for line in subprocess.run(
            ["ip", "-o", "link", "show"], capture_output=True, text=True,
            check=True).stdout.splitlines())


def pods(settings: LabSettings) -> list[dict[str, Any]]:
    return Rest(kube.kube_client(settings.kubeconfig("admin"))).list("Pod")


def pod_ip(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("podIP"))


def in_pod(settings: LabSettings, pod: dict[str, Any], *argv: str) -> str:
    netns = sandbox_name(settings.prefix, pod)
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True,
                          text=True, check=True, timeout=30).stdout


def test_two_clusters_reach_each_others_pods_by_pod_ip(clusters: LabSettings) -> None:
    first, second = clusters.all_clusters()
    one = {p["metadata"]["name"]: p for p in pods(first)}
    two = [p for p in pods(second) if str(p["metadata"]["name"]).startswith("web-")]
    assert len(two) == 2 and all(pod_ip(p).startswith("10.18.") for p in two)
    registry = one["registry"]
    assert pod_ip(registry) == "10.16.0.100"

    # up's own checks, both ways: ping with two routers on the way, TCP with the source kept
    report = Report.load(first.state_dir)
    across = [c for c in report.connectivity if c.kind in (ACROSS, PING_ACROSS)]
    assert len(across) == 4 and all(c.ok for c in across), across
    assert all("ttl 62" in c.detail for c in across if c.kind == PING_ACROSS)
    assert all("client's own" in c.detail for c in across if c.kind == ACROSS)
    assert all(c.ok for c in Report.load(second.state_dir).connectivity)

    # and by hand: ping from a pod of cluster 1 to one of cluster 2, TTL 64 - 2
    ping = in_pod(first, registry, "ping", "-n", "-c", "2", "-W", "2", pod_ip(two[0]))
    assert re.findall(r"ttl=(\d+)", ping) == ["62", "62"]
    # TCP from cluster 2 to cluster 1: the server sees the client's pod IP
    server = subprocess.Popen(
        ["ip", "netns", "exec", sandbox_name(first.prefix, registry), "python3", "-c",
         "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
         "socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 9100)); s.listen(1); print('up', "
         "flush=True); c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        seen = in_pod(second, two[1], "python3", "-c",
                      "import socket; c = socket.create_connection(('10.16.0.100', 9100), "
                      "timeout=10); print(c.recv(64).decode())")
        assert seen.strip() == pod_ip(two[1])
    finally:
        server.kill()
        server.wait()

    # the IC databases know both AZs and a gateway each; each AZ learned the other's CIDR
    databases = ic_databases(clusters)
    zones = databases.sbctl("--bare", "--columns=name", "list", "Availability_Zone").split()
    gateways = databases.sbctl("--bare", "--columns=name", "list", "Gateway").split()
    assert sorted(zones) == ["az1", "az2"]
    assert sorted(gateways) == ["c2-node-1", "node-1"]
    assert "10.18.0.0/16" in learned(first) and "100.64.0.0/16" not in learned(first)
    assert all(ovn_ic_daemon(each).pid() for each in (first, second))

    # podnet trace shows the way out through the transit switch
    trace = explain(first, "default/registry", pod_ip(two[0]))
    assert "switch ts" in trace and "ts-az2" in trace
    web = f"default/{two[0]['metadata']['name']}"
    back = explain(LabSettings.recorded(second.state_dir) or second, web, "default/registry")
    assert "-> 10.16.0.100" in back and "ts-az1" in back

    # status covers both clusters and the IC databases
    status = status_report(clusters, with_pods=False)
    assert "cluster 2 (az2)" in status and "IC databases on 127.0.0.1" in status
    assert "gateways c2-node-1, node-1" in status

    # a second up keeps it all and the checks still pass
    assert up(clusters) == []
    assert all(c.ok for c in check_across_clusters(clusters))


@pytest.fixture
def ha_clusters(tmp_path: Path) -> Iterator[LabSettings]:
    first = lab_settings(tmp_path / "state", DEFAULT_MANIFESTS, clusters=2, ha=True)
    try:
        yield first
    finally:
        down(first)
        for each in first.all_clusters():
            assert leftovers(each) == []


def learned(settings: LabSettings) -> set[str]:
    routes = json.loads(settings.central().nbctl(
        "--format=json", "--columns=ip_prefix", "find", "Logical_Router_Static_Route",
        "external_ids:ic-learned-route!=\"\""))
    return {str(ipaddress.ip_network(row[0], strict=False)) for row in routes["data"]}


def test_with_ha_the_ic_databases_lose_their_leaders_and_the_clusters_stay_connected(
    ha_clusters: LabSettings,
) -> None:
    assert up(ha_clusters) == []
    first, second = ha_clusters.all_clusters()
    assert all(c.ok for c in Report.load(first.state_dir).connectivity)
    databases = ic_databases(ha_clusters)
    assert databases.is_clustered
    assert "127.0.0.1,127.0.0.2,127.0.0.3" in status_report(ha_clusters, with_pods=False)

    for database in (databases.nb, databases.sb):
        assert isinstance(database, RaftDatabase)
        leader = database.leader()
        assert leader is not None
        database.kill(leader)
    assert all(c.ok for c in check_across_clusters(ha_clusters))

    # a subnet made after the kills is still advertised by az2 and learned by az1
    Rest(kube.kube_client(second.kubeconfig("admin"))).create({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "later"},
        "spec": {"cidrBlock": "10.19.0.0/24", "gateway": "10.19.0.1"}})
    deadline = time.monotonic() + 90
    while "10.19.0.0/24" not in learned(first):
        assert time.monotonic() < deadline, f"not learned in 90s: {learned(first)}"
        time.sleep(0.5)


# ---------------------------------------------------------------- failure cases
#
# Each takes the module's lab, breaks or changes one thing, checks what the data plane
# and the databases show, and puts the lab back as it was (checked: traffic across the
# clusters flows again) before it ends, passed or failed.

ISOLATED = "no-ic"
ISOLATED_CIDR = "10.77.0.0/24"
"""A subnet of cluster 1 kept out of OVN-IC (Kube-OVN's example 39): a CIDR of its own
that overlaps nothing of either cluster."""
ADVERTISED = "with-ic"
ADVERTISED_CIDR = "10.78.0.0/24"
"""Made beside it: once cluster 2 learned this one, it would have learned the other."""
CLUSTER_CIDRS = ("10.16.0.0/16", "10.18.0.0/16")
"""Each cluster's ovn-default."""


def rest(settings: LabSettings) -> Rest:
    return Rest(kube.kube_client(settings.kubeconfig("admin")))


def until(check: Any, what: str, timeout_s: float = 90.0, every_s: float = 0.5) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s:.0f}s: {what}")
        time.sleep(every_s)
    return result


def pings(settings: LabSettings, pod: dict[str, Any], address: str, count: int = 1) -> bool:
    """At least one echo reply from ``address`` to ``pod``, each waited for 2 s."""
    netns = sandbox_name(settings.prefix, pod)
    return subprocess.run(["ip", "netns", "exec", netns, "ping", "-n", "-q", "-c", str(count),
                           "-W", "2", address], capture_output=True, timeout=30,
                          check=False).returncode == 0


def endpoints(clusters: LabSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """A pod of ovn-default in each cluster: cluster 1's registry, a web pod of 2."""
    first, second = clusters.all_clusters()
    registry = next(p for p in pods(first) if p["metadata"]["name"] == "registry")
    web = next(p for p in pods(second) if str(p["metadata"]["name"]).startswith("web-")
               and pod_ip(p).startswith("10.18."))
    return registry, web


def connected(clusters: LabSettings) -> bool:
    """Ping goes both ways between the clusters' pods, and each learned the other."""
    first, second = clusters.all_clusters()
    one, two = endpoints(clusters)
    return (CLUSTER_CIDRS[1] in learned(first) and CLUSTER_CIDRS[0] in learned(second)
            and pings(first, one, pod_ip(two)) and pings(second, two, pod_ip(one)))


def reconnected(clusters: LabSettings) -> None:
    """The end of every failure case: the lab is back as ``up`` left it."""
    until(lambda: connected(clusters), "ping across the clusters, both ways", 120.0)


def metric(listen: str, name: str, labels: str = "") -> float:
    """A sample of a component's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def ic_reconciles(settings: LabSettings) -> float:
    return metric(settings.ic_listen, "podnet_ic_reconciles_total", 'result="ok"')


def full_syncs(settings: LabSettings) -> float:
    return metric(settings.sync_listen, "podnet_sync_steps_total", 'kind="full"')


def transit_address(settings: LabSettings) -> str:
    """The AZ's address on the transit switch (of its router port ``<az>-ts``)."""
    networks = settings.central().nbctl("--bare", "--columns=networks", "find",
                                        "Logical_Router_Port", f"name={settings.az_name}-ts")
    return networks.split()[0].split("/")[0]


def manual_routes(settings: LabSettings) -> list[tuple[str, str]]:
    """The routes of ovn-cluster that ovn-ic did not learn: (prefix, next hop)."""
    rows = json.loads(settings.central().nbctl(
        "--format=json", "--columns=ip_prefix,nexthop,external_ids", "list",
        "Logical_Router_Static_Route"))
    return [(row[0], row[1]) for row in rows["data"]
            if not any(key == "ic-learned-route" for key, _ in row[2][1])]


def ic_rows(settings: LabSettings) -> dict[str, list[str]]:
    """What the AZ has of OVN-IC in its NB: its transit router port, the ports of its
    transit switch, the learned routes."""
    nb = settings.central()
    return {
        "lrp": nb.nbctl("--bare", "--columns=name", "find", "Logical_Router_Port",
                        f"name={settings.az_name}-ts").split(),
        "ts ports": sorted(name for name in nb.nbctl(
            "--bare", "--columns=name", "list", "Logical_Switch_Port").split()
            if name.startswith("ts-")),
        "learned": sorted(learned(settings)),
    }


def create_pod(api: Rest, name: str, subnet: str) -> dict[str, Any]:
    """A bare pod in ``subnet``, created again while the webhook does not know the
    subnet yet (until the sync worker registered it), Running with its address."""
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": {"ovn.kubernetes.io/logical_switch": subnet}},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}}

    def created() -> bool:
        try:
            api.create(body)
        except RestError as exc:
            if "does not exist" in exc.detail or "fenced" in exc.detail:
                return False
            raise
        return True

    until(created, f"pod {name} admitted in subnet {subnet}", 60.0)

    def running() -> dict[str, Any] | None:
        pod = api.get("Pod", name, "default")
        status = (pod or {}).get("status") or {}
        return pod if status.get("phase") == "Running" and status.get("podIP") else None

    found: dict[str, Any] = until(running, f"pod {name} running", 90.0)
    return found


def delete_and_wait(api: Rest, kind: str, name: str, namespace: str = "") -> None:
    api.delete(kind, name, namespace, **({"grace_s": 0} if kind == "Pod" else {}))
    until(lambda: api.get(kind, name, namespace) is None, f"{kind} {name} gone", 90.0)


def test_a_subnet_kept_out_of_interconnection_is_neither_learned_nor_reached(
    clusters: LabSettings,
) -> None:
    first, second = clusters.all_clusters()
    api = rest(first)
    registry, web = endpoints(clusters)
    try:
        for name, cidr, disabled in ((ISOLATED, ISOLATED_CIDR, True),
                                     (ADVERTISED, ADVERTISED_CIDR, False)):
            api.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                        "metadata": {"name": name},
                        "spec": {"cidrBlock": cidr, "protocol": "IPv4",
                                 "gateway": cidr.replace("0/24", "1"),
                                 "disableInterConnection": disabled}})
        # the subnet made with it is advertised and learned; by then this one would be
        until(lambda: ADVERTISED_CIDR in learned(second), f"{ADVERTISED_CIDR} learned by az2")
        assert ISOLATED_CIDR not in learned(second)
        blacklist = first.central().nbctl("get", "NB_Global", ".", "options:ic-route-blacklist")
        assert ISOLATED_CIDR in blacklist
        assert ISOLATED_CIDR not in databases_routes(clusters)

        isolated = create_pod(api, "isolated", ISOLATED)
        address = pod_ip(isolated)
        assert ipaddress.ip_address(address) in ipaddress.ip_network(ISOLATED_CIDR)
        # the pod is up: its own cluster reaches it
        until(lambda: pings(first, registry, address), f"ping {address} from az1's registry")
        # cluster 2 does not: it has no route to it, its packets never enter ts
        assert not pings(second, web, address, count=3)
        # while a pod of ovn-default of cluster 1 stays reachable from the same pod
        assert pings(second, web, pod_ip(registry), count=3)
        assert ISOLATED_CIDR not in learned(second)
    finally:
        if api.get("Pod", "isolated", "default") is not None:
            delete_and_wait(api, "Pod", "isolated", "default")
        for name in (ISOLATED, ADVERTISED):
            if api.get("Subnet", name) is not None:
                delete_and_wait(api, "Subnet", name)
        until(lambda: ADVERTISED_CIDR not in learned(second),
              f"{ADVERTISED_CIDR} no longer learned by az2")
        reconnected(clusters)


def databases_routes(clusters: LabSettings) -> str:
    """Every route the IC SB lists (what the AZs advertise)."""
    return ic_databases(clusters).sbctl("--bare", "--columns=ip_prefix", "list", "Route")


def set_auto_route(settings: LabSettings, value: str) -> None:
    rest(settings).patch("ConfigMap", CONFIG_MAP, {"data": {"auto-route": value}},
                         CONFIG_NAMESPACE)


def test_without_auto_route_routes_added_by_hand_carry_the_traffic_and_are_kept(
    clusters: LabSettings,
) -> None:
    first, second = clusters.all_clusters()
    registry, web = endpoints(clusters)
    peers = {first.cluster: (CLUSTER_CIDRS[1], transit_address(second)),
             second.cluster: (CLUSTER_CIDRS[0], transit_address(first))}
    try:
        for each in (first, second):
            set_auto_route(each, "false")
        for each in (first, second):
            until(lambda each=each: not learned(each), f"{each.az_name}'s learned routes gone")
            options = each.central().nbctl("get", "NB_Global", ".", "options")
            assert 'ic-route-learn="false"' in options and 'ic-route-adv="false"' in options
        until(lambda: not pings(first, registry, pod_ip(web)),
              "ping across the clusters failing without routes", 30.0)

        # the manual mode: a route to the peer's CIDR via the peer's transit address
        for each in (first, second):
            prefix, nexthop = peers[each.cluster]
            each.central().nbctl("lr-route-add", "ovn-cluster", prefix, nexthop)
        until(lambda: pings(first, registry, pod_ip(web)) and pings(second, web,
                                                                     pod_ip(registry)),
              "ping across the clusters over the routes added by hand", 60.0)

        # two reconciles of each IC controller and a full resync of each sync worker
        # later, the routes are still there and still carry the traffic
        marks = {each.cluster: (ic_reconciles(each), full_syncs(each))
                 for each in (first, second)}
        for each in (first, second):
            until(lambda each=each: ic_reconciles(each) >= marks[each.cluster][0] + 2
                  and full_syncs(each) >= marks[each.cluster][1] + 1,
                  f"two IC reconciles and a full sync step of {each.az_name}", 150.0, 1.0)
        for each in (first, second):
            assert peers[each.cluster] in manual_routes(each)
            assert not learned(each)
        assert pings(first, registry, pod_ip(web), count=3)
        assert pings(second, web, pod_ip(registry), count=3)
    finally:
        for each in (first, second):
            prefix, nexthop = peers[each.cluster]
            each.central().nbctl("--if-exists", "lr-route-del", "ovn-cluster", prefix,
                                 nexthop)
            set_auto_route(each, "true")
        reconnected(clusters)
    assert all(peers[each.cluster] not in manual_routes(each) for each in (first, second))


def test_a_killed_ovn_ic_is_started_again_and_traffic_flows_meanwhile(
    clusters: LabSettings,
) -> None:
    first, second = clusters.all_clusters()
    registry, web = endpoints(clusters)
    daemon = ovn_ic_daemon(first)
    killed = daemon.pid()
    assert killed is not None
    try:
        os.kill(killed, signal.SIGKILL)
        rounds = 0
        while rounds < 3 or daemon.pid() in (None, killed):
            # ovn-ic only writes the databases: the flows stay, and so does the traffic
            assert pings(first, registry, pod_ip(web), count=2), f"round {rounds}"
            assert pings(second, web, pod_ip(registry), count=2), f"round {rounds}"
            assert CLUSTER_CIDRS[1] in learned(first)
            rounds += 1
            assert rounds < 60, "ovn-ic not started again"
        restarted = daemon.pid()
        assert restarted is not None and restarted != killed
    finally:
        until(lambda: daemon.pid() is not None, "ovn-ic of az1 running", 60.0)
        reconnected(clusters)


def test_deleting_ovn_ic_config_takes_the_az_out_and_applying_it_brings_it_back(
    clusters: LabSettings,
) -> None:
    first, second = clusters.all_clusters()
    registry, web = endpoints(clusters)
    api = rest(second)
    before = ic_rows(second)
    assert before["lrp"] == ["az2-ts"] and before["ts ports"] == ["ts-az1", "ts-az2"]
    try:
        api.delete("ConfigMap", CONFIG_MAP, CONFIG_NAMESPACE)
        until(lambda: ic_rows(second) == {"lrp": [], "ts ports": [], "learned": []},
              f"az2's IC rows gone: {ic_rows(second)}")
        until(lambda: CLUSTER_CIDRS[1] not in learned(first), "az1 forgetting az2's CIDR")
        until(lambda: "az2" not in ic_databases(clusters).sbctl(
            "--bare", "--columns=name", "list", "Availability_Zone").split(),
            "az2 gone from the IC SB")
        assert ovn_ic_daemon(second).pid() is None
        assert not pings(first, registry, pod_ip(web), count=3)
        assert not pings(second, web, pod_ip(registry), count=3)
    finally:
        if api.get("ConfigMap", CONFIG_MAP, CONFIG_NAMESPACE) is None:
            api.create(config_map(second, ic_databases(clusters)))
        reconnected(clusters)
    assert ic_rows(second)["lrp"] == ["az2-ts"]
