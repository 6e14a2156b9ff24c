"""Node bootstrap: the integration bridge, ovn-controller's settings, the ``ovn0`` join
port, forwarding, and the node's readiness label.

Every step is idempotent, so the agent runs it at every start and a restart touches
nothing that is already right (running pods keep their traffic):

- ``br-int`` is created with datapath type ``system`` where the kernel has the
  openvswitch module and ``netdev`` (userspace) where it has not; an existing bridge
  keeps its type, which then decides how pods are plumbed;
- ``Open_vSwitch:external_ids`` gets ``system-id``, ``ovn-remote``, ``ovn-encap-type``,
  ``ovn-encap-ip`` and ``ovn-bridge-datapath-type``; values not given keep what is set;
- ``ovn0`` is an internal port bound to the join switch's port ``node-<name>`` with
  the node's join address (the sync worker allocates it in the IPAM's ``join`` subnet
  under token ``node:<name>``; the agent waits for it).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ipam import annotations as keys
from ipam.store import Ipam
from ipam.subnet import JOIN_SUBNET
from node_agent.network import Interface, build_network
from node_agent.plug import NamespaceWorkers, PlumbingError, Rtnl, disable_tx_checksum
from node_agent.qos import Bandwidth, Datapath

log = logging.getLogger(__name__)

OPENVSWITCH_MODULE = "/sys/module/openvswitch"
JOIN_TOKEN_PREFIX = "node:"


class BootstrapError(RuntimeError):
    """The node cannot be set up as asked; the message says what is missing."""


def detect_datapath(module_path: str = OPENVSWITCH_MODULE) -> Datapath:
    """``system`` with the kernel's openvswitch module loaded, else ``netdev``."""
    return "system" if os.path.isdir(module_path) else "netdev"


def chassis_settings(
    current: Mapping[str, str], node: str, datapath: Datapath, *, system_id: str | None,
    ovn_remote: str | None, encap_ip: str | None, encap_type: str,
) -> dict[str, str]:
    """The ``Open_vSwitch:external_ids`` ovn-controller needs; refuses what is missing."""
    remote = ovn_remote or current.get("ovn-remote")
    encap = encap_ip or current.get("ovn-encap-ip")
    if not remote:
        raise BootstrapError("no OVN southbound remote: pass --ovn-remote (e.g. tcp:IP:6642)")
    if not encap:
        raise BootstrapError("no tunnel endpoint: pass --encap-ip (the node's address)")
    return {
        "system-id": system_id or current.get("system-id") or node,
        "hostname": current.get("hostname") or node,
        "ovn-remote": remote,
        "ovn-encap-type": encap_type,
        "ovn-encap-ip": encap,
        "ovn-bridge-datapath-type": datapath,
    }


@dataclass(frozen=True)
class JoinAddress:
    """The node's port on the join switch."""

    mac: str
    addresses: tuple[Interface, ...]

    def iface_id(self, node: str) -> str:
        return f"node-{node}"


async def join_address(ipam: Ipam, node: str) -> JoinAddress | None:
    """The node's join allocation, once the sync worker has made it."""
    allocation = await ipam.lookup_token(JOIN_TOKEN_PREFIX + node, JOIN_SUBNET)
    if allocation is None:
        return None
    subnet = await ipam.subnet(JOIN_SUBNET)
    network = build_network("", node, JOIN_SUBNET, allocation.mac, allocation.ips,
                            [layout.network for layout in subnet.families],
                            [layout.gateway for layout in subnet.families], Bandwidth())
    return JoinAddress(network.mac, network.addresses)


async def wait_for_link(host: NamespaceWorkers, name: str, timeout_s: float) -> None:
    """Wait until ovs-vswitchd has created ``name`` (a bootstrap-only wait)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await host.run(lambda rtnl: rtnl.index(name), f"looking up {name}") is None:
        if asyncio.get_running_loop().time() >= deadline:
            raise PlumbingError(f"ovs-vswitchd did not create {name} in {timeout_s}s")
        await asyncio.sleep(0.1)


def plumb_join(rtnl: Rtnl, name: str, join: JoinAddress, mtu: int, datapath: Datapath) -> None:
    """``ovn0`` up with the join MAC and addresses (on a thread in the node's namespace)."""
    index = rtnl.require(name)
    if datapath == "netdev":
        try:
            disable_tx_checksum(rtnl.ioctl, name)
        except PlumbingError as exc:  # a tap may refuse; the kernel then checksums anyway
            log.debug("%s: %s", name, exc)
    rtnl.set_up(index, mtu=mtu, mac=join.mac)
    for address in join.addresses:
        rtnl.ensure_address(index, address)


def enable_forwarding(join_interface: str) -> None:
    """The node routes pods' traffic: forwarding on, reverse-path filter loose on ovn0.
    Runs on a thread in the node's namespace (``/proc/sys/net`` is per namespace)."""
    for name, value in (("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1"),
                        (f"net.ipv4.conf.{join_interface}.rp_filter", "2")):
        try:
            with open("/proc/sys/" + name.replace(".", "/"), "w") as handle:
                handle.write(value)
        except OSError as exc:  # IPv6 may be disabled on the node
            if name == "net.ipv4.ip_forward":
                raise
            log.info("sysctl %s=%s: %s", name, value, exc)


def interconnect_change(labels: Mapping[str, str],
                        current: Mapping[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """What ``Open_vSwitch:external_ids`` needs for the node's IC gateway label: set
    ``ovn-is-interconn=true`` while the node is labelled ``ovn.kubernetes.io/ic-gw=true``,
    remove it once it is not; (keys to set, keys to remove), both empty when it is right."""
    wanted = labels.get(keys.IC_GATEWAY_LABEL) == "true"
    have = current.get(keys.INTERCONN_KEY)
    if wanted and have != "true":
        return {keys.INTERCONN_KEY: "true"}, ()
    if not wanted and have is not None:
        return {}, (keys.INTERCONN_KEY,)
    return {}, ()


async def node_labels(api: Any, node: str) -> dict[str, str]:
    """The labels of Node ``node``, read now."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    found = await asyncio.to_thread(core.read_node, node, _request_timeout=10)
    metadata = found.metadata
    return dict((metadata.labels if metadata is not None else None) or {})


async def mark_node_ready(api: Any, node: str, ready: bool = True) -> None:
    """Label the node for the webhook's scheduler extender (``podnet.io/agent-ready``)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    body = {"metadata": {"labels": {keys.AGENT_READY_LABEL: "true" if ready else None}}}
    await asyncio.to_thread(core.patch_node, node, body,
                            _content_type="application/merge-patch+json")
