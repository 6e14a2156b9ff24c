"""Interconnection: what it takes for two clusters' pods to reach each other over OVN-IC,
measured on ``podnet up --clusters 2`` (every daemon real, on loopback and in lab
namespaces).

Run as root from the repository root: ``python bench/ic.py`` (``--help`` for the
options). It brings up its own two clusters (free ports, a unique prefix, a temporary
state directory; ``--ha`` for the IC databases on raft) and measures:

- ``connect_s``: from ``ovn-ic-config`` applied in both clusters (after it was deleted
  and interconnection torn down) to the first answered ping from a pod of cluster 1 to a
  pod of cluster 2;
- ``route_learn_s``: from a new Subnet applied in cluster 1 to its CIDR among cluster 2's
  learned routes (median of ``--subnets`` subnets, one after the other);
- ``tcp_ms_across`` and ``tcp_ms_intra``: a TCP request (connect included, median of
  three) from a pod of cluster 2 to one of cluster 1, and between pods on two nodes of
  cluster 1; ``tcp_mbps_across``, ``tcp_mbps_intra`` the same pairs' iperf3 throughput,
  and ``tcp_ratio_vs_intra`` the first over the second.

It ends with one line ``RESULT name=ic key=value ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from podnet.daemons import free_port
from podnet.lab import DEFAULT_MANIFESTS, LabSettings, down, up
from podnet.lab.checks import CHECK_PORT, Check, Host, Listener, run_checks
from podnet.lab.interconnect import CONFIG_MAP, CONFIG_NAMESPACE, config_map, ic_databases
from podnet.lab.kubelet import sandbox_name
from podnet.lab.objects import name_of, pod_ready
from podnet.lab.rest import Rest
from podnet_plumbing import kube

IPERF_PORT = 5299


def lab_settings(state: Path, ha: bool) -> LabSettings:
    return LabSettings(
        state_dir=state, redis_port=free_port(), ipam_listen=f"127.0.0.1:{free_port()}",
        apiserver_listen=f"127.0.0.1:{free_port()}", webhook_listen=f"127.0.0.1:{free_port()}",
        sync_listen=f"127.0.0.1:{free_port()}", ic_listen=f"127.0.0.1:{free_port()}",
        ic_nb_port=free_port(), ic_sb_port=free_port(), manifests=(DEFAULT_MANIFESTS,),
        prefix=f"pi{uuid.uuid4().hex[:6]}", clusters=2, ha=ha)


def rest_of(settings: LabSettings) -> Rest:
    return Rest(kube.kube_client(settings.kubeconfig("admin")))


def host_of(settings: LabSettings, pod: dict[str, Any]) -> Host:
    status = pod.get("status") or {}
    return Host(f"{settings.az_name}:{name_of(pod)}", sandbox_name(settings.prefix, pod),
                str(status.get("podIP")), str((pod.get("spec") or {}).get("nodeName")))


def running(settings: LabSettings) -> list[Host]:
    return sorted((host_of(settings, pod) for pod in rest_of(settings).list("Pod")
                   if pod_ready(pod)), key=lambda h: h.label)


def ping_once(client: Host, address: str) -> bool:
    done = subprocess.run(["ip", "netns", "exec", client.netns, "ping", "-n", "-c", "1",
                           "-W", "0.3", address], capture_output=True, check=False)
    return done.returncode == 0


def wait(condition: Any, timeout_s: float, what: str, poll_s: float = 0.1) -> float:
    """Seconds until ``condition()`` holds; fails after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"bench/ic: {what} not within {timeout_s:.0f}s")
        time.sleep(poll_s)
    return time.monotonic() - started


def learned(settings: LabSettings) -> set[str]:
    rows = json.loads(settings.central().nbctl(
        "--format=json", "--columns=ip_prefix", "find", "Logical_Router_Static_Route",
        'external_ids:ic-learned-route!=""'))["data"]
    return {str(ipaddress.ip_network(row[0], strict=False)) for row in rows}


