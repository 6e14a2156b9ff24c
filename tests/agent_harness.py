"""A whole podnet node stack for end-to-end tests of the agent and ``podnet-cni``.

Real pieces only: a local Kubernetes API (the test fixture of ``tests.kube_api``), a
real Redis IPAM, a real OVN (NB/SB and northd of this module's own, so no other test's
rows are touched), the real sync worker in-process, and per node an OVS + ovn-controller
in a network namespace with the real agent serving CNI for it. Pods are network
namespaces attached by running the ``podnet-cni`` launcher exactly as a runtime would
(environment, configuration on stdin), and admitted with the annotations the webhook
writes (``ipam.records.allocation_annotations``).

Every namespace, veth, port and daemon made here is removed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubernetes import client

from ipam.records import allocation_annotations
from ipam.requests import ReserveRequest
from ipam.settings import RedisSettings
from ipam.store import Ipam
from node_agent.agent import Agent, AgentSettings
from node_agent.install import install_cni
from node_agent.pods import KubePods
from podnet.ovn import OvnCentral, OvnError, OvsNode, Underlay, netns_delete
from podnet_plumbing import kube
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.main import kube_watchers, marking
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState
from podnet_sync.worker import KINDS, SyncSettings, SyncWorker
from tests.kube_api import KubeApi
from tests.ovn_fixtures import netns_node, token
from tests.waiting import cancelled, eventually

FAST = kube.WatchSettings(backoff=kube.BackoffSettings(initial_s=0.05, max_s=0.2),
                          stop_timeout_s=2.0)
NETWORK = "podnet"


@dataclass
class CniOutcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def answer(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.stdout) if self.stdout.strip() else {}
        return value


async def run(argv: list[str], stdin: bytes = b"", env: Mapping[str, str] | None = None,
              timeout_s: float = 60.0) -> tuple[int, str, str]:
    """A command, without blocking the event loop the agent and sync worker run on."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None)
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate(stdin)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def in_netns(netns: str, *argv: str, timeout_s: float = 60.0, check: bool = True) -> str:
    code, out, err = await run(["ip", "netns", "exec", netns, *argv], timeout_s=timeout_s)
    if check and code != 0:
        raise AssertionError(f"{' '.join(argv)} in {netns} exited {code}: {err.strip()}")
    return out


def cni_env(command: str, *, container_id: str = "", netns: str = "", ifname: str = "eth0",
            args: str = "") -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "CNI_COMMAND": command, "CNI_PATH": "/usr/lib/cni"}
    for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns),
                       ("CNI_IFNAME", ifname), ("CNI_ARGS", args)):
        if value:
            env[key] = value
    return env


@dataclass
class LabNode:
    name: str
    ovs: OvsNode
    socket: str
    agent: Agent | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def netns(self) -> str:
        assert self.ovs.netns is not None
        return self.ovs.netns

    def config(self, **extra: Any) -> dict[str, Any]:
        """The CNI network configuration a runtime on this node would pass."""
        return {"cniVersion": "1.0.0", "name": NETWORK, "type": "podnet-cni",
                "socket": self.socket, **extra}

    async def exec(self, *argv: str, check: bool = True) -> str:
        return await in_netns(self.netns, *argv, check=check)

    def vsctl(self, *args: str) -> str:
        return self.ovs.vsctl(*args)


