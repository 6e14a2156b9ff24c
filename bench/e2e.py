"""End to end: pods from ``kubectl apply`` to traffic-ready on a whole podnet.

Run from the repository root as root: ``python bench/e2e.py`` (``--quick`` for a smoke
run, ``--help`` for the options).

One run brings up a lab (``podnet up`` with its own ports, names and state directory:
Redis, OVN, the lab's API server, the webhook over HTTPS, the sync worker, N nodes with
their node agents, the lab's controllers), then creates the pods through the API server,
as many at a time as ``--concurrency``, and follows each with a watch:

- **admission**: the create call, the webhook's allocation included (client side);
- **sync**: from the pod stored to the sync worker's ``ovn.kubernetes.io/routed``
  annotation (its address bound in the IPAM and its port written to OVN);
- **scheduling**: from the pod stored to its binding to a node;
- **attach**: from the pod both routed and scheduled to ``Running``: waiting for one of
  the lab kubelet's attach slots (16 at a time), the sandbox, the CNI ADD and the status
  the kubelet reports;
- **CNI ADD** itself, as the lab's kubelet logs it: ``podnet-cni`` exec'd in the node's
  namespace until its result, i.e. the agent's veth, OVS port and ``ovn-installed``
  wait;
- **admission -> traffic-ready**: from the create call to ``Running`` (the ADD returns only
  once ovn-controller has installed the pod's port).

``total_s`` is from the first create to the last pod ready (the target: 500 pods in at
most 60 s). Then a sample of pod pairs on different nodes exchange TCP requests (the
lab's connectivity check), which proves the pods carry traffic. The lab is removed at
the end (``podnet down``). The last line is ``RESULT name=e2e key=value ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import percentile
from bench._lab import bench_lab
from podnet.lab import LabSettings
from podnet.lab.checks import CHECK_PORT, Check, Host, Listener, run_checks
from podnet.lab.kubelet import sandbox_name
from podnet.lab.objects import metadata, pod_ips, pod_ready, spec_of
from podnet.lab.rest import Rest
from podnet_plumbing import kube

NAMESPACE = "bench"
MANIFESTS = f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  annotations: {{ovn.kubernetes.io/logical_switch: {NAMESPACE}}}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {{name: {NAMESPACE}}}
spec: {{cidrBlock: 10.80.0.0/16, natOutgoing: true}}
"""
ROUTED = "ovn.kubernetes.io/routed"
ADD_LOGGED = re.compile(rf"pod {NAMESPACE}/(\S+) attached on \S+: CNI ADD ([\d.]+) ms")


@dataclass
class Clock:
    """When one pod passed each stage (``time.monotonic``)."""

    sent: float = 0.0
    created: float | None = None
    """When the create call returned: the pod is admitted and stored."""
    routed: float | None = None
    scheduled: float | None = None
    ready: float | None = None
    uid: str = ""
    node: str = ""
    ip: str = ""

    def stages(self, cni_add_ms: float | None = None) -> dict[str, float] | None:
        """Each stage in milliseconds, once the pod is ready (the CNI ADD as logged)."""
        if None in (self.created, self.routed, self.scheduled, self.ready):
            return None
        assert self.created is not None and self.routed is not None
        assert self.scheduled is not None and self.ready is not None
        return {
            "admission": 1000 * (self.created - self.sent),
            "sync": 1000 * max(0.0, self.routed - self.created),
            "scheduling": 1000 * max(0.0, self.scheduled - self.created),
            "attach": 1000 * max(0.0, self.ready - max(self.routed, self.scheduled)),
            "total": 1000 * (self.ready - self.sent),
            "cni_add": cni_add_ms if cni_add_ms is not None else float("nan"),
        }


