"""Interconnection: what it takes for two clusters' pods to reach each other over OVN-IC,
measured on ``podnet up --clusters 2`` (every daemon real, on loopback and in lab
namespaces), each figure beside a reference taken in the same run.

Run as root from the repository root: ``python bench/ic.py`` (``--help`` for the
options; two to three minutes). It brings up its own two clusters (free ports, a unique
prefix, a temporary state directory; ``--ha`` for the IC databases on raft, with OVN
central and Redis of each cluster replicated too) and measures ``--rounds`` times each:

- ``connect_s``: from ``ovn-ic-config`` applied again in both clusters (through their
  API servers, after deleting it tore the interconnection down: no ``ovn-ic``, no
  learned route, no answer across) to the first answered ping from ``default/registry``
  of cluster 1 to a pod of cluster 2, by pod IP. What had happened by then, noted by a
  thread meanwhile: an ``ovn-ic`` running for each AZ (``ic_running_s``), each AZ's
  router port on ``ts`` (``ts_ports_s``), the peer's gateway a remote chassis in each SB
  (``remote_gateways_s``), each AZ's NB with a learned route to the other's pod
  (``routes_learned_s``) and the IC controller's allow policy for it (``policies_s``).
  A round with no answer within ``--connect-timeout`` counts in ``connect_failed``;
  every ``ovn-controller`` then recomputes its flows so that the next rounds start
  from a working interconnection (``recovered_s``: until the answer after that);
- ``route_learn_s``: from a new Subnet created in cluster 1 to its CIDR in cluster 2's
  NB as a learned route (``external_ids:ic-learned-route`` on ``ovn-cluster``), and
  ``route_withdraw_s`` from its deletion (right after) to the route gone again;
- latency and throughput across clusters against the same within one, both to
  ``default/registry`` of cluster 1 on its gateway node: from a pod of cluster 2 on its
  gateway node (``across``), and from a pod on the other node of cluster 1 (``intra``);
  one Geneve hop each. Ping round trips and TCP requests (connect, request, answer: the
  lab's connectivity check), three per round, and iperf3 throughput (one stream,
  ``--seconds`` after one second omitted) per round; across and intra take turns, so
  that whatever else the machine does weighs on both alike. The ratios
  (``*_ratio_vs_intra``, ``tcp_ratio_vs_intra`` for throughput) are across over intra,
  of the medians.

Times are medians with their nearest-rank p99 (``_p99``); throughput is the median with
the lowest round (``_min``). It prints the tables and ends with one line
``RESULT name=ic key=value ...``, with the load average before and after and
``leftovers``: whatever of the lab is still on the machine after ``podnet down`` (0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import percentile
from bench._lab import bench_lab
from podnet.lab import DEFAULT_MANIFESTS, LabSettings
from podnet.lab.checks import (
    CHECK_PORT,
    REQUESTS,
    Check,
    Host,
    Listener,
    Responders,
    pod_host,
    run_check,
)
from podnet.lab.interconnect import (
    CONFIG_MAP,
    CONFIG_NAMESPACE,
    config_map,
    ic_databases,
    ovn_ic_daemon,
)
from podnet.lab.kubelet import sandbox_name
from podnet.lab.nodes import lab_nodes
from podnet.lab.rest import Rest
from podnet_plumbing import kube
from tests.lab_fixtures import leftovers

IPERF_PORT = 5299
SERVER = "default/registry"
"""The pod of cluster 1 every client talks to (its address is pinned by the examples)."""
SUBNET_CIDR = "10.{}.0.0/24"
FIRST_SUBNET = 120
"""The new subnets are 10.120.0.0/24, 10.121.0.0/24, ...: clear of the examples'."""
TIMEOUT_S = 120.0


# ------------------------------------------------------------------ pure helpers


