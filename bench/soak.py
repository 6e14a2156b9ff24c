"""Soak: churn through a whole podnet while its components are killed, then prove that
nothing was doubled, leaked or cut off.

Run from the repository root as root: ``python bench/soak.py`` (10 minutes and about 34
kills by default; ``--quick`` for a two-minute smoke run, ``--help`` for the options).

One run brings up a lab of its own (``podnet up`` with its own ports, names and state
directory) with a Deployment, a StatefulSet, bare pods and a namespace under a
ResourceQuota, then for ``--duration`` seconds does what a cluster does, one action at
a time: bare pods created and deleted (gracefully, with grace 0, and re-created under
the same name), the Deployment scaled, StatefulSet pods deleted, podnet's annotations
edited, creates refused after podnet reserved (quota, a taken static address). Every
``--kill-every`` seconds one of the webhook, the sync worker, a node agent, the IPAM
query endpoint, the lab's controllers and Redis (AOF on) gets ``kill -9`` and is brought
back a moment later by ``podnet.lab.revive``, as a second ``podnet up`` would.

After the churn it checks, until everything holds or ``--converge-timeout``:

- **duplicates**: addresses or MACs that two live pods carry (and, counted during the
  churn, a taken static address given to a new pod while its holder still existed);
- **leaked**: IPAM records bound to no live pod, and reservations no pod carries;
- **missing**: live pods without their bound IPAM record or their OVN port;
- **nb_mismatch**: podnet's pod ports in OVN NB that are no live pod's, or whose
  addresses are not the IPAM's;
- **double_bound**: logical ports claimed by two OVS interfaces (on any nodes);
- **stale_sandboxes**: pod network namespaces of pods that are gone;
- **unreachable**: Running pods that do not answer TCP from a pod on another node;

and ``converge_s``, the time from the end of the churn until all of it held. The last line
is ``RESULT name=soak kills=.. pods_created=.. duplicates=.. leaked=.. missing=..
nb_mismatch=.. unreachable=.. converge_s=.. ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._lab import bench_lab
from ipam import annotations as keys
from ipam.names import pod_port
from ipam.settings import RedisSettings
from ipam.store import Ipam
from podnet.lab import LabSettings, lab_processes, revive
from podnet.lab.checks import CHECK_PORT, Check, Listener, pod_host, run_checks
from podnet.lab.kubelet import sandbox_name
from podnet.lab.nodes import lab_nodes
from podnet.lab.objects import metadata, pod_ready, spec_of
from podnet.lab.rest import Rest
from podnet.lab.up import central_of
from podnet.ovn_raft import RaftCentral
from podnet_plumbing import kube

NAMESPACE = "soak"
QUOTA_NAMESPACE = "soak-quota"
QUOTA_PODS = 2
MANIFESTS = f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  annotations: {{ovn.kubernetes.io/logical_switch: {NAMESPACE}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {QUOTA_NAMESPACE}}}
---
apiVersion: v1
kind: ResourceQuota
metadata: {{name: pods, namespace: {QUOTA_NAMESPACE}}}
spec: {{hard: {{pods: "{QUOTA_PODS}"}}}}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {{name: {NAMESPACE}}}
spec: {{cidrBlock: 10.82.0.0/16}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NAMESPACE}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers: [{{name: web, image: nginx}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db, namespace: {NAMESPACE}}}
spec:
  serviceName: db
  replicas: 3
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: db, image: postgres}}]
"""
KILLABLE = ("webhook", "sync", "agent", "ipam-endpoint", "controllers", "redis")
"""What the churn kills; ``agent`` is one node's agent, picked at random."""
RAFT_LEADERS = ("nb-leader", "sb-leader")
"""What ``--ha`` adds: the OVN NB or SB raft leader of the moment (and ``redis`` is then
the Redis primary of the moment)."""
BARE_PODS_MAX = 12


# ------------------------------------------------------------------ churn


@dataclass
class Tally:
    """What the churn did: actions by outcome, kills by victim, pods seen."""

    actions: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    uids: set[str] = field(default_factory=set)
    doubled: list[str] = field(default_factory=list)
    """Addresses given to a second pod while the first still existed, seen during churn."""

    async def on_event(self, event: kube.WatchEvent) -> None:
        objects = event.objects if isinstance(event, kube.Snapshot) else (event.obj,)
        self.uids.update(str(metadata(pod).get("uid")) for pod in objects)


