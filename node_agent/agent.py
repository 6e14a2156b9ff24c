"""The node agent: CNI ADD, DEL, CHECK, STATUS and GC; node bootstrap; live QoS; the
reconcile that makes a restart harmless.

It holds what must outlive a single CNI call: the OVSDB connection (with its
``ovn-installed`` notifications), the node's netlink socket, the pod informer (or the
IPAM standalone). Which pod ports exist is recorded in OVSDB itself (the ports'
``external_ids``), so a restarted agent knows every pod it attached without any state
file: at start it removes the ports of pods that are gone and applies every other pod's
QoS again, and touches nothing else of a running pod.

An ADD, in order: wait (bounded) until the pod is allocated and routed; make the veth
and move its pod end into the pod; add the host end to ``br-int`` (with the QoS) while
the pod end gets its addresses, routes and qdisc; wait for ``ovn-installed``; answer the
CNI result. DEL and CHECK are idempotent and need nothing but the container id. A failed
ADD is also told on the pod, as a Warning Event, when the agent has the Kubernetes API
(``node_agent.events``: never in the way of the CNI answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from ipam import errors as ipam_errors
from ipam.store import Ipam
from node_agent import bootstrap, errors, netconf, netns, ovs, plug
from node_agent.events import (
    FAILED_ATTACH,
    EventRecorder,
    EventSettings,
    attach_failure,
    kube_sender,
)
from node_agent.gateway import JOIN_INTERFACE, GatewayPlan, plan_gateway
from node_agent.netconf import CniCall, PodRef
from node_agent.network import (
    InvalidPodNetwork,
    PodNetwork,
    host_interface_name,
)
from node_agent.pods import PodSource
from node_agent.qos import Bandwidth, Datapath, QosPlan, plan_qos
from node_agent.result import Plugged, build_result
from node_agent.routing import Routing
from node_agent.server import CniServer

if TYPE_CHECKING:
    from node_agent.protocol import Request

log = logging.getLogger(__name__)

DEFAULT_OVS_DB = "unix:/var/run/openvswitch/db.sock"
DEFAULT_MTU = 1400
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AgentSettings:
    node_name: str
    ovs_db: str = DEFAULT_OVS_DB
    socket_path: str = "/run/podnet/cni.sock"
    netns: str | None = None
    """The node's network namespace (a path); None: the namespace the agent runs in."""
    bridge: str = "br-int"
    datapath: Literal["auto", "system", "netdev"] = "auto"
    mtu: int = DEFAULT_MTU
    ovn_remote: str | None = None
    encap_ip: str | None = None
    encap_type: str = "geneve"
    system_id: str | None = None
    pod_timeout_s: float = 30.0
    """How long an ADD waits for its pod to be allocated and routed."""
    install_timeout_s: float = 30.0
    """How long an ADD waits for ovn-controller to install the port."""
    gateway_interval_s: float = 10.0
    """How often the subnets are re-read for routes, SNAT and policy routing."""
    reconcile_interval_s: float = 10.0
    """How often the node's pod ports are checked against the live pods (by UID): a
    port whose pod is gone (a DEL that never came) is removed."""
    join_interface: str = JOIN_INTERFACE
    events: EventSettings = field(default_factory=EventSettings)
    """How failed attaches become Events on their pods (with the Kubernetes API only)."""


@dataclass
class Attached:
    """A pod interface this agent plumbed (rebuilt from OVSDB after a restart)."""

    host_ifname: str
    container_id: str
    ifname: str
    netns: str
    pod: PodRef
    bandwidth: Bandwidth = field(default_factory=Bandwidth)
    """The limits applied now."""
    runtime_bandwidth: Bandwidth = field(default_factory=Bandwidth)
    """The runtime's ``bandwidth`` capability at ADD: the limits when the pod has none."""