@dataclass
class Sandbox:
    """A network namespace a test runs programs in."""

    netns: str

    @property
    def ip(self) -> str:
        raise NotImplementedError

    async def exec(self, *argv: str, check: bool = True, timeout_s: float = 60.0) -> str:
        return await in_netns(self.netns, *argv, check=check, timeout_s=timeout_s)

    async def popen(self, *argv: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.netns, *argv, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@dataclass
class External(Sandbox):
    """A host outside the cluster, wired to one node by a veth."""

    address: str = ""

    @property
    def ip(self) -> str:
        return self.address


@dataclass
class LabPod(Sandbox):
    name: str = ""
    namespace: str = "default"
    node: LabNode | None = None
    container_id: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    uid: str = ""

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    @property
    def ips(self) -> list[str]:
        return [str(ipaddress.ip_interface(entry["address"]).ip)
                for entry in self.result.get("ips", [])]

    @property
    def ip(self) -> str:
        return self.ips[0]

    @property
    def host_ifname(self) -> str:
        return str(self.result["interfaces"][0]["name"])

    @property
    def args(self) -> str:
        args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={self.namespace};K8S_POD_NAME={self.name}"
        return f"{args};K8S_POD_UID={self.uid}" if self.uid else args

    @property
    def on(self) -> LabNode:
        assert self.node is not None
        return self.node


class Lab:
    """One cluster: API, IPAM, OVN, sync worker, and nodes with agents."""

    def __init__(self, api: KubeApi, api_client: client.ApiClient, ipam: Ipam,
                 central: OvnCentral, worker: SyncWorker, directory: Path,
                 sockets: Path, plugin: Path) -> None:
        self.api = api
        self.api_client = api_client
        self.ipam = ipam
        self.central = central
        self.worker = worker
        self.directory = directory
        self.sockets = sockets
        self.plugin = plugin
        self.nodes: dict[str, LabNode] = {}
        self.pods: list[LabPod] = []
        self.underlay: Underlay | None = None
        self._netns: list[str] = []

    # ------------------------------------------------------------ topology

    async def subnet(self, name: str, cidr: str, **spec: Any) -> None:
        """A Subnet object; returns once the IPAM has registered it."""
        self.api.create({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                         "metadata": {"name": name}, "spec": {"cidrBlock": cidr, **spec}})
        self.worker.mark("Subnet", full=True)

        async def registered() -> bool:
            return name in await self.ipam.subnet_names()

        await eventually(registered, what=f"subnet {name} registered")

    def node_object(self, name: str, address: str = "") -> None:
        status = {"addresses": [{"type": "InternalIP", "address": address}]} if address else {}
        self.api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                         "status": status})

    async def add_node(self, name: str, start_agent: bool = True,
                       underlay_ip: str | None = None, **settings: Any) -> LabNode:
        """A node; with ``underlay_ip`` (an address in 172.31.x.0/24) it tunnels to the
        other nodes of the lab over a shared underlay, else it only has loopback."""
        ovs = netns_node(self.directory / f"node-{name}-{token()}", self.central, name)
        if underlay_ip:
            ovs.encap_ip = underlay_ip.split("/")[0]
        await asyncio.to_thread(ovs.start)
        socket_dir = self.sockets / name
        node = LabNode(name, ovs, str(socket_dir / "cni.sock"))
        if underlay_ip:
            if self.underlay is None:
                self.underlay = Underlay(f"pnul{token()[:6]}").create()
            await asyncio.to_thread(self.underlay.attach, ovs, underlay_ip)
        self.nodes[name] = node
        self.node_object(name)
        self.worker.mark("Node", full=True)
        node.overrides = settings
        if start_agent:
            await self.start_agent(node)
        return node

    def settings(self, node: LabNode) -> AgentSettings:
        assert node.ovs.netns is not None
        return replace(AgentSettings(
            node_name=node.name, ovs_db=node.ovs.db_remote, socket_path=node.socket,
            netns=f"/run/netns/{node.ovs.netns}", ovn_remote=node.ovs.ovn_remote,
            encap_ip=node.ovs.encap_ip, system_id=node.ovs.system_id, pod_timeout_s=15.0,
            install_timeout_s=15.0, gateway_interval_s=0.5,
        ), **node.overrides)

    async def start_agent(self, node: LabNode) -> Agent:
        pods = KubePods(self.api_client, node.name, FAST)
        agent = Agent(self.settings(node), pods, self.ipam, self.api_client)
        await agent.__aenter__()
        node.agent = agent
        return agent

    async def stop_agent(self, node: LabNode) -> None:
        if node.agent is not None:
            await node.agent.__aexit__()
            node.agent = None

    async def node_ready(self, node: LabNode) -> None:
        await eventually(lambda: node.agent is not None and node.agent.ready, 30.0,
                         f"node {node.name} ready")

    # ------------------------------------------------------------------ pods

    async def admit(self, name: str, subnet: str, node: str, namespace: str = "default",
                    annotations: Mapping[str, str] | None = None,
                    labels: Mapping[str, str] | None = None, **request: Any
                    ) -> dict[str, Any]:
        """What the webhook does, then the scheduler: reserve, store the pod annotated."""
        reservation = f"tok-{name}-{uuid.uuid4().hex[:6]}"
        allocation = await self.ipam.reserve(subnet, reservation, ReserveRequest(**request),
                                             namespace=namespace, name=name)
        spec = await self.ipam.subnet(subnet)
        return self.api.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {}),
                         "annotations": {**allocation_annotations(allocation, spec),
                                         **(annotations or {})}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running"},
        }, namespace)

    async def netns(self) -> str:
        name = f"pnpod-{token()}"
        await run(["ip", "netns", "add", name])
        self._netns.append(name)
        await in_netns(name, "ip", "link", "set", "lo", "up")
        return name

    async def cni(self, node: LabNode, command: str, *, config: Mapping[str, Any] | None = None,
                  stdin: bytes | None = None, **env: str) -> CniOutcome:
        body = stdin if stdin is not None else json.dumps(config or node.config()).encode()
        code, out, err = await run([str(self.plugin)], body, cni_env(command, **env))
        return CniOutcome(code, out, err)

    async def attach(self, node: LabNode, name: str, namespace: str = "default",
                     config: Mapping[str, Any] | None = None) -> LabPod:
        """A sandbox for an admitted pod, set up by ``podnet-cni ADD``."""
        stored = [p for p in self.api.objects("Pod", namespace) if p["metadata"]["name"] == name]
        uid = str(stored[0]["metadata"]["uid"]) if stored else ""  # not stored yet: no UID
        pod = LabPod(await self.netns(), name, namespace, node, f"c{uuid.uuid4().hex[:16]}",
                     uid=uid)
        outcome = await self.cni(node, "ADD", config=config, container_id=pod.container_id,
                                 netns=pod.netns_path, args=pod.args)
        assert outcome.returncode == 0, f"ADD failed: {outcome.stdout} {outcome.stderr}"
        pod.result = outcome.answer
        self.pods.append(pod)
        return pod

    async def pod(self, name: str, subnet: str, node: LabNode, namespace: str = "default",
                  annotations: Mapping[str, str] | None = None,
                  labels: Mapping[str, str] | None = None, **request: Any) -> LabPod:
        await self.admit(name, subnet, node.name, namespace, annotations, labels, **request)
        return await self.attach(node, name, namespace)

    async def detach(self, pod: LabPod) -> CniOutcome:
        return await self.cni(pod.on, "DEL", container_id=pod.container_id,
                              netns=pod.netns_path, args=pod.args)

    async def external(self, node: LabNode, node_address: str, address: str,
                       extra: str = "203.0.113.10") -> External:
        """A host wired to ``node``: ``node_address`` on the node's end, ``address`` on its
        own, and ``extra`` on its loopback, reachable only through the node's default
        route (which points at this host)."""
        host = External(await self.netns(), extra)
        link = f"pnx{token()[:8]}"
        await run(["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0",
                   "netns", host.netns])
        await run(["ip", "link", "set", link, "netns", node.netns])
        await node.exec("ip", "addr", "add", node_address, "dev", link)
        await node.exec("ip", "link", "set", link, "up")
        await host.exec("ip", "addr", "add", address, "dev", "eth0")
        await host.exec("ip", "link", "set", "eth0", "up")
        await host.exec("ip", "addr", "add", f"{extra}/32", "dev", "lo")
        gateway = address.split("/", maxsplit=1)[0]
        await node.exec("ip", "route", "replace", "default", "via", gateway)
        return host

    # --------------------------------------------------------------- cleanup

    async def close(self) -> None:
        for pod in self.pods:
            with contextlib.suppress(Exception):
                await self.detach(pod)
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                await self.stop_agent(node)
        for name in self._netns:
            await asyncio.to_thread(netns_delete, name)
        for node in self.nodes.values():
            await asyncio.to_thread(node.ovs.stop, 5.0, True)
            with contextlib.suppress(OvnError):
                await asyncio.to_thread(node.ovs.forget_chassis)
        if self.underlay is not None:
            await asyncio.to_thread(self.underlay.delete)


