"""The lab's simulated nodes: each a network namespace with its own Open vSwitch and
ovn-controller, all joined by an underlay bridge over which Geneve runs.

docs/lab.md lists what makes this work here: one userspace datapath per network
namespace, so one node per namespace (``<prefix>-node-N``); its daemons' sockets and
pidfiles in ``<state>/nodes/node-N``; a veth from the namespace to the Linux bridge
``<prefix>-underlay`` in the host, whose node end sits on the node's netdev ``br-phy``
carrying the node's underlay address (also its Geneve endpoint and its Node object's
InternalIP), with TX checksum offload off on both ends.

The outside world is one more namespace on the underlay, the external host
(``<prefix>-external``): an address on the underlay that every node uses as its default
gateway, and ``outside_address`` (in no cluster subnet) on its loopback. Pods reach it only
through their node's gateway (``ovn0``, then SNAT for ``natOutgoing`` subnets), so a
check against it proves the way out of the cluster, and the address the external host
sees proves the SNAT.

Starting is idempotent: a running node is left as it is; a node whose vswitchd died
under a running ovsdb-server gets vswitchd back on the taps it left (its pods keep their
ports), and a namespace left by an earlier run with nothing running is made afresh. Each
node has a keeper (``podnet.lab.keeper``) that restarts a vswitchd that dies, as a
service manager would on a real node. Every namespace and link is written to
the lab's ledger before it is created, so ``podnet down`` removes them whatever
happened in between.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podnet.daemons import BackgroundProcess
from podnet.lab.ledger import Ledger
from podnet.lab.settings import LabSettings
from podnet.ovn import (
    Central,
    OvnError,
    OvsNode,
    delete_link,
    disable_tx_offload,
    link_exists,
    netns_add,
    netns_delete,
    netns_exists,
    run,
)

NODE_UNDERLAY_DEVICE = "underlay0"
EXTERNAL_DEVICE = "eth0"
ZONE_LABEL = "topology.kubernetes.io/zone"


@dataclass(frozen=True)
class LabNode:
    """One simulated node, as the settings name it."""

    name: str
    index: int
    settings: LabSettings

    @property
    def netns(self) -> str:
        return self.settings.node_netns(self.name)

    @property
    def directory(self) -> Path:
        return self.settings.state_dir / "nodes" / self.name

    @property
    def address(self) -> str:
        return str(self.settings.node_address(self.index))

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def host_link(self) -> str:
        return self.settings.underlay_link(self.index)

    @property
    def zone(self) -> str:
        return f"zone-{chr(ord('a') + (self.index - 1) % 26)}"

    def ovs(self, central: Central) -> OvsNode:
        return OvsNode(self.directory, name=self.name, system_id=self.name,
                       ovn_remote=central.sb_remote, encap_ip=self.ip, netns=self.netns)

    def api_object(self) -> dict[str, Any]:
        """The Node object a kubelet would register for this node."""
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": {
                "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                ZONE_LABEL: self.zone, "podnet.io/lab-node": "true"}},
            "spec": {},
            "status": {
                "addresses": [{"type": "InternalIP", "address": self.ip},
                              {"type": "Hostname", "address": self.name}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "the lab's kubelet is posting ready status"}],
            },
        }


def lab_nodes(settings: LabSettings) -> list[LabNode]:
    return [LabNode(name, index, settings)
            for index, name in enumerate(settings.node_names(), start=1)]


def known_nodes(settings: LabSettings) -> list[LabNode]:
    """The configured nodes and any other a former ``up`` left a directory for."""
    nodes = {node.name: node for node in lab_nodes(settings)}
    with contextlib.suppress(OSError):
        for directory in sorted((settings.state_dir / "nodes").iterdir()):
            number = directory.name.removeprefix(f"{settings.node_prefix}-")
            if directory.name not in nodes and number.isdigit():
                nodes[directory.name] = LabNode(directory.name, int(number), settings)
    return list(nodes.values())


def ensure_underlay(settings: LabSettings, ledger: Ledger) -> str:
    bridge = settings.underlay_bridge
    if not link_exists(bridge):
        ledger.record("bridge", bridge)
        run(["ip", "link", "add", bridge, "type", "bridge"])
    run(["ip", "link", "set", bridge, "up"])
    return bridge


def start_node(node: LabNode, central: Central, ledger: Ledger) -> OvsNode:
    """Start (or keep) the node's daemons and join it to the underlay."""
    ovs = node.ovs(central)
    if netns_exists(node.netns) and ovs.vswitchd.pid() is None:
        if ovs.ovsdb.pid() is not None:
            ovs.restart_vswitchd()  # died under a running node: its pods stay plumbed
        else:
            stop_node(node, central)  # left over by an earlier run: start afresh
    ledger.record("netns", node.netns)
    ovs.start()
    _join_underlay(node, ovs, ledger)
    keeper(node).start(keeper_argv(node, ovs))
    return ovs


