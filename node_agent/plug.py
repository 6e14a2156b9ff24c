"""Netlink plumbing of a pod (the privileged part, like os-vif): veth, addresses, routes,
qdisc; each step idempotent, so a retried ADD and a repeated DEL both converge.

A netlink request is executed by the kernel inside the ``send`` call, under the global
RTNL lock, so it blocks its caller for as long as the kernel takes (milliseconds, tens of
them while other namespaces are being torn down). None of it may run on the agent's
event loop, or every concurrent ADD would wait behind the slowest one. So:

- the node's side runs on a few threads that entered the node's network namespace once,
  for good (:class:`NamespaceWorkers`), each with its own pyroute2 ``IPRoute``;
- a pod's side runs on a thread of its own that enters the pod's namespace, does the
  few calls of the ADD there with a socket of that namespace, and ends.

pyroute2 would reach a namespace by forking a helper process per socket, which costs far
more per pod. The veth is made with its pod end directly in the pod's namespace and
already named: moving a link between namespaces costs an RCU grace period (tens of
milliseconds). Checksum offload is switched off on each end through an ioctl socket of
its namespace; the userspace datapath needs it, or TCP fails while ping works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from node_agent import netns
from node_agent.network import Address, Interface
from node_agent.qos import Tbf

log = logging.getLogger(__name__)

T = TypeVar("T")
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17
IFF_UP = 0x1
IFA_F_NODAD = 0x02
TBF_HANDLE = 0x10000
NETLINK_TIMEOUT_S = 15.0
"""The longest one job of netlink calls may take before its caller gives up on it."""
RTPROT_PODNET = 112
"""Routes podnet installs carry this protocol number, so they can be found again."""
DEFAULT = {4: "0.0.0.0/0", 6: "::/0"}


class PlumbingError(RuntimeError):
    """A netlink or ioctl step failed; the message names the step and the interface."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NetlinkError):
        return f"{os.strerror(exc.code)} (netlink error {exc.code})"
    return str(exc)


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    try:
        yield
    except (NetlinkError, OSError) as exc:
        raise PlumbingError(f"{what}: {_describe(exc)}") from exc


def disable_tx_checksum(sock: socket.socket, device: str) -> None:
    """``ethtool -K <device> tx off`` through the ioctl, on ``sock``'s namespace."""
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
    request = struct.pack("16sP", device.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    with _step(f"turning TX checksum offload off on {device}"):
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)


class Rtnl:
    """Netlink and ioctl sockets of the calling thread's namespace; one thread uses it."""

    def __init__(self, namespace: str | None) -> None:
        self.namespace = namespace
        self.ipr = IPRoute(groups=0)
        self.ioctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def close(self) -> None:
        self.ipr.close()
        self.ioctl.close()

    @property
    def where(self) -> str:
        return f" in {self.namespace}" if self.namespace else ""

    def link(self, name: str) -> Any | None:
        try:
            links = self.ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise PlumbingError(f"looking up {name}: {_describe(exc)}") from exc
        return next(iter(links), None)

    def index(self, name: str) -> int | None:
        link = self.link(name)
        return int(link["index"]) if link is not None else None

    def require(self, name: str) -> int:
        index = self.index(name)
        if index is None:
            raise PlumbingError(f"interface {name} does not exist{self.where}")
        return index

    def delete(self, name: str) -> bool:
        """Delete a link if it exists (a veth takes its peer along); whether it did."""
        index = self.index(name)
        if index is None:
            return False
        try:
            self.ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise PlumbingError(f"deleting {name}: {_describe(exc)}") from exc
        return True

    def set_up(self, index: int, mtu: int | None = None, mac: str | None = None) -> None:
        options: dict[str, Any] = {"state": "up"}
        if mtu:
            options["mtu"] = mtu
        if mac:
            options["address"] = mac
        with _step(f"setting link {index} up"):
            self.ipr.link("set", index=index, **options)

    def ensure_address(self, index: int, address: Interface) -> None:
        flags = IFA_F_NODAD if address.version == 6 else 0
        try:
            self.ipr.addr("add", index=index, address=str(address.ip),
                          prefixlen=address.network.prefixlen, flags=flags)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise PlumbingError(f"adding {address}: {_describe(exc)}") from exc

    def addresses(self, index: int) -> set[str]:
        found = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            with _step(f"listing addresses of link {index}"):
                for message in self.ipr.addr("dump", family=family, index=index):
                    found.add(f"{message.get_attr('IFA_ADDRESS')}/{message['prefixlen']}")
        return found

    def replace_route(self, destination: str, gateway: Address | str, index: int,
                      table: int | None = None, proto: int | None = None) -> None:
        options: dict[str, Any] = {"dst": destination, "gateway": str(gateway), "oif": index}
        if table is not None:
            options["table"] = table
        if proto is not None:
            options["proto"] = proto
        with _step(f"route {destination} via {gateway}"):
            self.ipr.route("replace", **options)

    def routes(self, family: int, **match: Any) -> list[Any]:
        with _step("listing routes"):
            return list(self.ipr.route(
                "dump", family=socket.AF_INET if family == 4 else socket.AF_INET6, **match))

    def set_tbf(self, index: int, tbf: Tbf | None) -> None:
        """The root qdisc of link ``index``: ``tbf`` when given, the default otherwise."""
        if tbf is None:
            try:
                self.ipr.tc("del", index=index, handle=TBF_HANDLE, root=True)
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.EINVAL):
                    raise PlumbingError(f"removing the tbf qdisc: {_describe(exc)}") from exc
            return
        with _step(f"tbf qdisc at {tbf.rate_bps} bit/s"):
            self.ipr.tc("replace", "tbf", index=index, handle=TBF_HANDLE,
                        rate=tbf.rate_bps // 8, burst=tbf.burst_bytes,
                        latency=f"{tbf.latency_ms}ms")