@contextlib.asynccontextmanager
async def lab(tmp: Path, redis_url: str) -> AsyncIterator[Lab]:
    """A lab with a fresh OVN, API and IPAM prefix; nodes are added by the test."""
    sockets = Path(tempfile.mkdtemp(prefix="pn-", dir="/tmp"))
    central = OvnCentral(tmp / "central")
    await asyncio.to_thread(central.start)
    ipam = Ipam.connect(RedisSettings(url=redis_url, prefix=f"e{uuid.uuid4().hex[:10]}:"))
    northbound = Northbound(await asyncio.to_thread(nb_api, central.nb_remote))
    try:
        with KubeApi() as api, api.client() as api_client:
            core = client.CoreV1Api(api_client)

            async def patch(namespace: str, name: str, values: Mapping[str, str]) -> object:
                return await kube.patch_pod_annotations(core, namespace, name, values)

            stores = {kind: kube.Store() for kind in KINDS}
            worker = SyncWorker(ipam, northbound, stores,
                                SyncSettings(resync_interval_s=3600, release_grace_s=0),
                                patch_pod=patch)
            async with kube_watchers(api_client, stores, marking(worker), FAST) as watchers:
                for watcher in watchers:
                    await watcher.store.wait_synced(5)
                await worker.step()
                runner = asyncio.create_task(worker.run())
                the_lab = Lab(api, api_client, ipam, central, worker, tmp, sockets,
                              install_cni(tmp / "cni-bin"))
                try:
                    yield the_lab
                finally:
                    await the_lab.close()
                    await cancelled(runner)
    finally:
        await asyncio.to_thread(northbound.reconcile, DesiredState())
        await asyncio.to_thread(close_api, northbound.api)
        await ipam.close()
        await asyncio.to_thread(central.stop)
        shutil.rmtree(sockets, ignore_errors=True)