def summary(values: Sequence[float]) -> tuple[float, float]:
    """Median and nearest-rank p99 (nan, nan for none)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan, math.nan
    return percentile(ordered, 0.50), percentile(ordered, 0.99)


def tail(values: Sequence[float], lowest: bool) -> tuple[float, float]:
    """Median and p99, or with ``lowest`` median and minimum (nan, nan for none)."""
    median, p99 = summary(values)
    return (median, min(values)) if lowest and values else (median, p99)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def iperf_result(text: str) -> tuple[float, int]:
    """Throughput in Mbit/s (as the receiver counted it) and the sender's retransmits, of
    ``iperf3 --json`` client output; ``ValueError`` with iperf3's own message if the test
    failed."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"iperf3 printed no JSON: {text.strip()[:200]!r}") from exc
    if data.get("error"):
        raise ValueError(f"iperf3: {data['error']}")
    end = data["end"]
    received = float(end["sum_received"]["bits_per_second"])
    return received / 1e6, int((end.get("sum_sent") or {}).get("retransmits") or 0)


def result_line(figures: Mapping[str, object]) -> str:
    def shown(value: object) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.{2 if value < 100 else 0}f}"
        return str(value)

    return "RESULT name=ic " + " ".join(f"{k}={shown(v)}" for k, v in figures.items())


# ------------------------------------------------------------------ the lab


def rest_of(settings: LabSettings) -> Rest:
    return Rest(kube.kube_client(settings.kubeconfig("admin")))


def running(settings: LabSettings) -> list[Host]:
    """The cluster's running pods, labelled ``<az>:<namespace>/<name>``."""
    hosts = []
    for pod in rest_of(settings).list("Pod"):
        host = pod_host(pod, lambda p: sandbox_name(settings.prefix, p))
        if host is not None:
            hosts.append(dataclasses.replace(host, label=f"{settings.az_name}:{host.label}"))
    return sorted(hosts, key=lambda h: h.label)


def learned(settings: LabSettings) -> set[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    rows = json.loads(settings.central().nbctl(
        "--format=json", "--columns=ip_prefix", "find", "Logical_Router_Static_Route",
        'external_ids:ic-learned-route!=""'))["data"]
    return {ipaddress.ip_network(row[0], strict=False) for row in rows}


def routes_to(settings: LabSettings, address: str) -> bool:
    """Cluster ``settings`` has learned a route to ``address``."""
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in learned(settings))


def ping_once(client: Host, address: str) -> bool:
    done = subprocess.run(["ip", "netns", "exec", client.netns, "ping", "-n", "-c", "1",
                           "-W", "0.2", address], capture_output=True, check=False)
    return done.returncode == 0


def wait(condition: Callable[[], bool], what: str, poll_s: float = 0.05,
         since: float | None = None) -> float:
    """Seconds from ``since`` (a ``time.monotonic()``; by default now) until
    ``condition()`` holds; gives up after ``TIMEOUT_S``."""
    started = time.monotonic() if since is None else since
    while not condition():
        if time.monotonic() - started > TIMEOUT_S:
            raise SystemExit(f"bench/ic: {what} not within {TIMEOUT_S:.0f}s")
        time.sleep(poll_s)
    return time.monotonic() - started


# ------------------------------------------------------------------ the figures


def transit_port(settings: LabSettings) -> bool:
    """The IC controller has made the AZ's router port on ``ts`` (``<az>-ts``)."""
    return bool(settings.central().nbctl("--bare", "--columns=name", "find",
                                         "Logical_Router_Port",
                                         f"name={settings.az_name}-ts").strip())


def allowed_to(settings: LabSettings, address: str) -> bool:
    """The IC controller has let traffic to ``address`` follow its learned route (a router
    policy allow above the node gateways' reroutes, ``ip4.dst == <prefix>``)."""
    ip = ipaddress.ip_address(address)
    matches = settings.central().nbctl("--bare", "--columns=match", "find",
                                       "Logical_Router_Policy", "action=allow",
                                       'external_ids:"podnet.io/owner"=podnet-ic')
    return any(ip in ipaddress.ip_network(line.split("==")[-1].strip(), strict=False)
               for line in matches.splitlines() if "==" in line)