async def _bounded(future: asyncio.Future[T], what: str, timeout_s: float) -> T:
    try:
        return await asyncio.wait_for(future, timeout_s)
    except TimeoutError:
        raise PlumbingError(f"{what}: netlink did not finish within {timeout_s:.0f}s") from None


class NamespaceWorkers:
    """Threads living in one network namespace (entered once, never left), each with its
    own :class:`Rtnl`; jobs run there without blocking the event loop."""

    def __init__(self, namespace: str | None, workers: int = 8,
                 timeout_s: float = NETLINK_TIMEOUT_S) -> None:
        self.namespace = namespace
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._opened: list[Rtnl] = []
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="netlink", initializer=self._enter)

    def _enter(self) -> None:
        if self.namespace is not None:
            netns.enter(self.namespace)

    def _rtnl(self) -> Rtnl:
        rtnl: Rtnl | None = getattr(self._local, "rtnl", None)
        if rtnl is None:
            rtnl = Rtnl(self.namespace)
            self._local.rtnl = rtnl
            with self._lock:
                self._opened.append(rtnl)
        return rtnl

    async def run(self, job: Callable[[Rtnl], T], what: str = "netlink") -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, lambda: job(self._rtnl()))
        return await _bounded(future, what, self.timeout_s)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for rtnl in self._opened:
                rtnl.close()
            self._opened.clear()


async def in_namespace(path: str, job: Callable[[Rtnl], T], what: str,
                       timeout_s: float = NETLINK_TIMEOUT_S) -> T:
    """``job`` on a thread of its own inside namespace ``path`` (a pod's)."""
    def work() -> T:
        rtnl = Rtnl(path)
        try:
            return job(rtnl)
        finally:
            rtnl.close()

    try:
        future = asyncio.ensure_future(netns.run_in_async(path, work))
        return await _bounded(future, what, timeout_s)
    except netns.NetnsGone as exc:
        raise PlumbingError(f"the pod's network namespace {path} does not exist") from exc


@dataclass(frozen=True)
class PodPlumbing:
    """Everything netlink needs to give a pod its interface."""

    host_ifname: str
    ifname: str
    netns: str
    mac: str
    addresses: tuple[Interface, ...]
    gateways: tuple[Address, ...]
    mtu: int
    tx_checksum_off: bool
    tbf: Tbf | None = None