@dataclass
class Timeline:
    """Every pod's clock, kept from a watch on the pods of the benchmark's namespace."""

    clocks: dict[str, Clock] = field(default_factory=dict)

    async def on_event(self, event: kube.WatchEvent) -> None:
        now = time.monotonic()
        objects = event.objects if isinstance(event, kube.Snapshot) else (event.obj,)
        for pod in objects:
            clock = self.clocks.get(str(metadata(pod).get("name")))
            if clock is None or metadata(pod).get("namespace") != NAMESPACE:
                continue
            self.note(clock, pod, now)

    @staticmethod
    def note(clock: Clock, pod: Mapping[str, Any], now: float) -> None:
        clock.uid = str(metadata(pod).get("uid") or "")
        if (metadata(pod).get("annotations") or {}).get(ROUTED) == "true":
            clock.routed = clock.routed or now
        if spec_of(pod).get("nodeName"):
            clock.scheduled = clock.scheduled or now
            clock.node = str(spec_of(pod)["nodeName"])
        if pod_ready(pod):
            clock.ready = clock.ready or now
            clock.ip = next((ip for ip in pod_ips(pod) if ":" not in ip), "")

    def counts(self) -> str:
        clocks = self.clocks.values()
        return (f"{sum(c.created is not None for c in clocks)} created, "
                f"{sum(c.routed is not None for c in clocks)} routed, "
                f"{sum(c.scheduled is not None for c in clocks)} scheduled, "
                f"{sum(c.ready is not None for c in clocks)} ready")