def remote_gateway(settings: LabSettings) -> bool:
    """``ovn-ic`` has brought another AZ's gateway into the AZ's SB as a remote chassis."""
    return bool(settings.central().sbctl("--bare", "--columns=name", "find", "Chassis",
                                         "other_config:is-remote=true").strip())


def recompute(clusters: Sequence[LabSettings]) -> None:
    """Every node's ``ovn-controller`` recomputes its flows from scratch."""
    for settings in clusters:
        for node in lab_nodes(settings):
            node.ovs(settings.central()).appctl("ovn-controller", "recompute")


MARKS = ("ic_running_s", "ts_ports_s", "remote_gateways_s", "routes_learned_s",
         "policies_s")


def connect_round(clusters: Sequence[LabSettings], client: Host, server: Host,
                  timeout_s: float) -> dict[str, float]:
    """Delete ``ovn-ic-config`` in both clusters, wait until nothing of the
    interconnection is left, apply it again and time the first answered ping; a thread
    meanwhile notes when each AZ's ``ovn-ic`` runs, when both have their router port on
    ``ts`` and when both have learned the way. No answer within ``timeout_s``: the round
    failed (``connect_failed``), and every ``ovn-controller`` recomputes its flows so
    that the next rounds start from a working interconnection (``recovered_s``)."""
    first, second = clusters
    for settings in clusters:
        rest_of(settings).delete("ConfigMap", CONFIG_MAP, CONFIG_NAMESPACE)
    wait(lambda: all(ovn_ic_daemon(each).pid() is None and not learned(each)
                     for each in clusters) and not ping_once(client, server.ip),
         "interconnection torn down", poll_s=0.2)
    databases = ic_databases(first)
    marks: dict[str, float] = {}
    stop = threading.Event()

    def observe() -> None:
        checks: dict[str, Callable[[], bool]] = {
            "ic_running_s": lambda: all(ovn_ic_daemon(each).pid() is not None
                                        for each in clusters),
            "ts_ports_s": lambda: all(transit_port(each) for each in clusters),
            "routes_learned_s": lambda: routes_to(first, server.ip)
            and routes_to(second, client.ip),
            "remote_gateways_s": lambda: all(remote_gateway(each) for each in clusters),
            "policies_s": lambda: allowed_to(first, server.ip)
            and allowed_to(second, client.ip)}
        while not stop.is_set() and len(marks) < len(checks):
            for mark, check in checks.items():
                if mark not in marks and check():
                    marks[mark] = time.monotonic() - started
            time.sleep(0.05)

    started = time.monotonic()
    for settings in clusters:
        rest_of(settings).create(config_map(settings, databases), CONFIG_NAMESPACE)
    observer = threading.Thread(target=observe, daemon=True)
    observer.start()
    deadline = started + timeout_s
    try:
        while not (answered := ping_once(client, server.ip)) and time.monotonic() < deadline:
            pass
    finally:
        stop.set()
        observer.join()
    took = time.monotonic() - started
    figures = {"connect_s": took, "connect_failed": 0.0}
    for mark in MARKS:  # by the first answer at the latest
        figures[mark] = marks.get(mark, took)
    if not answered:
        seen = ", ".join(f"{mark.removesuffix('_s').replace('_', ' ')} "
                         + (f"{marks[mark]:.2f}s" if mark in marks else "not yet")
                         for mark in MARKS)
        print(f"    no answer across within {timeout_s:.0f}s ({seen}): every ovn-controller "
              "recomputes", flush=True)
        recompute(clusters)
        began = time.monotonic()
        figures = {"connect_failed": 1.0, "recovered_s": wait(
            lambda: ping_once(client, server.ip), "a ping across after recompute", poll_s=0,
            since=began)}
    # the way back too, before the next round tears it down again
    wait(lambda: ping_once(server, client.ip), "a ping back across clusters", poll_s=0)
    return figures