def create_veth(host: Rtnl, plan: PodPlumbing) -> str:
    """The veth, made with its pod end already in the pod's namespace; the host end up.
    A leftover of an earlier attempt for the same container goes first. Returns the
    host end's MAC."""
    host.delete(plan.host_ifname)
    try:
        fd = os.open(plan.netns, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise PlumbingError(f"the pod's network namespace {plan.netns} does not exist") from exc
    try:
        host.ipr.link("add", ifname=plan.host_ifname, kind="veth", mtu=plan.mtu,
                      peer={"ifname": plan.ifname, "address": plan.mac, "mtu": plan.mtu,
                            "net_ns_fd": fd})
    except NetlinkError as exc:
        why = (f"{plan.ifname} already exists in the pod" if exc.code == errno.EEXIST
               else _describe(exc))
        raise PlumbingError(f"creating veth {plan.host_ifname}: {why}") from exc
    finally:
        os.close(fd)
    try:
        return _host_end_up(host, plan)
    except BaseException:
        host.delete(plan.host_ifname)
        raise


def _host_end_up(host: Rtnl, plan: PodPlumbing) -> str:
    if plan.tx_checksum_off:
        disable_tx_checksum(host.ioctl, plan.host_ifname)
    link = host.link(plan.host_ifname)
    if link is None:
        raise PlumbingError(f"veth {plan.host_ifname} vanished while being created")
    host.set_up(int(link["index"]))
    return str(link.get_attr("IFLA_ADDRESS"))


def configure_pod(pod: Rtnl, plan: PodPlumbing) -> None:
    """In the pod: checksum offload, addresses, link up, default routes, egress qdisc."""
    index = pod.require(plan.ifname)
    if plan.tx_checksum_off:
        disable_tx_checksum(pod.ioctl, plan.ifname)
    for address in plan.addresses:
        pod.ensure_address(index, address)
    pod.set_up(index, plan.mtu)
    for gateway in plan.gateways:
        pod.replace_route(DEFAULT[gateway.version], gateway, index)
    if plan.tbf is not None:
        pod.set_tbf(index, plan.tbf)


def inspect(pod: Rtnl, plan: PodPlumbing) -> list[str]:
    """What differs in the pod from ``plan`` (CHECK); empty when all is as it should be."""
    link = pod.link(plan.ifname)
    if link is None:
        return [f"{plan.ifname} does not exist in {plan.netns}"]
    index = int(link["index"])
    problems = _link_problems(link, plan)
    present = pod.addresses(index)
    problems += [f"{plan.ifname} lacks address {address}"
                 for address in plan.addresses if str(address) not in present]
    problems += _route_problems(pod, index, plan.gateways)
    return problems


def _link_problems(link: Any, plan: PodPlumbing) -> list[str]:
    problems = []
    mac = str(link.get_attr("IFLA_ADDRESS") or "").lower()
    if mac != plan.mac:
        problems.append(f"{plan.ifname} has MAC {mac}, not {plan.mac}")
    if not int(link["flags"]) & IFF_UP:
        problems.append(f"{plan.ifname} is down")
    mtu = link.get_attr("IFLA_MTU")
    if mtu != plan.mtu:
        problems.append(f"{plan.ifname} has MTU {mtu}, not {plan.mtu}")
    return problems


def _route_problems(pod: Rtnl, index: int, gateways: Sequence[Address]) -> list[str]:
    problems = []
    for gateway in gateways:
        defaults = {str(route.get_attr("RTA_GATEWAY")) for route in pod.routes(
            gateway.version, oif=index) if route["dst_len"] == 0}
        if str(gateway) not in defaults:
            problems.append(f"no default route via {gateway}")
    return problems


class Plumber:
    """Pods' plumbing: the node side on the node's namespace workers, the pod side on a
    thread in the pod's namespace."""

    def __init__(self, host: NamespaceWorkers) -> None:
        self.host = host

    @classmethod
    def open(cls, namespace: str | None) -> Plumber:
        return cls(NamespaceWorkers(namespace))

    def close(self) -> None:
        self.host.close()

    async def create_veth(self, plan: PodPlumbing) -> str:
        return await self.host.run(lambda host: create_veth(host, plan),
                                   f"creating veth {plan.host_ifname}")

    @staticmethod
    async def configure_pod(plan: PodPlumbing) -> None:
        await in_namespace(plan.netns, lambda pod: configure_pod(pod, plan),
                           f"configuring {plan.ifname} in {plan.netns}")

    async def unplug(self, host_ifname: str) -> bool:
        """Remove the pod's veth (both ends); whether there was one."""
        return await self.host.run(lambda host: host.delete(host_ifname),
                                   f"deleting {host_ifname}")

    async def link_up(self, name: str) -> bool:
        """Whether the node has link ``name`` and it is up."""
        def job(host: Rtnl) -> bool:
            link = host.link(name)
            return link is not None and bool(int(link["flags"]) & IFF_UP)

        return await self.host.run(job, f"looking up {name}")


async def set_pod_tbf(path: str, ifname: str, tbf: Tbf | None) -> None:
    """Change the egress shaping of a running pod (a rate annotation changed)."""
    await in_namespace(path, lambda pod: pod.set_tbf(pod.require(ifname), tbf),
                       f"shaping {ifname} in {path}")


async def inspect_pod(plan: PodPlumbing) -> list[str]:
    try:
        return await in_namespace(plan.netns, lambda pod: inspect(pod, plan),
                                  f"inspecting {plan.ifname} in {plan.netns}")
    except PlumbingError as exc:
        return [str(exc)]