def keeper(node: LabNode) -> BackgroundProcess:
    """The node's vswitchd keeper (``podnet.lab.keeper``), tracked in its directory."""
    return BackgroundProcess("vswitchd-keeper", node.directory)


def keeper_argv(node: LabNode, ovs: OvsNode) -> list[str]:
    return [sys.executable, "-m", "podnet.lab.keeper", "--directory", str(node.directory),
            "--name", node.name, "--netns", node.netns, "--ovn-remote", ovs.ovn_remote,
            "--encap-ip", ovs.encap_ip]


def _join_underlay(node: LabNode, ovs: OvsNode, ledger: Ledger) -> None:
    bridge = node.settings.underlay_bridge
    if not link_exists(node.host_link):
        ledger.record("link", node.host_link)
        run(["ip", "link", "add", node.host_link, "type", "veth", "peer", "name",
             NODE_UNDERLAY_DEVICE, "netns", node.netns])
    run(["ip", "link", "set", node.host_link, "master", bridge, "up"])
    disable_tx_offload(node.host_link)
    ovs.exec("ip", "link", "set", NODE_UNDERLAY_DEVICE, "up")
    disable_tx_offload(NODE_UNDERLAY_DEVICE, node.netns)
    routes = ovs.appctl("ovs-vswitchd", "ovs/route/show")
    network = str(node.settings.node_address(node.index).network)
    if network not in routes:
        ovs.add_underlay(NODE_UNDERLAY_DEVICE, node.address)
    gateway = node.settings.external_underlay_address().ip
    ovs.exec("ip", "route", "replace", "default", "via", str(gateway))


def ensure_external(settings: LabSettings, ledger: Ledger) -> str:
    """The external host on the underlay bridge (kept when it exists); its netns name."""
    netns, link = settings.external_netns, settings.external_link
    ledger.record("netns", netns)
    if not netns_exists(netns):
        netns_add(netns)
    if not link_exists(link):
        ledger.record("link", link)
        run(["ip", "link", "add", link, "type", "veth", "peer", "name", EXTERNAL_DEVICE,
             "netns", netns])
    run(["ip", "link", "set", link, "master", settings.underlay_bridge, "up"])
    disable_tx_offload(link)
    address = str(settings.external_underlay_address())
    for argv in (["ip", "addr", "replace", address, "dev", EXTERNAL_DEVICE],
                 ["ip", "link", "set", EXTERNAL_DEVICE, "up"],
                 ["ip", "addr", "replace", f"{settings.outside_address}/32", "dev", "lo"]):
        run(argv, netns=netns)
    disable_tx_offload(EXTERNAL_DEVICE, netns)
    return netns


def remove_link(name: str) -> None:
    """Delete a link; gone meanwhile (a veth whose peer's namespace went) is fine."""
    try:
        delete_link(name)
    except OvnError:
        if link_exists(name):
            raise


def stop_node(node: LabNode, central: Central) -> list[str]:
    """Stop the node's daemons and remove its namespace and link; returns what failed."""
    ovs = node.ovs(central)
    failures = []
    keeper(node).stop()  # first, or it would start the vswitchd being stopped again
    try:
        ovs.stop(remove_bridges=True)
    except OvnError as exc:
        failures.append(f"{node.name}: {exc}")
    for remove, name in ((netns_delete, node.netns), (remove_link, node.host_link)):
        try:
            remove(name)
        except OvnError as exc:
            failures.append(f"{node.name}: {exc}")
    with contextlib.suppress(OvnError):
        ovs.forget_chassis()
    return failures