def route_round(first: LabSettings, second: LabSettings, index: int) -> dict[str, float]:
    """A new Subnet in cluster 1 until cluster 2 learned its CIDR, and its deletion until
    the route is gone."""
    cidr = SUBNET_CIDR.format(FIRST_SUBNET + index)
    network = ipaddress.ip_network(cidr)
    name = f"bench-ic-{index}"
    rest = rest_of(first)
    started = time.monotonic()
    rest.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
                 "spec": {"cidrBlock": cidr, "gateway": str(network.network_address + 1),
                          "protocol": "IPv4"}})
    learn = wait(lambda: network in learned(second),
                 f"route {cidr} learned by {second.az_name}", since=started)
    started = time.monotonic()
    rest.delete("Subnet", name)
    withdraw = wait(lambda: network not in learned(second),
                    f"route {cidr} withdrawn from {second.az_name}", since=started)
    return {"route_learn_s": learn, "route_withdraw_s": withdraw}


async def latency_rounds(pairs: Mapping[str, tuple[Host, Host]], rounds: int
                         ) -> dict[str, list[float]]:
    """Ping and TCP round trips (``REQUESTS`` per round each) of every pair, the pairs
    taking turns; milliseconds by ``<ping|tcp>_<pair>``."""
    checks = {}
    for name, (client, server) in pairs.items():
        checks[f"ping_{name}"] = Check("ping", client, server.ip, 0, server.label, (),
                                       ping=True)
        checks[f"tcp_{name}"] = Check("tcp", client, server.ip, CHECK_PORT, server.label,
                                      (Listener(server, CHECK_PORT),))
    samples: dict[str, list[float]] = {key: [] for key in checks}
    responders = Responders()
    try:
        for check in checks.values():
            for listener in check.listeners:
                await responders.start(listener)
        if responders.failed:
            raise SystemExit(f"bench/ic: no responder: {responders.failed}")
        for _ in range(rounds):
            for key, check in checks.items():
                outcome = await run_check(check)
                if len(outcome.ms) < REQUESTS:
                    raise SystemExit(f"bench/ic: {key} {check.client.label} -> "
                                     f"{check.destination}: {outcome.error or 'no answer'}")
                samples[key].extend(outcome.ms)
    finally:
        await responders.stop()
    return samples


