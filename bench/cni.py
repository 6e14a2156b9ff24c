"""Benchmark of CNI ADD through podnet, against the reference CNI chain, in one run.

Run from the repository root as root: ``python bench/cni.py`` (``--quick`` for a smoke
run). It starts, in a temporary directory: a redis-server, an OVN central, one node (OVS
userspace datapath and ovn-controller in a network namespace of its own), the sync
worker in-process (standalone, pods given as objects), and ``podnet agent --standalone``
as its own process inside the node's namespace. Then it measures:

- CNI ADD latency as a runtime sees it: the ``podnet-cni`` launcher exec'd per pod, into
  a real network namespace, up to ``ovn-installed`` and the result printed; 200 pods one
  at a time, then rounds of 20 at once (each one's latency from the common start);
- the shim's own cost: STATUS through the launcher minus STATUS straight on the socket;
- the reference chain ``bridge`` + ``host-local`` from ``/usr/lib/cni``, the same way
  (exec'd per pod, real namespaces; run on a namespace of its own through ``nsenter``);
- the issue's shell loop (veth, ``ovs-vsctl add-port``, wait for ``ovn-installed``)
  for 20 pods on the same node right after podnet's 200, so both see as many ports;
- pod-to-pod TCP throughput (iperf3, 3 s) and TCP request/response latency through OVN
  (with two pods on the node, and again with all of them), and the same over a plain
  veth pair between two namespaces.

It ends with one line ``RESULT name=cni key=value ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import percentile
from ipam.records import allocation_annotations
from ipam.requests import ReserveRequest
from ipam.settings import RedisSettings
from ipam.store import Ipam
from node_agent import protocol
from node_agent.install import install_cni
from podnet.daemons import RedisServer
from podnet.ovn import OvnCentral, OvnError, OvsNode
from podnet_plumbing.kube import Store
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.nb import Northbound
from podnet_sync.worker import KINDS, SyncSettings, SyncWorker

NODE = "bench-node"
SUBNET = "bench"
CIDR = "10.60.0.0/16"
REFERENCE_CIDR = "10.61.0.0/16"
SHELL_SAMPLES = 20
"""Pods set up by the issue's shell loop, for comparison on the same node."""
TARGETS = {"add_p50_ms": 100.0, "add_p99_ms": 250.0, "shim_ms": 30.0}
RR_CLIENT = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
samples = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter(); c.sendall(b"x"); c.recv(1); samples.append(time.perf_counter() - t)
samples.sort(); print(samples[len(samples) // 2] * 1e6)
"""
RR_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while (b := c.recv(1)):
    c.sendall(b)
"""


@dataclass(frozen=True)
class Scale:
    sequential: int
    concurrent: int
    rounds: int


def token() -> str:
    return uuid.uuid4().hex[:8]


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True,
                          check=True).stdout


def netns_add(name: str) -> str:
    sh("ip", "netns", "add", name)
    sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
    return f"/run/netns/{name}"


def summary(samples_s: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples_s)
    return 1000 * percentile(ordered, 0.50), 1000 * percentile(ordered, 0.99)


async def timed_exec(argv: Sequence[str], env: dict[str, str], stdin: bytes) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    out, err = await process.communicate(stdin)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{argv[-1]} failed: {out.decode()} {err.decode()}")
    return elapsed


def cni_env(command: str, container: str, netns: str, args: str = "") -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command,
            "CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
            "CNI_ARGS": args, "CNI_PATH": "/usr/lib/cni"}


# ------------------------------------------------------------------------ the lab


@dataclass
class Bench:
    workdir: Path
    node: OvsNode
    ipam: Ipam
    worker: SyncWorker
    plugin: Path
    socket: str
    agent: subprocess.Popen[bytes] | None = None

    def config(self) -> bytes:
        return json.dumps({"cniVersion": "1.0.0", "name": "podnet", "type": "podnet-cni",
                           "socket": self.socket}).encode()


def pod_object(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "annotations": annotations},
            "spec": {"nodeName": NODE}, "status": {"phase": "Running"}}


async def admit_pods(bench: Bench, count: int) -> list[str]:
    """Reserve addresses and give the worker the pods, as webhook and API would."""
    spec = await bench.ipam.subnet(SUBNET)
    names, objects = [], []
    for index in range(count):
        name = f"pod-{index:04d}"
        allocation = await bench.ipam.reserve(SUBNET, f"tok-{name}", ReserveRequest(),
                                              namespace="default", name=name)
        names.append(name)
        objects.append(pod_object(name, allocation_annotations(allocation, spec)))
    bench.worker.stores["Pod"].replace(objects, "")  # type: ignore[attr-defined]
    bench.worker.mark("Pod", full=True)
    await bench.worker.step()
    return names