class KeyedLocks:
    """One lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def _chain(exc: Exception) -> errors.CniError:
    """The CNI error for a failure of one of the agent's adapters."""
    if isinstance(exc, errors.CniError):
        return exc
    if isinstance(exc, plug.PlumbingError):
        return errors.PlumbingFailed(f"podnet: {exc}")
    if isinstance(exc, ovs.OvsError):
        return errors.OvsFailed(f"podnet: {exc}")
    if isinstance(exc, InvalidPodNetwork):
        return errors.BadPodAnnotations(f"podnet: {exc}")
    if isinstance(exc, ipam_errors.IpamError):
        return errors.TryAgainLater(f"podnet: the IPAM is unavailable: {exc}")
    raise exc


@contextlib.contextmanager
def _as_cni_error() -> Any:
    try:
        yield
    except (plug.PlumbingError, ovs.OvsError, InvalidPodNetwork,
            ipam_errors.IpamError) as exc:
        raise _chain(exc) from exc


class Agent:
    def __init__(self, settings: AgentSettings, pods: PodSource, ipam: Ipam | None = None,
                 kube_api: Any = None) -> None:
        self.settings = settings
        self.pods = pods
        self.ipam = ipam
        self.kube_api = kube_api
        self.events = None if kube_api is None else EventRecorder(
            kube_sender(kube_api, pods.uid), settings.events)
        """Records failed attaches on their pods; None without the Kubernetes API."""
        self.ovs = ovs.Ovs(settings.ovs_db)
        self.plumber: plug.Plumber | None = None
        self.routing: Routing | None = None
        self.server = CniServer(settings.socket_path, self.handle)
        self.datapath: Datapath = "netdev"
        self.attached: dict[str, Attached] = {}
        self.ready = False
        self.not_ready_reason = "the node is not bootstrapped yet"
        self.gateway_plan: GatewayPlan | None = None
        self._locks = KeyedLocks()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Connect, set up the bridge, reconcile, and serve CNI; the join port, routes
        and gateway follow in the background (STATUS says when the node is ready)."""
        self.plumber = plug.Plumber.open(self.settings.netns)
        await self.ovs.start()
        self.datapath = await self._configure_ovs()
        await self.pods.start()
        self.pods.on_change = self._pod_changed
        await self.reconcile()
        if self.events is not None:
            self.events.start()
        await self.server.start()
        self._tasks.append(asyncio.create_task(self._node_loop(), name="podnet-node"))
        self._tasks.append(asyncio.create_task(self._reconcile_loop(), name="podnet-ports"))

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._background]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        self._tasks.clear()
        await self.server.stop()
        if self.events is not None:
            await self.events.stop()
        await self.pods.stop()
        await self.ovs.stop()
        if self.plumber is not None:
            self.plumber.close()

    async def __aenter__(self) -> Agent:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _host(self) -> plug.Plumber:
        if self.plumber is None:
            raise errors.TryAgainLater("podnet: the agent is starting")
        return self.plumber

    # ------------------------------------------------------------- bootstrap

    async def _configure_ovs(self) -> Datapath:
        s = self.settings
        wanted: Datapath = bootstrap.detect_datapath() if s.datapath == "auto" else s.datapath
        actual = await self.ovs.ensure_bridge(s.bridge, wanted)
        datapath: Datapath = "netdev" if actual == "netdev" else "system"
        current = await self.ovs.chassis_settings()
        settings = bootstrap.chassis_settings(
            current, s.node_name, datapath, system_id=s.system_id, ovn_remote=s.ovn_remote,
            encap_ip=s.encap_ip, encap_type=s.encap_type)
        await self.ovs.configure_chassis(settings)
        log.info("bridge %s on the %s datapath; chassis %s", s.bridge, datapath,
                 settings["system-id"])
        return datapath

    async def _node_loop(self) -> None:
        """Join port, routes, gateway; then the ready label; then keep them current."""
        while True:
            try:
                await self.refresh_node()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.not_ready_reason = str(exc)
                log.warning("node setup incomplete, retrying: %s", exc)
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(self.settings.gateway_interval_s)

    async def refresh_node(self) -> None:
        if self.ipam is None:
            raise errors.PluginNotAvailable("podnet: no IPAM to read the join address from")
        s = self.settings
        join = await bootstrap.join_address(self.ipam, s.node_name)
        if join is None:
            raise RuntimeError(f"no join address for node {s.node_name} yet (the sync worker "
                               "allocates it once the node is known)")
        host = self._host().host
        installed = self.ovs.watch_installed(s.join_interface)
        try:
            await self.ovs.ensure_internal_port(s.bridge, s.join_interface, join.iface_id(
                s.node_name), join.mac, s.mtu)
            await bootstrap.wait_for_link(host, s.join_interface, s.install_timeout_s)
            await host.run(lambda rtnl: bootstrap.plumb_join(
                rtnl, s.join_interface, join, s.mtu, self.datapath), "plumbing the join port")
            await host.run(lambda rtnl: bootstrap.enable_forwarding(s.join_interface),
                           "enabling forwarding")
            if not self.ready:
                await self._join_installed(installed)
        finally:
            self.ovs.waiters.discard(s.join_interface, installed)
        plan = plan_gateway(s.node_name, await self.ipam.subnets())
        if self.routing is None:
            self.routing = Routing(host, s.netns, s.join_interface)
        await self.routing.apply(plan)
        self.gateway_plan = plan
        if not self.ready:
            await self._mark_ready()
        await self._follow_interconnect()

    async def _follow_interconnect(self) -> None:
        """``ovn-is-interconn`` on this node's Open vSwitch while the IC controller labels
        the node an IC gateway (``ovn.kubernetes.io/ic-gw=true``); off once it does not."""
        if self.kube_api is None:
            return
        try:
            labels = await bootstrap.node_labels(self.kube_api, self.settings.node_name)
            current = await self.ovs.chassis_settings()
            settings, remove = bootstrap.interconnect_change(labels, current)
            if settings or remove:
                await self.ovs.configure_chassis(settings, remove)
                log.info("node %s: OVN-IC gateway %s", self.settings.node_name,
                         "on" if settings else "off")
        except Exception as exc:  # the node keeps working; the next round tries again
            log.warning("node %s: OVN-IC gateway setting not followed: %s",
                        self.settings.node_name, exc)

    async def _join_installed(self, installed: asyncio.Future[None]) -> None:
        s = self.settings
        try:
            await self.ovs.wait_installed(s.join_interface, installed, s.install_timeout_s)
        except TimeoutError as exc:
            raise RuntimeError(f"ovn-controller did not install {s.join_interface} (logical "
                               f"port node-{s.node_name}) in {s.install_timeout_s:.0f}s") from exc

    async def _mark_ready(self) -> None:
        if self.kube_api is not None:
            await bootstrap.mark_node_ready(self.kube_api, self.settings.node_name)
        self.ready = True
        self.not_ready_reason = ""
        log.info("node %s is ready", self.settings.node_name)

    # ------------------------------------------------------------------- CNI

    async def handle(self, request: Request) -> dict[str, Any] | None:
        call = netconf.parse_call(request)
        handlers = {"ADD": self.add, "DEL": self.delete, "CHECK": self.check,
                    "STATUS": self.status, "GC": self.gc}
        if call.command != "ADD":
            return await handlers[call.command](call)
        try:
            return await self.add(call)
        except Exception as exc:
            self._attach_failed(call, exc)
            raise

    def _attach_failed(self, call: CniCall, exc: Exception) -> None:
        """Tell the pod why its ADD failed (a Warning Event), without waiting for it."""
        if self.events is not None and call.pod is not None:
            self.events.warn(call.pod, FAILED_ATTACH,
                             attach_failure(call.pod, call.container_id, exc))

    def _container(self, container_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Calls for one container run one at a time."""
        return self._locks.hold(container_id)

    def _plumbing(self, call: CniCall, network: PodNetwork, qos: QosPlan) -> plug.PodPlumbing:
        host = host_interface_name(call.container_id, call.ifname)
        return plug.PodPlumbing(
            host_ifname=host, ifname=call.ifname,
            netns=call.netns, mac=network.mac, addresses=network.addresses,
            gateways=network.gateways, mtu=call.conf.mtu or self.settings.mtu,
            tx_checksum_off=self.datapath == "netdev", tbf=qos.pod_tbf,
        )

    def _external_ids(self, call: CniCall, network: PodNetwork) -> dict[str, str]:
        assert call.pod is not None
        ids = {
            ovs.IFACE_ID: network.port_name, ovs.OWNER: ovs.OWNER_VALUE,
            ovs.CONTAINER: call.container_id, ovs.IFNAME: call.ifname, ovs.NETNS: call.netns,
            ovs.POD: call.pod.key, ovs.POD_UID: call.pod.uid, "attached-mac": network.mac,
        }
        runtime = call.conf.bandwidth or Bandwidth()
        for key, value in ((ovs.RUNTIME_INGRESS, runtime.ingress_mbps),
                           (ovs.RUNTIME_EGRESS, runtime.egress_mbps)):
            if value:
                ids[key] = repr(value)
        return ids

    @staticmethod
    def _bandwidth(network: PodNetwork, runtime: Bandwidth) -> Bandwidth:
        """The pod's annotations win; the runtime's bandwidth capability otherwise."""
        return network.bandwidth if network.bandwidth.limited else runtime

    async def add(self, call: CniCall) -> dict[str, Any]:
        pod = call.pod
        if pod is None:
            raise errors.InvalidEnvironment("podnet: CNI_ARGS has no K8S_POD_NAME")
        started = time.perf_counter()
        network = await self.pods.network(pod, self.settings.pod_timeout_s)
        known = time.perf_counter()
        runtime = call.conf.bandwidth or Bandwidth()
        bandwidth = self._bandwidth(network, runtime)
        qos = plan_qos(bandwidth, self.datapath)
        plan = self._plumbing(call, network, qos)
        async with self._container(call.container_id):
            await self._remove_other_claims(network.port_name, plan.host_ifname)
            installed = self.ovs.watch_installed(plan.host_ifname)
            try:
                with _as_cni_error():
                    host_mac = await self._plug(plan, self._external_ids(call, network), qos)
                plugged_at = time.perf_counter()
                await self._wait_installed(plan.host_ifname, network, installed)
            finally:
                self.ovs.waiters.discard(plan.host_ifname, installed)
            self.attached[plan.host_ifname] = Attached(
                plan.host_ifname, call.container_id, call.ifname, call.netns, pod, bandwidth,
                runtime)
        done = time.perf_counter()
        log.debug("ADD %s: pod known in %.1f ms, plumbed in %.1f ms, installed in %.1f ms",
                  pod.key, 1000 * (known - started), 1000 * (plugged_at - known),
                  1000 * (done - plugged_at))
        plugged = Plugged(plan.host_ifname, host_mac, call.ifname, call.netns)
        return build_result(call.conf.cni_version, network, plugged, call.conf.dns)

    async def _plug(self, plan: plug.PodPlumbing, external_ids: Mapping[str, str],
                    qos: QosPlan) -> str:
        """The veth; then the OVS port and the pod's configuration side by side."""
        host_mac = await self._host().create_veth(plan)
        outcomes = await asyncio.gather(
            self.ovs.ensure_pod_port(self.settings.bridge, plan.host_ifname, external_ids,
                                     plan.mtu, qos),
            plug.Plumber.configure_pod(plan),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return host_mac

    async def _wait_installed(self, name: str, network: PodNetwork,
                              installed: asyncio.Future[None]) -> None:
        try:
            await self.ovs.wait_installed(name, installed, self.settings.install_timeout_s)
        except TimeoutError as exc:
            raise errors.PortNotInstalled(
                f"podnet: ovn-controller did not install port {network.port_name} in "
                f"{self.settings.install_timeout_s:.0f}s",
                "is ovn-controller running, and does the logical port exist in OVN?",
            ) from exc
        except ovs.OvsError as exc:
            raise errors.OvsFailed(f"podnet: {exc}") from exc

    async def delete(self, call: CniCall) -> None:
        host = host_interface_name(call.container_id, call.ifname)
        started = time.perf_counter()
        async with self._container(call.container_id):
            with _as_cni_error():
                await self.ovs.delete_port(host)
                unported = time.perf_counter()
                await self._host().unplug(host)
            self.attached.pop(host, None)
        log.debug("DEL %s: port removed in %.1f ms, veth in %.1f ms", call.container_id,
                  1000 * (unported - started), 1000 * (time.perf_counter() - unported))

    async def check(self, call: CniCall) -> None:
        pod = call.pod
        if pod is None:
            raise errors.InvalidEnvironment("podnet: CNI_ARGS has no K8S_POD_NAME")
        network = await self.pods.current(pod)
        if network is None:
            raise errors.CheckFailed(f"podnet: pod {pod.key} has no address")
        plan = self._plumbing(call, network, plan_qos(Bandwidth(), self.datapath))
        async with self._container(call.container_id):
            with _as_cni_error():
                problems = await self._port_problems(plan.host_ifname, network)
                problems += await plug.inspect_pod(plan)
        problems += _prev_result_problems(call.conf.prev_result, network)
        if problems:
            raise errors.CheckFailed(f"podnet: pod {pod.key}: {problems[0]}",
                                     "; ".join(problems))

    async def _port_problems(self, host_ifname: str, network: PodNetwork) -> list[str]:
        record = await self.ovs.port(host_ifname)
        if record is None:
            return [f"no OVS port {host_ifname}"]
        problems = []
        if record.iface_id != network.port_name:
            problems.append(f"port {host_ifname} is bound to {record.iface_id!r}, "
                            f"not {network.port_name}")
        if not record.installed:
            problems.append(f"port {host_ifname} is not installed by ovn-controller")
        if not await self._host().link_up(host_ifname):
            problems.append(f"host interface {host_ifname} is missing or down")
        return problems

    async def status(self, call: CniCall) -> None:
        if not self.ready:
            raise errors.PluginNotAvailable(f"podnet: {self.not_ready_reason}")

    async def gc(self, call: CniCall) -> None:
        valid = call.conf.valid_attachments
        if valid is None:
            raise errors.InvalidConfig(f"podnet: GC needs {netconf.VALID_ATTACHMENTS}")
        keep = set(valid)
        with _as_cni_error():
            for record in await self.ovs.pod_ports():
                key = (record.external_ids.get(ovs.CONTAINER, ""),
                       record.external_ids.get(ovs.IFNAME, ""))
                if key not in keep:
                    log.info("GC: removing %s of %s", record.name, record.external_ids.get(
                        ovs.POD))
                    await self._remove(record.name, key[0])

    async def _remove(self, host_ifname: str, container_id: str) -> None:
        async with self._container(container_id):
            await self.ovs.delete_port(host_ifname)
            await self._host().unplug(host_ifname)
            self.attached.pop(host_ifname, None)

    # ------------------------------------------------------ restart, and QoS

    async def _remove_other_claims(self, port_name: str, keep: str) -> None:
        """Remove every other interface of this node bound to ``port_name``: a dead
        sandbox of an earlier pod of that name. Two interfaces claiming one logical port
        make ovn-controller flap its binding, and the pod is unreachable."""
        for record in await self.ovs.pod_ports():
            if record.name != keep and record.external_ids.get(ovs.IFACE_ID) == port_name \
                    and record.external_ids.get(ovs.POD):
                log.info("removing port %s: it claimed %s, now another sandbox's",
                         record.name, port_name)
                with _as_cni_error():
                    await self.ovs.delete_port(record.name)
                    await self._host().unplug(record.name)
                self.attached.pop(record.name, None)

    async def _reconcile_loop(self) -> None:
        """``reconcile`` every ``reconcile_interval_s``, for the DELs that never came."""
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_s)
            try:
                await self.reconcile(refresh_qos=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round retries
                log.warning("reconciling the pod ports failed: %s", exc)

    async def reconcile(self, refresh_qos: bool = True) -> None:
        """Forget (and remove) ports of pods that are gone, judged by the pod UID the port
        carries; apply the others' QoS again (at start)."""
        for record in await self.ovs.pod_ports():
            ids = record.external_ids
            if not ids.get(ovs.POD):
                continue  # podnet's own ports (the node's join port), not a pod's
            namespace, name = record.pod
            attached = Attached(record.name, ids.get(ovs.CONTAINER, ""),
                                ids.get(ovs.IFNAME, ""), ids.get(ovs.NETNS, ""),
                                PodRef(namespace, name, ids.get(ovs.POD_UID, "")),
                                runtime_bandwidth=ovs.runtime_bandwidth(ids))
            if await self._gone(attached):
                log.info("removing port %s: pod %s (uid %s) is gone", record.name,
                         attached.pod.key, attached.pod.uid or "-")
                await self._remove(record.name, attached.container_id)
                continue
            if not refresh_qos:
                self.attached.setdefault(record.name, attached)
                continue
            self.attached[record.name] = attached
            try:
                await self._refresh_qos(attached, force=True)
            except Exception as exc:  # one pod's annotations never stop the node's agent
                log.warning("pod %s: QoS not applied again: %s", attached.pod.key, exc)
        if refresh_qos:
            log.info("reconciled: %d pod interfaces on this node", len(self.attached))

    async def _gone(self, attached: Attached) -> bool:
        if not attached.netns or not netns.exists(attached.netns):
            return True
        if not attached.pod.name:
            return True
        return await self.pods.present(attached.pod) is False

    async def _pod_changed(self, namespace: str, name: str) -> None:
        """A pod of this node changed: if it runs here, its limits may have (in a task, so
        the informer never waits for OVSDB or netlink)."""
        key = f"{namespace}/{name}"
        for attached in [a for a in self.attached.values() if a.pod.key == key]:
            task = asyncio.create_task(self._refresh_qos_logged(attached.host_ifname))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _refresh_qos_logged(self, host_ifname: str) -> None:
        attached = self.attached.get(host_ifname)
        if attached is None:
            return
        try:
            await self._refresh_qos(attached)
        except errors.CniError as exc:
            log.warning("pod %s: QoS not applied: %s", attached.pod.key, exc)

    async def _refresh_qos(self, attached: Attached, force: bool = False) -> None:
        """Give a running pod the limits its annotations ask for now: the port's QoS and,
        on the userspace datapath, the pod's qdisc."""
        async with self._container(attached.container_id):
            current = self.attached.get(attached.host_ifname)
            network = await self.pods.current(attached.pod)
            if current is None or network is None:
                return
            bandwidth = self._bandwidth(network, current.runtime_bandwidth)
            if bandwidth == current.bandwidth and not force:
                return
            qos = plan_qos(bandwidth, self.datapath)
            with _as_cni_error():
                await self.ovs.set_qos(current.host_ifname, qos)
                if self.datapath == "netdev":
                    await plug.set_pod_tbf(current.netns, current.ifname, qos.pod_tbf)
            self.attached[current.host_ifname] = replace(current, bandwidth=bandwidth)
        log.info("pod %s: bandwidth to the pod %s, from the pod %s Mbit/s", attached.pod.key,
                 bandwidth.ingress_mbps or "unlimited", bandwidth.egress_mbps or "unlimited")


def _prev_result_problems(prev: Mapping[str, Any] | None, network: PodNetwork) -> list[str]:
    """CHECK: the IPs of the ADD's result must still be the pod's."""
    if not prev:
        return []
    wanted = {str(address) for address in network.addresses}
    problems = []
    for entry in prev.get("ips") or []:
        address = entry.get("address") if isinstance(entry, Mapping) else None
        if address and address not in wanted:
            problems.append(f"the previous result's address {address} is not the pod's")
    return problems