def cni_add_times(log: Path) -> dict[str, float]:
    """How long each pod's CNI ADD took, by pod name, from the lab kubelet's log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return {}
    return {m.group(1): float(m.group(2)) for m in ADD_LOGGED.finditer(text)}


def pod_body(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}}


async def create_pods(rest: Rest, timeline: Timeline, count: int, concurrency: int
                      ) -> list[str]:
    """Create the pods, ``concurrency`` calls at a time; the refusals."""
    gate = asyncio.Semaphore(concurrency)
    refused: list[str] = []

    async def create(name: str) -> None:
        async with gate:
            clock = timeline.clocks[name]
            clock.sent = time.monotonic()
            try:
                await asyncio.to_thread(rest.create, pod_body(name), NAMESPACE)
            except kube.KubeError as exc:
                refused.append(f"{name}: {exc}")
                return
            clock.created = time.monotonic()

    names = [f"bench-{index:04d}" for index in range(count)]
    for name in names:
        timeline.clocks[name] = Clock()
    await asyncio.gather(*(create(name) for name in names))
    return refused


async def wait_ready(timeline: Timeline, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    shown = ""
    while time.monotonic() < deadline:
        line = timeline.counts()
        if line != shown:
            print(f"    {line}", flush=True)
            shown = line
        if all(c.ready is not None for c in timeline.clocks.values()):
            return
        await asyncio.sleep(0.5)


def traffic_sample(settings: LabSettings, timeline: Timeline, pairs: int) -> list[Check]:
    """Checks from pods of the first node to pods of the others (up to ``pairs``)."""
    ready = sorted((c for c in timeline.clocks.values() if c.ready and c.ip),
                   key=lambda c: c.uid)
    nodes = sorted({c.node for c in ready})
    if len(nodes) < 2:
        return []
    clients = [c for c in ready if c.node == nodes[0]]
    servers = [c for c in ready if c.node != nodes[0]]

    def host(clock: Clock) -> Host:
        netns = sandbox_name(settings.prefix, {"metadata": {"uid": clock.uid}})
        return Host(f"{NAMESPACE}/{clock.uid[:8]}", netns, clock.ip, clock.node)

    checks = []
    for client, server in list(zip(clients, reversed(servers), strict=False))[:pairs]:
        target = host(server)
        checks.append(Check("across nodes", host(client), target.ip, CHECK_PORT, target.label,
                            (Listener(target, CHECK_PORT),)))
    return checks


def summary(values: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return percentile(ordered, 0.50), percentile(ordered, 0.99)


async def measure(settings: LabSettings, args: argparse.Namespace) -> dict[str, Any]:
    api = kube.kube_client(settings.kubeconfig("admin"))
    rest = Rest(kube.kube_client(settings.kubeconfig("admin")))
    timeline = Timeline()
    watcher = kube.Watcher(kube.lister(api, "Pod"), "Pod", timeline.on_event)
    watcher.start()
    await watcher.store.wait_synced()
    try:
        started = time.monotonic()
        refused = await create_pods(rest, timeline, args.pods, args.concurrency)
        print(f"    {args.pods} creates sent in {time.monotonic() - started:.1f}s, "
              f"{len(refused)} refused", flush=True)
        await wait_ready(timeline, args.timeout)
    finally:
        await watcher.stop()
    done = [c.ready for c in timeline.clocks.values() if c.ready is not None]
    total_s = (max(done) - started) if done else float("nan")
    checks = traffic_sample(settings, timeline, args.traffic_pairs)
    results = await run_checks(checks)
    adds = cni_add_times(settings.state_dir / "controllers.log")
    stages = [s for name, clock in timeline.clocks.items()
              if (s := clock.stages(adds.get(name))) is not None]
    return {"refused": refused, "ready": len(done), "total_s": total_s, "stages": stages,
            "traffic_ok": sum(r.ok for r in results), "traffic": len(results),
            "latency_ms": [r.latency_ms for r in results if r.latency_ms is not None]}


def report(figures: Mapping[str, Any], args: argparse.Namespace, up_s: float) -> str:
    stages = figures["stages"]
    lines = [f"{'stage':<34} {'p50 ms':>9} {'p99 ms':>9}"]
    result = {"pods": args.pods, "nodes": args.nodes, "ready": figures["ready"],
              "total_s": round(figures["total_s"], 2)}
    for key, title in (("admission", "admission (webhook, create call)"),
                       ("sync", "sync (stored -> routed)"),
                       ("scheduling", "scheduling (stored -> bound)"),
                       ("attach", "attach (routed+bound -> Running)"),
                       ("cni_add", "  of which the CNI ADD itself"),
                       ("total", "admission -> traffic-ready")):
        p50, p99 = summary([s[key] for s in stages if not math.isnan(s[key])])
        lines.append(f"{title:<34} {p50:>9.1f} {p99:>9.1f}")
        prefix = "" if key == "total" else f"{key}_"
        result[f"{prefix}p50_ms"], result[f"{prefix}p99_ms"] = round(p50, 1), round(p99, 1)
    rate = figures["ready"] / figures["total_s"] if figures["total_s"] else 0.0
    lines.append(f"\n{figures['ready']}/{args.pods} pods ready in {figures['total_s']:.1f}s "
                 f"({rate:.1f} pods/s) on {args.nodes} nodes; target total_s <= 60: "
                 f"{'pass' if figures['total_s'] <= 60 else 'FAIL'}")
    lines.append(f"traffic: {figures['traffic_ok']}/{figures['traffic']} TCP checks between "
                 "pods on different nodes passed"
                 + (f" (median {sorted(figures['latency_ms'])[len(figures['latency_ms']) // 2]:.2f}"
                    " ms)" if figures["latency_ms"] else ""))
    lines += [f"refused: {line}" for line in figures["refused"][:5]]
    result.update(traffic_ok=figures["traffic_ok"], traffic_checks=figures["traffic"],
                  pods_per_s=round(rate, 1), up_s=round(up_s, 1),
                  load_before=round(args.load_before, 2), load_after=round(os.getloadavg()[0], 2))
    lines.append("RESULT name=e2e " + " ".join(f"{k}={v}" for k, v in result.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=500, help="pods to create (default 500)")
    parser.add_argument("--nodes", type=int, default=2, help="simulated nodes (default 2)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="create calls in flight (default 8)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for every pod to be ready (default 300)")
    parser.add_argument("--traffic-pairs", type=int, default=10,
                        help="pod pairs that exchange TCP requests at the end (default 10)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 50 pods")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args(argv)
    if args.quick:
        args.pods, args.traffic_pairs = 50, 4
    if os.geteuid() != 0:
        print("bench/e2e.py runs podnet up: run it as root", file=sys.stderr)
        return 2
    args.load_before = os.getloadavg()[0]
    print(f"==> podnet up ({args.nodes} nodes), then {args.pods} pods, "
          f"{args.concurrency} creates in flight", flush=True)
    with bench_lab("e2e", MANIFESTS, args.nodes, args.keep) as (settings, up_s):
        print(f"    lab up in {up_s:.1f}s", flush=True)
        figures = asyncio.run(measure(settings, args))
    print(report(figures, args, up_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
