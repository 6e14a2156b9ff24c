"""``podnet agent`` as the process it is on a node: run inside the node's network
namespace (``ip netns exec NODE podnet agent --standalone ...``), reaching Redis and the
OVS database through unix sockets, serving ``podnet-cni``, and stopping cleanly on
SIGTERM with its socket removed and its pods left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ipam.records import allocation_annotations
from ipam.requests import ReserveRequest
from ipam.settings import RedisSettings
from ipam.store import Ipam
from node_agent.install import install_cni
from podnet.cli import build_parser
from podnet.daemons import RedisServer
from podnet.ovn import OvnCentral, OvsNode
from podnet_plumbing.kube import Store
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState
from podnet_sync.worker import KINDS, SyncSettings, SyncWorker
from tests.agent_harness import cni_env, in_netns, run
from tests.ovn_fixtures import netns_node, running_node, token
from tests.waiting import eventually

PODNET = str(Path(sys.executable).with_name("podnet"))


def test_agent_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["agent", "--help"])
    text = capsys.readouterr().out
    for option in ("--node-name", "--ovs-db", "--ovn-remote", "--encap-ip", "--socket",
                   "--redis", "--kubeconfig", "--in-cluster", "--standalone", "--netns",
                   "--install-cni"):
        assert option in text


@pytest.fixture
def central(tmp_path: Path) -> Iterator[OvnCentral]:
    with OvnCentral(tmp_path / "central") as started:
        yield started


@pytest.fixture
def node(tmp_path: Path, central: OvnCentral) -> Iterator[OvsNode]:
    with running_node(netns_node(tmp_path / "node", central, "node1")) as started:
        yield started


@pytest.fixture
def sockets() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="pn-cli-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def standalone_cluster(central: OvnCentral, redis: RedisServer, prefix: str
                             ) -> AsyncIterator[SyncWorker]:
    """The sync worker on objects given directly (no API server), as ``podnet up`` runs."""
    ipam = Ipam.connect(RedisSettings(url=redis.url, prefix=prefix))
    northbound = Northbound(await asyncio.to_thread(nb_api, central.nb_remote))
    stores = {kind: Store() for kind in KINDS}
    stores["Subnet"].replace([{"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                               "metadata": {"name": "apps"},
                               "spec": {"cidrBlock": "10.20.0.0/24"}}], "")
    stores["Node"].replace([{"apiVersion": "v1", "kind": "Node",
                             "metadata": {"name": "node1", "uid": "n1"}}], "")
    worker = SyncWorker(ipam, northbound, stores, SyncSettings(resync_interval_s=3600))
    try:
        await worker.step()
        yield worker
    finally:
        await asyncio.to_thread(northbound.reconcile, DesiredState())
        await asyncio.to_thread(close_api, northbound.api)
        await ipam.close()


async def admit(worker: SyncWorker, names: list[str]) -> None:
    spec = await worker.ipam.subnet("apps")
    objects: list[dict[str, Any]] = []
    for name in names:
        allocation = await worker.ipam.reserve("apps", f"tok-{name}", ReserveRequest(),
                                               namespace="default", name=name)
        objects.append({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": "default", "uid": f"uid-{name}",
            "annotations": allocation_annotations(allocation, spec)},
            "spec": {"nodeName": "node1"}, "status": {"phase": "Running"}})
    pods = worker.stores["Pod"]
    assert isinstance(pods, Store)
    pods.replace(objects, "")
    worker.mark("Pod", full=True)
    await worker.step()


def start_agent(node: OvsNode, socket: Path, redis: RedisServer, prefix: str
                ) -> subprocess.Popen[bytes]:
    assert node.netns is not None
    return subprocess.Popen(
        ["ip", "netns", "exec", node.netns, PODNET, "agent", "--standalone",
         "--node-name", "node1", "--ovs-db", node.db_remote, "--socket", str(socket),
         "--redis", redis.unix_url, "--prefix", prefix],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
async def test_the_agent_process_runs_in_the_node_namespace_and_stops_cleanly(
    central: OvnCentral, node: OvsNode, redis_server: RedisServer, sockets: Path,
    tmp_path: Path,
) -> None:
    prefix = f"cli{token()}:"
    socket = sockets / "cni.sock"
    plugin = install_cni(tmp_path / "bin")
    config = json.dumps({"cniVersion": "1.0.0", "name": "podnet", "socket": str(socket)})
    async with standalone_cluster(central, redis_server, prefix) as worker:
        await admit(worker, ["a", "b"])
        agent = start_agent(node, socket, redis_server, prefix)
        namespaces = [f"pnpod-{token()}" for _ in range(2)]
        try:
            async def ready() -> bool:
                code, _, _ = await run([str(plugin)], config.encode(), cni_env("STATUS"))
                return code == 0

            await eventually(ready, 60.0, "the agent ready")
            ips = []
            for name, namespace in zip(["a", "b"], namespaces, strict=True):
                await run(["ip", "netns", "add", namespace])
                code, out, _ = await run([str(plugin)], config.encode(), cni_env(
                    "ADD", container_id=f"c-{name}", netns=f"/run/netns/{namespace}",
                    args=f"K8S_POD_NAME={name}"))
                assert code == 0, out
                ips.append(json.loads(out)["ips"][0]["address"].split("/")[0])
            agent.send_signal(signal.SIGTERM)
            out_bytes, _ = await asyncio.to_thread(agent.communicate, timeout=30)
            assert agent.returncode == 0, out_bytes.decode()
            assert not socket.exists()
            await in_netns(namespaces[0], "ping", "-c", "2", "-W", "3", ips[1])
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
            for namespace in namespaces:
                await run(["ip", "netns", "delete", namespace])