def connect_s(clusters: Sequence[LabSettings], client: Host, server: Host) -> float:
    """Delete ``ovn-ic-config`` everywhere, wait for the pods to be cut off, apply it
    again and time the first answered ping."""
    for settings in clusters:
        rest_of(settings).delete("ConfigMap", CONFIG_MAP, CONFIG_NAMESPACE)
    wait(lambda: not ping_once(client, server.ip), 60, "interconnection torn down")
    databases = ic_databases(clusters[0])
    started = time.monotonic()
    for settings in clusters:
        rest_of(settings).create(config_map(settings, databases), CONFIG_NAMESPACE)
    wait(lambda: ping_once(client, server.ip), 120, "a ping across clusters", poll_s=0.0)
    return time.monotonic() - started


def route_learn_s(first: LabSettings, second: LabSettings, count: int) -> list[float]:
    times = []
    for index in range(count):
        cidr = f"10.{120 + index}.0.0/24"
        started = time.monotonic()
        rest_of(first).create({
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet",
            "metadata": {"name": f"bench-ic-{index}"},
            "spec": {"cidrBlock": cidr, "gateway": cidr.replace(".0/24", ".1")}})
        wait(lambda cidr=cidr: cidr in learned(second), 120, f"route {cidr} learned")
        times.append(time.monotonic() - started)
    return times


def tcp_ms(pairs: Sequence[tuple[Host, Host]]) -> list[float | None]:
    checks = [Check("tcp", client, server.ip, CHECK_PORT, server.label,
                    (Listener(server, CHECK_PORT),)) for client, server in pairs]
    return [result.latency_ms for result in asyncio.run(run_checks(checks))]


def iperf_mbps(client: Host, server: Host, seconds: int) -> float:
    daemon = subprocess.Popen(["ip", "netns", "exec", server.netns, "iperf3", "-s", "-1",
                               "-p", str(IPERF_PORT)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = subprocess.run(["ip", "netns", "exec", client.netns, "iperf3", "-J", "-c",
                              server.ip, "-p", str(IPERF_PORT), "-t", str(seconds)],
                             capture_output=True, text=True, check=True,
                             timeout=seconds + 30).stdout
    finally:
        with contextlib.suppress(ProcessLookupError):
            daemon.kill()
        daemon.wait()
    received = json.loads(out)["end"]["sum_received"]["bits_per_second"]
    return float(received) / 1e6


def measure(first: LabSettings, args: argparse.Namespace) -> dict[str, Any]:
    clusters = first.all_clusters()
    one, two = running(clusters[0]), running(clusters[1])
    registry = next(h for h in one if h.label == "az1:registry")
    other_node = next(h for h in one if h.node != registry.node)
    peer = two[0]
    figures: dict[str, Any] = {}
    figures["connect_s"] = round(connect_s(clusters, registry, peer), 2)
    learn = sorted(route_learn_s(clusters[0], clusters[1], args.subnets))
    figures["route_learn_s"] = round(learn[len(learn) // 2], 2)
    across, intra = tcp_ms([(peer, registry), (other_node, registry)])
    figures["tcp_ms_across"] = round(across, 2) if across is not None else "fail"
    figures["tcp_ms_intra"] = round(intra, 2) if intra is not None else "fail"
    mbps_across = iperf_mbps(peer, registry, args.seconds)
    mbps_intra = iperf_mbps(other_node, registry, args.seconds)
    figures["tcp_mbps_across"] = round(mbps_across)
    figures["tcp_mbps_intra"] = round(mbps_intra)
    figures["tcp_ratio_vs_intra"] = round(mbps_across / mbps_intra, 2)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ha", action="store_true", help="the IC databases on raft")
    parser.add_argument("--subnets", type=int, default=3,
                        help="subnets whose route learning is timed (default 3)")
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 seconds (default 5)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix="podnet-ic-", dir="/tmp"))
    settings = lab_settings(state / "state", args.ha)
    started = time.monotonic()
    try:
        try:
            with (state / "up.log").open("w") as log, contextlib.redirect_stdout(log):
                up(settings)
        except BaseException:
            print((state / "up.log").read_text()[-4000:], file=sys.stderr)
            raise
        up_s = time.monotonic() - started
        figures = {"up_s": round(up_s, 1), **measure(settings, args)}
    finally:
        if args.keep:
            print(f"kept: podnet down --state-dir {settings.state_dir}")
        else:
            with (state / "down.log").open("w") as log, contextlib.redirect_stdout(log):
                down(settings)
            for leftover in state.glob("*.log"):
                leftover.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                state.rmdir()
    print("RESULT name=ic " + " ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
