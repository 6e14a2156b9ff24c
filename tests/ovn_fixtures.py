"""Fixtures for tests on a real OVN: central daemons, chassis nodes, and pods as netns.

Nothing is faked: Debian's ovsdb-server, ovn-northd, ovs-vswitchd (userspace datapath)
and ovn-controller run in temporary directories and are stopped by PID. A test "pod" is
a network namespace with a veth into a node's ``br-int``; it stands in for what the node
agent will do, and is test and bench infrastructure only.

Nodes run in network namespaces of their own (unique names), so test runs side by side
never share a userspace datapath. A node in the current namespace takes
:func:`current_namespace_lock` first, as only one such OVS fits in a namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from podnet.ovn import (
    INTEGRATION_BRIDGE,
    OvnCentral,
    OvnError,
    OvsNode,
    delete_link,
    disable_tx_offload,
    in_netns,
    netns_add,
    netns_delete,
    run,
)
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState

CURRENT_NAMESPACE_LOCK = Path("/tmp/podnet-ovs-current-namespace.lock")
_encap_hosts = itertools.count(2)


def token() -> str:
    """A short random name part; names must stay unique across concurrent test runs."""
    return uuid.uuid4().hex[:8]


def unique_encap_ip() -> str:
    """A loopback address no other node of this test run uses as its tunnel endpoint.

    The southbound ``Encap`` table indexes (type, ip): two chassis of one central with
    the same encap address cannot both register.
    """
    n = next(_encap_hosts)
    return f"127.0.{n // 250}.{n % 250 + 2}"


@contextlib.contextmanager
def current_namespace_lock(timeout_s: float = 120.0) -> Iterator[None]:
    """Hold the machine-wide lock for running a userspace OVS in the current namespace."""
    with CURRENT_NAMESPACE_LOCK.open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def netns_node(directory: Path, central: OvnCentral, name: str = "node") -> OvsNode:
    """A node (not started) in a fresh network namespace of its own."""
    ident = token()
    return OvsNode(
        directory, name=name, system_id=f"{name}-{ident}", ovn_remote=central.sb_remote,
        encap_ip=unique_encap_ip(), netns=f"pnnode-{ident}",
    )


@contextlib.contextmanager
def running_node(node: OvsNode) -> Iterator[OvsNode]:
    """Start ``node``; on exit stop it and remove its chassis from the southbound DB."""
    try:
        yield node.start()
    finally:
        node.stop()
        with contextlib.suppress(OvnError):
            node.forget_chassis()


@dataclass
class NetnsPod:
    """A pod stand-in: network namespace ``netns`` whose ``eth0`` is plugged into a node."""

    node: OvsNode
    port: str
    """The logical switch port (``iface-id``) the pod is bound to."""
    netns: str
    host_dev: str
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    mac: str

    @property
    def ip(self) -> str:
        return str(self.address.ip)

    def pings(self, other: NetnsPod) -> bool:
        """Whether one ping from this pod to ``other`` is answered within a second."""
        try:
            self.exec("ping", "-c", "1", "-W", "1", other.ip, timeout_s=5)
        except OvnError:
            return False
        return True

    def exec(self, *argv: str, timeout_s: float = 30.0) -> str:
        return run(argv, netns=self.netns, timeout_s=timeout_s)

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            in_netns(self.netns, argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )

    def cleanup(self) -> None:
        """Remove the OVS port, the veth and the namespace; each whether or not it exists."""
        with contextlib.suppress(OvnError):
            self.node.vsctl("--if-exists", "del-port", INTEGRATION_BRIDGE, self.host_dev)
        with contextlib.suppress(OvnError):
            delete_link(self.host_dev, self.node.netns)
        netns_delete(self.netns)


def plug_pod(
    node: OvsNode, name: str, ip_cidr: str, mac: str, gateway: str | None = None,
    mtu: int = 1400,
) -> NetnsPod:
    """Create netns + veth for logical port ``name`` and add the host end to br-int."""
    ident = token()
    pod = NetnsPod(node, name, f"pnpod-{ident}", f"pnv{ident}",
                   ipaddress.ip_interface(ip_cidr), mac)
    netns_add(pod.netns)
    try:
        node.exec("ip", "link", "add", pod.host_dev, "type", "veth",
                  "peer", "name", "eth0", "netns", pod.netns)
        _configure_pod_end(pod, gateway, mtu)
        node.exec("ip", "link", "set", pod.host_dev, "mtu", str(mtu), "up")
        disable_tx_offload(pod.host_dev, node.netns)
        node.vsctl("add-port", INTEGRATION_BRIDGE, pod.host_dev, "--", "set", "Interface",
                   pod.host_dev, f"external_ids:iface-id={name}")
    except BaseException:
        pod.cleanup()
        raise
    return pod


def _configure_pod_end(pod: NetnsPod, gateway: str | None, mtu: int) -> None:
    pod.exec("ip", "link", "set", "eth0", "address", pod.mac, "mtu", str(mtu))
    pod.exec("ip", "addr", "add", str(pod.address), "dev", "eth0")
    pod.exec("ip", "link", "set", "eth0", "up")
    if gateway:
        pod.exec("ip", "route", "add", "default", "via", gateway, "dev", "eth0")
    disable_tx_offload("eth0", pod.netns)


@contextlib.contextmanager
def netns_pod(
    node: OvsNode, name: str, ip_cidr: str, mac: str, gateway: str | None = None,
    mtu: int = 1400,
) -> Iterator[NetnsPod]:
    """A plugged pod for the ``with`` block, removed (netns, veth, OVS port) afterwards."""
    pod = plug_pod(node, name, ip_cidr, mac, gateway, mtu)
    try:
        yield pod
    finally:
        pod.cleanup()


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ovn_central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnCentral]:
    """NB + SB ovsdb-servers and ovn-northd shared by the session (use unique names)."""
    central = OvnCentral(tmp_path_factory.mktemp("ovn-central"))
    try:
        yield central.start()
    finally:
        central.stop()


@pytest.fixture(scope="session")
def ovs_node(
    tmp_path_factory: pytest.TempPathFactory, ovn_central: OvnCentral
) -> Iterator[OvsNode]:
    """A chassis in a network namespace of its own, shared by the session."""
    node = netns_node(tmp_path_factory.mktemp("ovs-node"), ovn_central)
    with running_node(node):
        yield node


@pytest.fixture
def logical_switch(ovn_central: OvnCentral) -> Iterator[str]:
    """A fresh logical switch, deleted (with its ports) after the test."""
    name = f"ls-{token()}"
    ovn_central.nbctl("ls-add", name)
    yield name
    ovn_central.nbctl("--if-exists", "ls-del", name)


PodFactory = Callable[..., NetnsPod]


@pytest.fixture
def make_pod() -> Iterator[PodFactory]:
    """``make_pod(node, name, ip_cidr, mac, gateway=None)``; every pod is removed after."""
    pods: list[NetnsPod] = []

    def make(node: OvsNode, name: str, ip_cidr: str, mac: str,
             gateway: str | None = None) -> NetnsPod:
        pod = plug_pod(node, name, ip_cidr, mac, gateway)
        pods.append(pod)
        return pod

    yield make
    for pod in reversed(pods):
        pod.cleanup()


@contextlib.contextmanager
def nb_writer(central: OvnCentral) -> Iterator[Northbound]:
    """The sync worker's NB writer on ``central``; on the way out it reconciles an empty
    desired state, which removes every row podnet owns (and nothing else)."""
    api = nb_api(central.nb_remote)
    writer = Northbound(api)
    try:
        yield writer
        writer.reconcile(DesiredState())
    finally:
        close_api(api)
