"""Several lab clusters on one machine, interconnected over OVN-IC (``up --clusters N``).

Each cluster is a whole lab of its own (``LabSettings.for_cluster``); what joins them is
made here:

- **the underlays, routed.** OVN-IC tunnels a packet for another AZ from the local
  gateway chassis to the remote one by its encap IP, so the gateway nodes of one cluster
  must reach those of the others. Each cluster's external host (already every node's
  default gateway) gets a link to one more bridge, ``interconnect_bridge``, with its
  ``interconnect_address``; it forwards, and routes every other cluster's underlay via
  that cluster's external host. The nodes' kernels follow their default route; their
  userspace datapath routes tunnels by its own table, so each node also gets
  ``ovs/route/add <other underlay> br-phy <its external host>``. Nothing is routed out of
  the machine: the bridge and every address live in the lab's namespaces.
- **the IC databases** (IC NB and IC SB, ``podnet.ovn_ic.IcDatabase``), one for all
  clusters, on loopback TCP, where each cluster's ``ovn-ic`` (which runs in the host
  namespace) reaches them; on raft with ``--ha``.
- **the ``ovn-ic-config`` ConfigMap** of each cluster, as a Kube-OVN user writes it
  (``config_map``), and the cluster's IC controller (``podnet ic``), which reads it,
  runs ``ovn-ic`` against the cluster's NB and SB and the IC databases, and writes the
  transit switch ports.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from podnet.daemons import BackgroundProcess
from podnet.lab.ledger import Ledger
from podnet.lab.nodes import lab_nodes
from podnet.lab.settings import INTERCONNECT_DEVICE, LabSettings
from podnet.ovn import Central, OvsDaemon, disable_tx_offload, link_exists, run
from podnet.ovn_ic import RAFT_HOSTS, IcDatabase

CONFIG_MAP = "ovn-ic-config"
CONFIG_NAMESPACE = "kube-system"
IC_PROCESS = "ic"
IC_DIRECTORY = "ovn-ic"
"""Under the first cluster's state directory: the IC databases."""
IC_CONTROLLER_DIRECTORY = "ic"
"""Under each cluster's state directory: its IC controller's state (``ovn-ic``'s
pidfile, log and control socket)."""


# ---------------------------------------------------------------- the IC databases


def ic_databases(first: LabSettings) -> IcDatabase:
    """The lab's IC databases, under the first cluster's state directory: on 127.0.0.1,
    or with ``ha`` on a raft cluster of three members on 127.0.0.1 to 127.0.0.3 (one
    ``ic-nb-port`` for all, as ``ic-db-host`` lists hosts, not ports)."""
    hosts = RAFT_HOSTS if first.ha else RAFT_HOSTS[:1]
    return IcDatabase(first.state_dir / IC_DIRECTORY, hosts=hosts, nb_port=first.ic_nb_port,
                      sb_port=first.ic_sb_port)


# ---------------------------------------------------------------- the ConfigMap


def config_map(settings: LabSettings, databases: IcDatabase) -> dict[str, Any]:
    """Cluster ``settings``'s ``kube-system/ovn-ic-config``, in Kube-OVN's keys: its AZ,
    its first node as the gateway, routes advertised and learned automatically."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": CONFIG_NAMESPACE},
        "data": databases.config_map_data(settings.az_name, settings.node_names()[:1]),
    }


# ---------------------------------------------------------------- the IC controller


def ic_process(settings: LabSettings) -> BackgroundProcess:
    return BackgroundProcess(IC_PROCESS, settings.state_dir)


def ic_argv(settings: LabSettings, central: Central) -> list[str]:
    """``podnet ic`` for the cluster: the same NB and SB remotes the sync worker and the
    nodes get (unix sockets, or every raft member), its own kubeconfig and state."""
    return [sys.executable, "-m", "podnet.cli", "ic",
            "--kubeconfig", str(settings.kubeconfig("ic")),
            "--ovn-nb", central.nb_remote, "--ovn-sb", central.sb_remote,
            "--state-dir", str((settings.state_dir / IC_CONTROLLER_DIRECTORY).resolve()),
            "--listen", settings.ic_listen]


def ovn_ic_daemon(settings: LabSettings) -> OvsDaemon:
    """The ``ovn-ic`` the cluster's IC controller runs (by its pidfile in the controller's
    state directory), so that ``down`` stops it even when the controller was killed."""
    directory = (settings.state_dir / IC_CONTROLLER_DIRECTORY).resolve()
    return OvsDaemon("ovn-ic", "ovn-ic", directory)


# ---------------------------------------------------------------- the underlays


def join_underlays(clusters: Sequence[LabSettings], ledger: Ledger) -> list[str]:
    """Route between the clusters' underlays (see the module docstring); idempotent.
    What was done, a line each."""
    first = clusters[0]
    bridge = first.interconnect_bridge
    if not link_exists(bridge):
        ledger.record("bridge", bridge)
        run(["ip", "link", "add", bridge, "type", "bridge"])
    run(["ip", "link", "set", bridge, "up"])
    done = []
    for settings in clusters:
        _attach_external(settings, bridge)
        done.append(f"{settings.external_netns}: {settings.interconnect_address()} on "
                    f"{bridge}")
    for settings in clusters:
        for other in clusters:
            if other.cluster != settings.cluster:
                done += _route(settings, other)
    return done


def _attach_external(settings: LabSettings, bridge: str) -> None:
    """The external host's link to the bridge between the clusters, and forwarding on."""
    netns, link = settings.external_netns, settings.interconnect_link
    if not link_exists(link):
        Ledger(settings.state_dir / "created.ledger").record("link", link)
        run(["ip", "link", "add", link, "type", "veth", "peer", "name",
             INTERCONNECT_DEVICE, "netns", netns])
    run(["ip", "link", "set", link, "master", bridge, "up"])
    disable_tx_offload(link)
    for argv in (["ip", "addr", "replace", str(settings.interconnect_address()), "dev",
                  INTERCONNECT_DEVICE],
                 ["ip", "link", "set", INTERCONNECT_DEVICE, "up"],
                 ["sysctl", "-qw", "net.ipv4.ip_forward=1"]):
        run(argv, netns=netns)
    disable_tx_offload(INTERCONNECT_DEVICE, netns)


def _route(settings: LabSettings, other: LabSettings) -> list[str]:
    """Cluster ``settings`` reaches ``other``'s underlay: its external host by a route via
    the other's external host, its nodes' tunnels by an OVS route via their own."""
    via = str(other.interconnect_address().ip)
    run(["ip", "route", "replace", other.underlay_cidr, "via", via, "dev",
         INTERCONNECT_DEVICE], netns=settings.external_netns)
    gateway = str(settings.external_underlay_address().ip)
    done = [f"{settings.external_netns}: {other.underlay_cidr} via {via}"]
    for node in lab_nodes(settings):
        ovs = node.ovs(settings.central())
        if ovs.vswitchd.pid() is None:
            continue
        routes = ovs.appctl("ovs-vswitchd", "ovs/route/show")
        if not any(other.underlay_cidr in line and gateway in line
                   for line in routes.splitlines()):
            ovs.appctl("ovs-vswitchd", "ovs/route/add", other.underlay_cidr, "br-phy",
                       gateway)
        done.append(f"{node.name}: tunnels to {other.underlay_cidr} via {gateway}")
    return done