def bare_pod(name: str, namespace: str = NAMESPACE, grace_s: int = 1,
             annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bare"},
                         "annotations": dict(annotations or {})},
            "spec": {"terminationGracePeriodSeconds": grace_s,
                     "containers": [{"name": "app", "image": "busybox"}]}}


class Churn:
    """One action at a time, chosen at random, as users and controllers would act."""

    def __init__(self, rest: Rest, chance: random.Random, tally: Tally) -> None:
        self.rest = rest
        self.chance = chance
        self.tally = tally
        self.serial = 0
        self.actions: dict[str, tuple[int, Callable[[], None]]] = {
            "create": (5, self.create_bare),
            "delete": (3, self.delete_bare),
            "delete-now": (1, self.delete_bare_now),
            "recreate": (2, self.recreate_same_name),
            "scale": (2, self.scale_web),
            "evict-web": (1, self.delete_web_pod),
            "delete-db": (2, self.delete_db_pod),
            "edit": (2, self.edit_annotation),
            "over-quota": (2, self.create_over_quota),
            "taken-ip": (1, self.create_on_taken_address),
        }

    def step(self) -> None:
        names = list(self.actions)
        weights = [self.actions[name][0] for name in names]
        name = self.chance.choices(names, weights)[0]
        try:
            self.actions[name][1]()
        except kube.KubeError as exc:
            self.tally.actions[f"{name}:{'refused' if exc.status else 'failed'}"] += 1
        else:
            self.tally.actions[f"{name}:ok"] += 1

    def _pods(self, label: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        return [pod for pod in self.rest.list("Pod", namespace, f"app={label}")
                if not metadata(pod).get("deletionTimestamp")]

    def _pick(self, label: str) -> str | None:
        pods = self._pods(label)
        return str(metadata(self.chance.choice(pods))["name"]) if pods else None

    def create_bare(self) -> None:
        if len(self._pods("bare")) >= BARE_PODS_MAX:
            self.delete_bare()
            return
        self.serial += 1
        self.rest.create(bare_pod(f"bare-{self.serial}", grace_s=self.chance.randint(0, 3)))

    def delete_bare(self) -> None:
        if name := self._pick("bare"):
            self.rest.delete("Pod", name, NAMESPACE)

    def delete_bare_now(self) -> None:
        if name := self._pick("bare"):
            self.rest.delete("Pod", name, NAMESPACE, grace_s=0)

    def recreate_same_name(self) -> None:
        if name := self._pick("bare"):
            self.rest.delete("Pod", name, NAMESPACE, grace_s=0)
            self.rest.create(bare_pod(name))

    def scale_web(self) -> None:
        self.rest.patch("Deployment", "web", {"spec": {"replicas": self.chance.randint(1, 6)}},
                        NAMESPACE)

    def delete_web_pod(self) -> None:
        if name := self._pick("web"):
            self.rest.delete("Pod", name, NAMESPACE)

    def delete_db_pod(self) -> None:
        self.rest.delete("Pod", f"db-{self.chance.randint(0, 2)}", NAMESPACE)

    def edit_annotation(self) -> None:
        """Point a pod's podnet-owned annotations elsewhere: the validating webhook
        refuses it, and while it is down the sync worker must keep the IPAM's truth."""
        pods = self._pods("bare") + self._pods("web")
        if not pods:
            return
        pod = self.chance.choice(pods)
        edit = self.chance.choice([
            {keys.IP_ADDRESS: f"10.82.{self.chance.randint(1, 250)}.{self.chance.randint(1, 250)}"},
            {keys.MAC_ADDRESS: "0a:58:0a:52:ff:ff 0.0.0.0/0"},
            {keys.LOGICAL_SWITCH: "ovn-default"},
        ])
        self.rest.patch("Pod", str(metadata(pod)["name"]),
                        {"metadata": {"annotations": edit}}, NAMESPACE)

    def create_over_quota(self) -> None:
        """A create the ResourceQuota refuses after podnet's webhook reserved."""
        present = self.rest.list("Pod", QUOTA_NAMESPACE)
        for index in range(QUOTA_PODS - len(present)):
            self.rest.create(bare_pod(f"quota-{uuid.uuid4().hex[:6]}-{index}", QUOTA_NAMESPACE))
        self.rest.create(bare_pod(f"over-{uuid.uuid4().hex[:6]}", QUOTA_NAMESPACE))

    def create_on_taken_address(self) -> None:
        pods = [p for p in self._pods("web") if (metadata(p).get("annotations") or {}).get(
            keys.IP_ADDRESS)]
        if not pods:
            return
        holder = self.chance.choice(pods)
        taken = metadata(holder)["annotations"][keys.IP_ADDRESS]
        squatter = self.rest.create(bare_pod(f"squat-{uuid.uuid4().hex[:6]}",
                                             annotations={keys.IP_ADDRESS: taken}))
        # Allowed only if the holder is gone meanwhile (scaled down, evicted): a holder
        # still there, terminating or not, means two pods with one address.
        still = self.rest.get("Pod", str(metadata(holder)["name"]), NAMESPACE)
        if still is not None and metadata(still).get("uid") == metadata(holder).get("uid"):
            self.tally.doubled.append(f"{taken}: {metadata(holder)['name']} and "
                                      f"{metadata(squatter)['name']}")


class Killer:
    """``kill -9`` one component every ``interval_s``; bring it back after a moment."""

    def __init__(self, settings: LabSettings, chance: random.Random, tally: Tally,
                 log: Path) -> None:
        self.settings = settings
        self.chance = chance
        self.tally = tally
        self.log = log
        self.nodes = [node.name for node in lab_nodes(settings)]

    def kill_one(self) -> None:
        victim = self.chance.choice(KILLABLE + (RAFT_LEADERS if self.settings.ha else ()))
        if victim in RAFT_LEADERS:
            self.kill_leader(victim)
            return
        name = f"agent-{self.chance.choice(self.nodes)}" if victim == "agent" else victim
        process = lab_processes(self.settings)[name]
        if name == "redis" and self.settings.ha:  # the primary of the moment
            process = self.settings.redis_group.primary_process() or process
            name = "redis-primary"
        pid = process.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # ours: started by this process's up()
        self.tally.kills[name] += 1

    def kill_leader(self, victim: str) -> None:
        central = self.settings.central()
        assert isinstance(central, RaftCentral)
        db = central.nb if victim == "nb-leader" else central.sb
        leader = db.leader()
        if leader is not None:
            db.kill(leader)
            self.tally.kills[victim] += 1

    def revive(self) -> list[str]:
        with self.log.open("a") as log, contextlib.redirect_stdout(log):
            return revive(self.settings)

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Kill on a schedule of its own: bringing a victim back does not delay the next."""
        next_kill = time.monotonic() + interval_s * self.chance.uniform(0.7, 1.3)
        while not stop.wait(max(0.0, next_kill - time.monotonic())):
            next_kill += interval_s * self.chance.uniform(0.7, 1.3)
            self.kill_one()
            time.sleep(self.chance.uniform(0.5, 3.0))
            for attempt in range(3):
                try:
                    self.revive()
                    break
                except Exception as exc:  # reported, then tried again
                    print(f"    revive failed ({exc}); again", flush=True)
                    time.sleep(1.0 + attempt)


# ------------------------------------------------------------------ checks


@dataclass
class Findings:
    """What is wrong right now; all zero (and every pod Running) is converged."""

    duplicates: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    nb_mismatch: list[str] = field(default_factory=list)
    double_bound: list[str] = field(default_factory=list)
    stale_sandboxes: list[str] = field(default_factory=list)
    not_running: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)

    def problems(self) -> dict[str, list[str]]:
        return {name: values for name, values in vars(self).items() if values}


def pod_addresses(pod: Mapping[str, Any]) -> tuple[list[str], str]:
    annotations = metadata(pod).get("annotations") or {}
    ips = [ip for ip in str(annotations.get(keys.IP_ADDRESS) or "").split(",") if ip]
    return ips, str(annotations.get(keys.MAC_ADDRESS) or "")


def duplicates(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    holders: dict[str, list[str]] = {}
    for pod in pods:
        ips, mac = pod_addresses(pod)
        for value in [*ips, mac]:
            if value:
                holders.setdefault(value, []).append(f"{pod_key(pod)}")
    return [f"{value}: {', '.join(names)}" for value, names in holders.items() if len(names) > 1]


def pod_key(pod: Mapping[str, Any]) -> str:
    return f"{metadata(pod).get('namespace')}/{metadata(pod).get('name')}"


async def ipam_records(settings: LabSettings) -> list[Any]:
    ipam = Ipam.connect(RedisSettings(url=settings.redis_url))
    try:
        return [record for spec in await ipam.subnets()
                async for record in ipam.all_allocations(spec.name)]
    finally:
        await ipam.close()


def nb_pod_ports(settings: LabSettings) -> dict[str, str]:
    """podnet's pod ports in NB: name -> addresses."""
    out = central_of(settings).nbctl(
        "--format=csv", "--data=bare", "--no-headings", "--columns=name,addresses",
        "find", "Logical_Switch_Port", 'external_ids:"podnet.io/kind"=pod')
    ports = {}
    for line in out.splitlines():
        name, _, addresses = line.partition(",")
        ports[name] = addresses.strip('"')
    return ports


def interface_claims(settings: LabSettings) -> Counter[str]:
    """How many OVS interfaces, on all nodes, claim each logical port."""
    claims: Counter[str] = Counter()
    central = central_of(settings)
    for node in lab_nodes(settings):
        out = node.ovs(central).vsctl("--bare", "--columns=external_ids", "list", "Interface")
        for line in out.splitlines():
            for pair in line.replace(",", " ").split():
                if pair.startswith("iface-id="):
                    claims[pair.split("=", 1)[1].strip('"')] += 1
    return claims


def sandboxes(prefix: str) -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout.split()
    return {name for name in listed if name.startswith(f"{prefix}-p-")}


def check_state(settings: LabSettings, rest: Rest, records: Sequence[Any]) -> Findings:
    found = Findings()
    pods = [pod for pod in rest.list("Pod") if not spec_of(pod).get("hostNetwork")]
    found.duplicates = duplicates(pods)
    by_uid = {str(metadata(pod).get("uid")): pod for pod in pods}
    bound = {record.uid: record for record in records if record.state == "bound"}
    found.leaked = [f"{r.owner} {r.ip_strings()} ({r.state})" for r in records
                    if (r.state == "bound" and r.uid not in by_uid) or r.state == "reserved"]
    ports = nb_pod_ports(settings)
    wanted = {}
    for uid, pod in by_uid.items():
        namespace, name = pod_key(pod).split("/")
        record = bound.get(uid)
        port = pod_port(name, namespace)
        if record is None:
            found.missing.append(f"{pod_key(pod)}: no bound IPAM record")
            continue
        wanted[port] = " ".join([record.mac, *record.ip_strings()])
        if port not in ports:
            found.missing.append(f"{pod_key(pod)}: no OVN port {port}")
        if not pod_ready(pod):
            found.not_running.append(pod_key(pod))
    found.nb_mismatch = [f"{name}: {addresses!r}, IPAM {wanted.get(name)!r}"
                         for name, addresses in ports.items() if wanted.get(name) != addresses]
    found.double_bound = [f"{port} x{count}" for port, count in
                          interface_claims(settings).items() if count > 1]
    live = {sandbox_name(settings.prefix, pod) for pod in pods}
    found.stale_sandboxes = sorted(sandboxes(settings.prefix) - live)
    return found


async def reachability(settings: LabSettings, rest: Rest) -> list[str]:
    """The Running pods that no pod on another node reaches over TCP."""
    hosts = [host for pod in rest.list("Pod") if not spec_of(pod).get("hostNetwork")
             and (host := pod_host(pod, lambda p: sandbox_name(settings.prefix, p)))]
    checks = []
    for index, target in enumerate(hosts):
        clients = [h for h in hosts if h.node != target.node] or [
            h for h in hosts if h != target]
        if clients:
            client = clients[index % len(clients)]
            checks.append(Check("soak", client, target.ip, CHECK_PORT, target.label,
                                (Listener(target, CHECK_PORT),)))
    results = await run_checks(checks)
    return [f"{result.destination} from {result.source}: {result.detail}"
            for result in results if not result.ok]


def converge(settings: LabSettings, rest: Rest, timeout_s: float) -> tuple[Findings, float]:
    """Inspect until everything holds (the last findings, and the seconds it took)."""
    started = time.monotonic()
    shown = ""
    while True:
        inspected = time.monotonic()
        try:
            findings = check_state(settings, rest, asyncio.run(ipam_records(settings)))
        except Exception as exc:  # a component may still be coming back
            findings = Findings(missing=[f"could not inspect: {exc}"])
        if not findings.problems():
            findings.unreachable = asyncio.run(reachability(settings, rest))
            if not findings.unreachable:
                return findings, inspected - started
        line = ", ".join(f"{name} {len(values)}" for name, values in findings.problems().items())
        if line != shown:
            print(f"    [{time.monotonic() - started:5.1f}s] {line}", flush=True)
            for name, values in findings.problems().items():
                print(f"        {name}: {'; '.join(values[:3])}", flush=True)
            shown = line
        if time.monotonic() - started > timeout_s:
            return findings, float("nan")
        time.sleep(1.0)


# ------------------------------------------------------------------ run


async def churn(settings: LabSettings, args: argparse.Namespace, tally: Tally) -> None:
    rest = Rest(kube.kube_client(settings.kubeconfig("admin")))
    chance = random.Random(args.seed)
    watcher = kube.Watcher(kube.lister(kube.kube_client(settings.kubeconfig("admin")), "Pod"),
                           "Pod", tally.on_event)
    watcher.start()
    await watcher.store.wait_synced()
    killer = Killer(settings, random.Random(args.seed + 1), tally,
                    settings.state_dir.parent / "revive.log")  # removed with the lab
    stop = threading.Event()
    kills = threading.Thread(target=killer.run, args=(args.kill_every, stop), daemon=True)
    kills.start()
    actions = Churn(rest, chance, tally)
    deadline = time.monotonic() + args.duration
    reported = time.monotonic()
    try:
        while time.monotonic() < deadline:
            await asyncio.to_thread(actions.step)
            await asyncio.sleep(chance.uniform(0.1, 0.6))
            if time.monotonic() - reported > 30:
                reported = time.monotonic()
                print(f"    {int(deadline - reported)}s left: {sum(tally.kills.values())} "
                      f"kills, {len(tally.uids)} pods seen", flush=True)
    finally:
        stop.set()
        await asyncio.to_thread(kills.join)
        await asyncio.to_thread(killer.revive)
        await watcher.stop()


def report(tally: Tally, findings: Findings, converge_s: float,
           args: argparse.Namespace) -> str:
    lines = ["actions: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.actions.items())),
             "kills: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.kills.items()))]
    for name, values in findings.problems().items():
        lines += [f"{name}: {value}" for value in values[:10]]
    lines += [f"doubled during the churn: {value}" for value in tally.doubled[:10]]
    result = {
        "kills": sum(tally.kills.values()), "pods_created": len(tally.uids),
        "duplicates": len(findings.duplicates) + len(tally.doubled),
        "leaked": len(findings.leaked),
        "missing": len(findings.missing), "nb_mismatch": len(findings.nb_mismatch),
        "unreachable": len(findings.unreachable), "converge_s": round(converge_s, 1),
        "double_bound": len(findings.double_bound),
        "stale_sandboxes": len(findings.stale_sandboxes),
        "not_running": len(findings.not_running), "duration_s": args.duration,
        "load_before": round(args.load_before, 2), "load_after": round(os.getloadavg()[0], 2),
    }
    lines.append("RESULT name=soak " + " ".join(f"{k}={v}" for k, v in result.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0,
                        help="seconds of churn (default 600)")
    parser.add_argument("--kill-every", type=float, default=17.0,
                        help="mean seconds between kills (default 17: about 34 in 10 min)")
    parser.add_argument("--nodes", type=int, default=2, help="simulated nodes (default 2)")
    parser.add_argument("--converge-timeout", type=float, default=180.0,
                        help="seconds to wait for everything to hold after the churn")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 120 s of churn, a kill every 10 s")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("--ha", action="store_true",
                        help="podnet up --ha; the NB and SB raft leaders are among the victims")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.kill_every = 120.0, 10.0
    if os.geteuid() != 0:
        print("bench/soak.py runs podnet up: run it as root", file=sys.stderr)
        return 2
    args.load_before = os.getloadavg()[0]
    print(f"==> podnet up ({args.nodes} nodes), then {args.duration:.0f}s of churn with a "
          f"kill -9 every ~{args.kill_every:.0f}s", flush=True)
    with bench_lab("soak", MANIFESTS, args.nodes, args.keep, wait_s=90.0,
                   ha=args.ha) as (settings, _):
        tally = Tally()
        asyncio.run(churn(settings, args, tally))
        print("==> churn over; waiting for everything to hold", flush=True)
        rest = Rest(kube.kube_client(settings.kubeconfig("admin")))
        findings, converge_s = converge(settings, rest, args.converge_timeout)
    print(report(tally, findings, converge_s, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
