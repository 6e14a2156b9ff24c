"""End to end with a real container runtime: podman (CNI backend) runs a container on
podnet, and the container gets its admitted address and traffic.

Podman finds ``podnet-cni`` (the launcher) in its plugin directories and calls it as any
runtime would, with ``CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=<container name>`` and no
namespace, so the pod is ``default/<name>``; it calls DEL when the container stops.
Everything podman keeps (storage, run state, configuration) lives in the test's
directory. Skipped, saying why, where podman or runc is not installed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from podnet.daemons import RedisServer
from tests.agent_harness import Lab, lab, run
from tests.waiting import eventually

pytestmark = pytest.mark.slow
NETWORK = "podnet-podman"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ip", "ping", "cat", "sleep")


def missing_tools() -> str:
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman runc)"
    if not BUSYBOX.exists():
        return "busybox-static is not installed (the test image is built from it)"
    return ""


@pytest.fixture
async def cluster(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Lab]:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    async with lab(tmp_path, redis_server.url) as the_lab:
        await the_lab.subnet("apps", "10.20.0.0/24")
        yield the_lab


class Podman:
    """podman with its state, configuration and CNI networks in one directory."""

    def __init__(self, directory: Path, plugin_dir: Path) -> None:
        self.directory = directory
        self.conf = directory / "containers.conf"
        self.networks = directory / "net.d"
        self.networks.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{plugin_dir}", "/usr/lib/cni"]\n'
            f'network_config_dir = "{self.networks}"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'runtime = "runc"\n'
        )

    async def __call__(self, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        argv = ["podman", "--root", str(self.directory / "root"),
                "--runroot", str(self.directory / "run"), "--storage-driver", "vfs",
                "--cgroup-manager", "cgroupfs", "--runtime", "runc", *args]
        env = {"CONTAINERS_CONF": str(self.conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        return await run(argv, stdin, env=env, timeout_s=120)

    async def import_busybox(self, name: str) -> None:
        image = self.directory / "busybox.tar"
        with tarfile.open(image, "w") as tar:
            tar.add(BUSYBOX, "bin/busybox")
            for applet in APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        code, _, err = await self("import", str(image), name)
        if code != 0:
            pytest.skip(f"podman cannot import an image here: {err.strip()}")


@pytest.fixture
def podman_dir() -> Iterator[Path]:
    """A short path: podman refuses a run root longer than 50 characters."""
    directory = Path(tempfile.mkdtemp(prefix="pnpm-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def test_podman_runs_a_container_on_podnet_with_its_address_and_traffic(
    cluster: Lab, podman_dir: Path,
) -> None:
    node = await cluster.add_node("node1")
    peer = await cluster.pod("peer", "apps", node)
    podman = Podman(podman_dir, cluster.plugin.parent)
    (podman.networks / f"{NETWORK}.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": NETWORK,
        "plugins": [{"type": "podnet-cni", "socket": node.socket}]}))
    await podman.import_busybox("podnet-busybox")
    pod = await cluster.admit("boxed", "apps", node.name)
    address = pod["metadata"]["annotations"]["ovn.kubernetes.io/ip_address"]

    code, out, err = await podman(
        "run", "--rm", "--name", "boxed", "--network", NETWORK, "podnet-busybox",
        "sh", "-c", f"ip -o -4 addr show eth0; ping -c 3 -W 3 {peer.ip}")

    assert code == 0, f"{out}\n{err}"
    assert f"inet {address}/24" in out
    assert "3 packets received" in out

    async def port_removed() -> bool:
        await asyncio.sleep(0)
        ports = node.vsctl("--bare", "--columns=name", "find", "Interface",
                           "external_ids:podnet.io/pod=default/boxed")
        return not ports.strip()

    await eventually(port_removed, 10.0, "the container's port removed by podman's DEL")