def iperf(client: Host, server: Host, seconds: int) -> tuple[float, int]:
    """One iperf3 test from ``client`` to ``server`` (TCP, one stream; the first second
    omitted: slow start)."""
    daemon = subprocess.Popen(["ip", "netns", "exec", server.netns, "iperf3", "-s", "-1",
                               "-p", str(IPERF_PORT), "--forceflush"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert daemon.stdout is not None
        line = daemon.stdout.readline()
        while line and "listening" not in line:
            line = daemon.stdout.readline()
        if not line:
            raise SystemExit(f"bench/ic: iperf3 server in {server.label} did not start")
        done = subprocess.run(["ip", "netns", "exec", client.netns, "iperf3", "--json", "-c",
                               server.ip, "-p", str(IPERF_PORT), "-t", str(seconds),
                               "-O", "1"], capture_output=True, text=True, check=False,
                              timeout=seconds + 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            daemon.kill()
        daemon.wait()
    try:
        return iperf_result(done.stdout)
    except ValueError as exc:
        raise SystemExit(f"bench/ic: {client.label} -> {server.label}: {exc}") from exc


# ------------------------------------------------------------------ the run


def choose(clusters: Sequence[LabSettings]) -> dict[str, tuple[Host, Host]]:
    """The pairs, to ``registry`` of cluster 1 (on its gateway node): ``across`` from a pod
    of cluster 2 on that cluster's gateway node, ``intra`` from a pod of cluster 1 on
    another node (of the same subnet where there is one). Each path then has one Geneve
    hop, gateway to gateway or node to node (where no pod of cluster 2 is on its gateway
    node, its first pod is taken and the path has two)."""
    one, two = running(clusters[0]), running(clusters[1])
    server = next((h for h in one if h.label == f"{clusters[0].az_name}:{SERVER}"), None)
    if server is None or not two:
        raise SystemExit(f"bench/ic: no {SERVER} in cluster 1, or no pod in cluster 2")
    gateway = clusters[1].node_names()[0]
    across = sorted(two, key=lambda h: (h.node != gateway, h.label))[0]
    others = sorted((h for h in one if h.node != server.node),
                    key=lambda h: (h.subnet != server.subnet, h.label))
    if not others:
        raise SystemExit(f"bench/ic: no pod of cluster 1 on another node than {SERVER}")
    return {"across": (across, server), "intra": (others[0], server)}


def measure(clusters: Sequence[LabSettings], args: argparse.Namespace
            ) -> dict[str, list[float]]:
    pairs = choose(clusters)
    for name, (client, server) in pairs.items():
        print(f"    {name}: {client.label} ({client.ip} on {client.node}) -> "
              f"{server.label} ({server.ip} on {server.node})", flush=True)
    samples: dict[str, list[float]] = {}

    def add(figures: Mapping[str, float]) -> None:
        for key, value in figures.items():
            samples.setdefault(key, []).append(value)

    across_client, server = pairs["across"]
    for index in range(args.rounds):
        figures = connect_round(clusters, server, across_client, args.connect_timeout)
        add(figures)
        if not figures["connect_failed"]:
            print(f"    connect round {index + 1}: {figures['connect_s']:.2f}s (" + ", ".join(
                f"{mark.removesuffix('_s').replace('_', ' ')} {figures[mark]:.2f}s"
                for mark in MARKS) + ")", flush=True)
        else:
            print(f"    connect round {index + 1}: FAILED; answered "
                  f"{figures['recovered_s']:.2f}s after the recompute", flush=True)
    for index in range(args.rounds):
        add(route_round(clusters[0], clusters[1], index))
        print(f"    route round {index + 1}: learned in {samples['route_learn_s'][-1]:.2f}s, "
              f"withdrawn in {samples['route_withdraw_s'][-1]:.2f}s", flush=True)
    for key, values in asyncio.run(latency_rounds(pairs, args.rounds)).items():
        samples[f"{key}_ms"] = values
    for _ in range(args.rounds):
        for name, (client, target) in pairs.items():
            mbps, retransmits = iperf(client, target, args.seconds)
            add({f"tcp_mbps_{name}": mbps, f"retransmits_{name}": retransmits})
    print(f"    iperf3: {args.rounds} x {args.seconds}s each way done", flush=True)
    return samples


TIMES = (("connect_s", "ovn-ic-config applied -> first ping across"),
         ("ic_running_s", "  by then: ovn-ic running for both AZs"),
         ("ts_ports_s", "  by then: both AZs' router ports on ts"),
         ("remote_gateways_s", "  by then: the peer's gateway in each SB"),
         ("routes_learned_s", "  by then: routes learned by both AZs"),
         ("policies_s", "  by then: their allow policies in both"),
         ("route_learn_s", "new Subnet in az1 -> learned by az2"),
         ("route_withdraw_s", "Subnet deleted -> route gone in az2"))
PATHS = (("ping", "ping round trip", "ms"), ("tcp", "TCP request (connect incl.)", "ms"),
         ("tcp_mbps", "TCP throughput (iperf3)", "Mbit/s"))
"""Latencies with their p99; throughput with its lowest round instead (its bad tail)."""


def report(samples: Mapping[str, Sequence[float]]) -> tuple[str, dict[str, object]]:
    """The tables and the RESULT figures."""
    figures: dict[str, object] = {}
    lines = [f"{'seconds':<44} {'median':>8} {'p99':>8} {'rounds':>6}"]
    for key, title in TIMES:
        median, p99 = summary(samples.get(key, ()))
        lines.append(f"{title:<44} {median:>8.2f} {p99:>8.2f} "
                     f"{len(samples.get(key, ())):>6}")
        figures[key], figures[f"{key.removesuffix('_s')}_p99_s"] = median, p99
    failed = int(sum(samples["connect_failed"]))
    figures["connect_failed"] = failed
    if failed:
        after, _ = summary(samples["recovered_s"])
        lines.append(f"connect rounds with no answer within the timeout: {failed} of "
                     f"{len(samples['connect_failed'])} (answered {after:.2f}s after every "
                     "ovn-controller recomputed, median)")
    lines += ["", f"{'':<30} {'across clusters':>19} {'within az1, across nodes':>26} "
                  f"{'ratio':>6}",
              f"{'':<30} {'median':>9} {'p99/min':>9} {'median':>13} {'p99/min':>12} "
              f"{'':>6}"]
    for key, title, unit in PATHS:
        suffix = "" if key == "tcp_mbps" else "_ms"
        across = tail(samples[f"{key}_across{suffix}"], key == "tcp_mbps")
        intra = tail(samples[f"{key}_intra{suffix}"], key == "tcp_mbps")
        share = ratio(across[0], intra[0])
        lines.append(f"{title + ', ' + unit:<30} {across[0]:>9.2f} {across[1]:>9.2f} "
                     f"{intra[0]:>13.2f} {intra[1]:>12.2f} {share:>6.2f}")
        name = key if key == "tcp_mbps" else f"{key}_ms"
        figures[f"{name}_across"], figures[f"{name}_intra"] = across[0], intra[0]
        bad = "min" if key == "tcp_mbps" else "p99"
        figures[f"{name}_across_{bad}"], figures[f"{name}_intra_{bad}"] = across[1], intra[1]
        figures[f"{'tcp' if key == 'tcp_mbps' else key + '_ms'}_ratio_vs_intra"] = share
    lines.append(f"{'iperf3 retransmits (sum)':<30} "
                 f"{sum(samples['retransmits_across']):>19.0f} "
                 f"{sum(samples['retransmits_intra']):>26.0f}")
    return "\n".join(lines), figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ha", action="store_true",
                        help="the IC databases on raft (and OVN central, Redis replicated)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of each figure (default 5)")
    parser.add_argument("--seconds", type=int, default=3,
                        help="iperf3 seconds per test, after one omitted (default 3)")
    parser.add_argument("--connect-timeout", type=float, default=30.0,
                        help="seconds a connect round waits for its first answer before it "
                             "counts as failed (default 30)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/ic.py runs podnet up: run it as root", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    print(f"==> podnet up --clusters 2{' --ha' if args.ha else ''}, then {args.rounds} "
          f"rounds of each figure (load average {load_before[0]:.2f})", flush=True)
    with bench_lab("ic", DEFAULT_MANIFESTS, 2, args.keep, ha=args.ha, clusters=2) as (
            settings, up_s):
        clusters = settings.all_clusters()
        print(f"    two clusters up in {up_s:.1f}s", flush=True)
        samples = measure(clusters, args)
    left = [] if args.keep else [line for each in clusters for line in leftovers(each)]
    if not args.keep and settings.state_dir.parent.exists():
        left.append(f"directory {settings.state_dir.parent}")
    for line in left:
        print(f"    left behind: {line}")
    table, measured = report(samples)
    figures: dict[str, object] = {"ha": int(args.ha), "rounds": args.rounds,
                                  "up_s": round(up_s, 1), **measured,
                                  "load_before": load_before[0],
                                  "load_after": os.getloadavg()[0], "leftovers": len(left)}
    print(table)
    print(result_line(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