def start_agent(bench: Bench, redis: RedisServer, prefix: str) -> subprocess.Popen[bytes]:
    assert bench.node.netns is not None
    log = (bench.workdir / "agent.log").open("wb")
    return subprocess.Popen(
        ["ip", "netns", "exec", bench.node.netns, str(Path(sys.executable).with_name("podnet")),
         "--log-level", os.environ.get("PODNET_BENCH_LOG", "WARNING"), "agent",
         "--standalone", "--node-name", NODE, "--ovs-db", bench.node.db_remote,
         "--socket", bench.socket,
         "--redis", redis.unix_url, "--prefix", prefix, "--gateway-interval", "30"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def direct_call(path: str, command: str) -> dict[str, Any]:
    """One request straight on the agent's socket (no shim process)."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(path)
        conn.sendall(protocol.encode(protocol.request(command, {"cniVersion": "1.0.0",
                                                                "name": "podnet"})))
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    reply: dict[str, Any] = dict(protocol.decode_reply(answer))
    return reply


async def wait_ready(bench: Bench, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if bench.agent is not None and bench.agent.poll() is not None:
            raise RuntimeError(f"the agent exited; see {bench.workdir / 'agent.log'}")
        with contextlib.suppress(OSError):
            if direct_call(bench.socket, "STATUS")["ok"]:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the agent was not ready in {timeout_s}s; see its log")


def remove_directory(directory: Path) -> None:
    for item in directory.iterdir():
        item.unlink()
    directory.rmdir()


def spawn(argv: Sequence[str], stdout: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL)


def netns_delete(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


@contextlib.asynccontextmanager
async def lab(workdir: Path) -> AsyncIterator[Bench]:
    with RedisServer(workdir / "redis") as redis, OvnCentral(workdir / "central") as central:
        node = OvsNode(workdir / "node", name=NODE, system_id=f"{NODE}-{token()}",
                       ovn_remote=central.sb_remote, encap_ip="127.0.0.2",
                       netns=f"pnbench-{token()}")
        prefix = f"bench{token()}:"
        ipam = Ipam.connect(RedisSettings(url=redis.url, prefix=prefix))
        api = await asyncio.to_thread(nb_api, central.nb_remote)
        stores = {kind: Store() for kind in KINDS}
        stores["Subnet"].replace([{"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                                   "metadata": {"name": SUBNET}, "spec": {"cidrBlock": CIDR}}],
                                 "")
        stores["Node"].replace([{"apiVersion": "v1", "kind": "Node",
                                 "metadata": {"name": NODE, "uid": "node-uid"}}], "")
        worker = SyncWorker(ipam, Northbound(api), stores, SyncSettings(resync_interval_s=3600))
        sockets = Path(tempfile.mkdtemp(prefix="pnb-", dir="/tmp"))
        bench = Bench(workdir, node, ipam, worker, install_cni(workdir / "bin"),
                      str(sockets / "cni.sock"))
        try:
            await asyncio.to_thread(node.start)
            await worker.step()
            bench.agent = start_agent(bench, redis, prefix)
            await wait_ready(bench)
            yield bench
        finally:
            if bench.agent is not None:
                bench.agent.send_signal(signal.SIGTERM)
                bench.agent.wait(30)
            await asyncio.to_thread(node.stop, 5.0, True)
            with contextlib.suppress(OvnError):
                node.forget_chassis()
            await asyncio.to_thread(close_api, api)
            await ipam.close()
            remove_directory(sockets)


# -------------------------------------------------------------------- measurements


@dataclass
class Sandbox:
    name: str
    netns: str
    container: str


class Sandboxes:
    """Network namespaces for pods, all deleted at the end."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def make(self, pod: str) -> Sandbox:
        name = f"pnbpod-{token()}"
        self.made.append(name)
        return Sandbox(pod, netns_add(name), f"c{token()}{token()}")

    def cleanup(self) -> None:
        for name in self.made:
            netns_delete(name)


async def podnet_add(bench: Bench, box: Sandbox) -> float:
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={box.name}"
    return await timed_exec([str(bench.plugin)], cni_env("ADD", box.container, box.netns, args),
                            bench.config())


async def podnet_del(bench: Bench, box: Sandbox) -> float:
    return await timed_exec([str(bench.plugin)], cni_env("DEL", box.container, box.netns),
                            bench.config())


async def in_rounds(add: Any, boxes: Sequence[Sandbox], size: int) -> list[float]:
    latencies: list[float] = []
    for start in range(0, len(boxes), size):
        latencies += await asyncio.gather(*(add(box) for box in boxes[start:start + size]))
    return latencies


async def shim_cost(bench: Bench, samples: int = 50) -> tuple[float, float]:
    """(launcher STATUS p50 ms, direct socket STATUS p50 ms)."""
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": "STATUS"}
    through_shim = [await timed_exec([str(bench.plugin)], env, bench.config())
                    for _ in range(samples)]
    direct = []
    for _ in range(samples):
        started = time.perf_counter()
        await asyncio.to_thread(direct_call, bench.socket, "STATUS")
        direct.append(time.perf_counter() - started)
    return summary(through_shim)[0], summary(direct)[0]


class Reference:
    """``bridge`` + ``host-local`` from /usr/lib/cni on a namespace of their own."""

    def __init__(self, workdir: Path) -> None:
        self.host = f"pnbref-{token()}"
        self.path = netns_add(self.host)
        self.config = json.dumps({
            "cniVersion": "1.0.0", "name": "reference", "type": "bridge", "bridge": "pnref0",
            "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "subnet": REFERENCE_CIDR,
                     "dataDir": str(workdir / "host-local")},
        }).encode()

    async def add(self, box: Sandbox) -> float:
        return await timed_exec(["nsenter", f"--net={self.path}", "/usr/lib/cni/bridge"],
                                cni_env("ADD", box.container, box.netns), self.config)

    async def nsenter_cost(self, samples: int = 30) -> float:
        env = {"PATH": "/usr/bin:/bin"}
        return summary([await timed_exec(["nsenter", f"--net={self.path}", "true"], env, b"")
                        for _ in range(samples)])[0]

    def cleanup(self) -> None:
        netns_delete(self.host)


async def serve_and_measure(server_ns: str, client_ns: str, ip: str) -> tuple[float, float]:
    """(iperf3 Mbit/s over 3 s, TCP request/response p50 µs) from client to server."""
    iperf = spawn(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1"])
    try:
        result: dict[str, Any] = {}
        for _ in range(50):  # until the server listens
            done = await asyncio.to_thread(subprocess.run, [
                "ip", "netns", "exec", client_ns, "iperf3", "-c", ip, "-t", "3", "-J"],
                capture_output=True, text=True, check=False)
            result = json.loads(done.stdout or "{}")
            if "end" in result and "error" not in result:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"iperf3 to {ip}: {result.get('error')}")
        mbps = result["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        iperf.kill()
        iperf.wait()
    rr = spawn(["ip", "netns", "exec", server_ns, sys.executable, "-c", RR_SERVER, "7000"],
               stdout=subprocess.PIPE)
    try:
        assert rr.stdout is not None
        rr.stdout.readline()
        out = await asyncio.to_thread(sh, "ip", "netns", "exec", client_ns, sys.executable,
                                      "-c", RR_CLIENT, ip, "7000", "2000")
    finally:
        rr.kill()
        rr.wait()
    return mbps, float(out)


def shell_add(node: OvsNode, box: Sandbox) -> float:
    """The issue's shell loop for one pod (veth, ``ovs-vsctl add-port``, wait for
    ``ovn-installed``), one command per step; the namespace exists already, as for
    podnet. Returns seconds."""
    assert node.netns is not None
    host = f"pnsh{box.container[-11:]}"
    started = time.perf_counter()
    sh("ip", "link", "add", host, "netns", node.netns, "type", "veth", "peer", "name", "eth0",
       "netns", box.netns)
    sh("ip", "netns", "exec", node.netns, "ip", "link", "set", host, "up")
    sh("ip", "netns", "exec", node.netns, "ethtool", "-K", host, "tx", "off")
    node.vsctl("add-port", "br-int", host, "--", "set", "Interface", host,
               f"external_ids:iface-id={box.name}.default")
    node.vsctl("wait-until", "Interface", host, "external_ids:ovn-installed=true",
               timeout_s=30)
    return time.perf_counter() - started


def shell_del(node: OvsNode, box: Sandbox) -> None:
    host = f"pnsh{box.container[-11:]}"
    node.vsctl("--if-exists", "del-port", "br-int", host)


def veth_pair() -> tuple[str, str]:
    a, b = f"pnbva-{token()}", f"pnbvb-{token()}"
    netns_add(a)
    netns_add(b)
    sh("ip", "link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0",
       "netns", b)
    for name, ip in ((a, "10.62.0.1/24"), (b, "10.62.0.2/24")):
        sh("ip", "netns", "exec", name, "ip", "addr", "add", ip, "dev", "eth0")
        sh("ip", "netns", "exec", name, "ip", "link", "set", "eth0", "up")
    return a, b


async def pod_ip(bench: Bench, box: Sandbox) -> str:
    allocation = await bench.ipam.lookup_pod("default", box.name)
    assert allocation is not None
    return str(allocation.ips[0])


async def measure_podnet(bench: Bench, scale: Scale, boxes: Sandboxes) -> dict[str, float]:
    figures: dict[str, float] = {}
    total = scale.sequential + scale.concurrent * scale.rounds
    names = await admit_pods(bench, total + 2 + SHELL_SAMPLES)
    one_by_one = [boxes.make(name) for name in names[:scale.sequential]]
    at_once = [boxes.make(name) for name in names[scale.sequential:total]]
    pair = [boxes.make(name) for name in names[total:total + 2]]
    shell_boxes = [boxes.make(name) for name in names[total + 2:]]
    print("throughput and latency pod to pod through OVN, two pods on the node ...",
          flush=True)
    for box in pair:
        await podnet_add(bench, box)
    figures["tcp_mbps"], figures["tcp_rr_us"] = await serve_and_measure(
        Path(pair[0].netns).name, Path(pair[1].netns).name, await pod_ip(bench, pair[0]))
    print(f"ADD of {len(one_by_one)} pods one at a time ...", flush=True)
    sequential = [await podnet_add(bench, box) for box in one_by_one]
    figures["add_p50_ms"], figures["add_p99_ms"] = summary(sequential)
    figures["add_first20_p50_ms"] = summary(sequential[:SHELL_SAMPLES])[0]
    figures["add_last20_p50_ms"] = summary(sequential[-SHELL_SAMPLES:])[0]
    print(f"the shell loop of the issue, {len(shell_boxes)} pods, same node ...", flush=True)
    figures["shell_p50_ms"] = summary([await asyncio.to_thread(shell_add, bench.node, box)
                                       for box in shell_boxes])[0]
    print(f"ADD of {len(at_once)} pods, {scale.concurrent} at once ...", flush=True)
    concurrent = await in_rounds(lambda box: podnet_add(bench, box), at_once, scale.concurrent)
    figures["add_concurrent_p50_ms"], figures["add_concurrent_p99_ms"] = summary(concurrent)
    shim, direct = await shim_cost(bench)
    figures["shim_ms"] = shim - direct
    figures["status_direct_ms"] = direct
    print("throughput and latency again, with every pod on the node ...", flush=True)
    figures["tcp_busy_mbps"], figures["tcp_busy_rr_us"] = await serve_and_measure(
        Path(pair[0].netns).name, Path(pair[1].netns).name, await pod_ip(bench, pair[0]))
    print("DEL of every pod ...", flush=True)
    deleted = [await podnet_del(bench, box) for box in one_by_one + at_once + pair]
    figures["del_p50_ms"] = summary(deleted)[0]
    for box in shell_boxes:
        shell_del(bench.node, box)
    return figures


async def measure_reference(scale: Scale, boxes: Sandboxes,
                            reference: Reference) -> dict[str, float]:
    figures: dict[str, float] = {}
    print("reference: bridge + host-local ...", flush=True)
    total = scale.sequential + scale.concurrent * scale.rounds
    ref_boxes = [boxes.make(f"ref-{i}") for i in range(total)]
    ref_sequential = [await reference.add(box) for box in ref_boxes[:scale.sequential]]
    ref_concurrent = await in_rounds(reference.add, ref_boxes[scale.sequential:],
                                     scale.concurrent)
    figures["ref_add_p50_ms"], figures["ref_add_p99_ms"] = summary(ref_sequential)
    figures["ref_concurrent_p50_ms"], figures["ref_concurrent_p99_ms"] = summary(
        ref_concurrent)
    figures["nsenter_ms"] = await reference.nsenter_cost()
    return figures


async def run(scale: Scale, workdir: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    boxes = Sandboxes()
    reference = Reference(workdir)
    veths: tuple[str, str] | None = None
    try:
        async with lab(workdir) as bench:
            figures.update(await measure_podnet(bench, scale, boxes))
        figures.update(await measure_reference(scale, boxes, reference))
        print("reference: plain veth pair ...", flush=True)
        veths = veth_pair()
        figures["veth_tcp_mbps"], figures["veth_tcp_rr_us"] = await serve_and_measure(
            veths[1], veths[0], "10.62.0.2")
    finally:
        boxes.cleanup()
        reference.cleanup()
        for name in veths or ():
            netns_delete(name)
    figures["add_p50_ratio"] = figures["add_p50_ms"] / figures["ref_add_p50_ms"]
    figures["add_p99_ratio"] = figures["add_p99_ms"] / figures["ref_add_p99_ms"]
    figures["concurrent_p50_ratio"] = (figures["add_concurrent_p50_ms"]
                                       / figures["ref_concurrent_p50_ms"])
    figures["tcp_vs_veth"] = figures["tcp_mbps"] / figures["veth_tcp_mbps"]
    figures["pods"] = float(scale.sequential)
    return figures


def report(figures: dict[str, float], scale: Scale) -> None:
    print()
    print(f"{'':28}{'podnet':>12}{'bridge+host-local':>20}")
    rows = [("ADD one at a time p50 ms", "add_p50_ms", "ref_add_p50_ms"),
            ("ADD one at a time p99 ms", "add_p99_ms", "ref_add_p99_ms"),
            (f"ADD {scale.concurrent} at once p50 ms", "add_concurrent_p50_ms",
             "ref_concurrent_p50_ms"),
            (f"ADD {scale.concurrent} at once p99 ms", "add_concurrent_p99_ms",
             "ref_concurrent_p99_ms")]
    for label, ours, theirs in rows:
        print(f"{label:28}{figures[ours]:>12.1f}{figures[theirs]:>20.1f}")
    print(f"first {SHELL_SAMPLES} ADDs p50 {figures['add_first20_p50_ms']:.1f} ms, last "
          f"{SHELL_SAMPLES} {figures['add_last20_p50_ms']:.1f} ms; the shell loop right after "
          f"them, same node: p50 {figures['shell_p50_ms']:.1f} ms")
    print(f"{'':28}{'OVN, 2 pods':>12}{'OVN, all':>12}{'plain veth':>14}")
    print(f"{'TCP Mbit/s':28}{figures['tcp_mbps']:>12.0f}{figures['tcp_busy_mbps']:>12.0f}"
          f"{figures['veth_tcp_mbps']:>14.0f}")
    print(f"{'TCP round trip p50 us':28}{figures['tcp_rr_us']:>12.0f}"
          f"{figures['tcp_busy_rr_us']:>12.0f}{figures['veth_tcp_rr_us']:>14.0f}")
    print(f"load average (1 min) {figures['load_before']:.2f} before, "
          f"{figures['load_after']:.2f} after")
    print(f"shim's own cost {figures['shim_ms']:.1f} ms (STATUS on the socket directly "
          f"{figures['status_direct_ms']:.2f} ms); DEL p50 {figures['del_p50_ms']:.1f} ms; "
          f"nsenter in the reference {figures['nsenter_ms']:.1f} ms")
    for key, target in TARGETS.items():
        verdict = "pass" if figures[key] <= target else "FAIL"
        print(f"target {key} <= {target:g}: {figures[key]:.1f} {verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=200, help="pods added one at a time")
    parser.add_argument("--concurrent", type=int, default=20, help="pods added at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of concurrent ADDs")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/cni.py needs root (network namespaces, OVS)", file=sys.stderr)
        return 2
    scale = Scale(20, 5, 1) if args.quick else Scale(args.pods, args.concurrent, args.rounds)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="podnet-bench-cni-") as workdir:
        try:
            figures = asyncio.run(run(scale, Path(workdir)))
        finally:
            if os.environ.get("PODNET_BENCH_LOG"):
                log = Path(workdir) / "agent.log"
                print(log.read_text() if log.exists() else "(no agent log)")
    figures["load_before"], figures["load_after"] = load_before, os.getloadavg()[0]
    report(figures, scale)
    print("RESULT name=cni " + " ".join(
        f"{key}={value:.0f}" if key == "pods" else f"{key}={value:.2f}"
        for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