Probe = Callable[[], Awaitable[bool]]


async def tcp_server(pod: Sandbox, port: int, reply: str) -> asyncio.subprocess.Process:
    """A TCP server in the pod answering every connection with ``reply`` and the
    client's address; returns once it listens."""
    script = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "s.bind((sys.argv[1],int(sys.argv[2])));s.listen(64)\n"
        "print('listening',flush=True)\n"
        "while True:\n"
        "    c,a=s.accept()\n"
        "    data=c.recv(1024)\n"
        "    c.sendall((sys.argv[3]+' '+a[0]+' ').encode()+data)\n"
        "    c.close()\n"
    )
    process = await pod.popen("python3", "-c", script, "::" if ":" in pod.ip else "0.0.0.0",
                              str(port), reply)
    assert process.stdout is not None
    async with asyncio.timeout(10):
        line = await process.stdout.readline()
    assert line.startswith(b"listening"), line
    return process


async def tcp_request(pod: Sandbox, ip: str, port: int, message: str = "ping",
                      timeout_s: float = 5.0) -> str:
    """Connect from the pod, send ``message``, return the answer ('' when it fails)."""
    script = (
        "import socket,sys\n"
        "try:\n"
        "    t=float(sys.argv[4])\n"
        "    c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=t)\n"
        "    c.sendall(sys.argv[3].encode());print(c.recv(1024).decode(),end='')\n"
        "except OSError as e:\n"
        "    print('',end='')\n"
    )
    return await pod.exec("python3", "-c", script, ip, str(port), message, str(timeout_s),
                          check=False, timeout_s=timeout_s + 10)


async def pings(pod: Sandbox, ip: str, count: int = 2, timeout_s: int = 5) -> bool:
    code, _, _ = await run(["ip", "netns", "exec", pod.netns, "ping", "-c", str(count), "-i",
                            "0.2", "-W", str(timeout_s), ip], timeout_s=timeout_s + 10)
    return code == 0


async def stop(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()
