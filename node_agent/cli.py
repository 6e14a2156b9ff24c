"""``podnet agent``: the node daemon's command line.

With a cluster (``--kubeconfig``, ``--in-cluster``, or the kubeconfig ``kubectl`` would
use), pods come from the Kubernetes API and the node is labelled ready; with
``--standalone``, from the IPAM alone. Run it in the node's network namespace (as a
DaemonSet with ``hostNetwork``, or ``ip netns exec NODE podnet agent ...`` for a
simulated node), or point ``--netns`` at the namespace from outside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from ipam.options import add_redis_options, redis_settings
from node_agent.agent import DEFAULT_MTU, DEFAULT_OVS_DB, Agent, AgentSettings
from node_agent.protocol import DEFAULT_SOCKET
from podnet_plumbing.signals import stop_on_signals

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "agent", help="the node agent: serve CNI, plumb pods, route the node's gateway",
        description="Bootstrap this node (br-int, ovn-controller settings, the ovn0 join "
        "port, routes, SNAT), then serve podnet-cni on a root-only unix socket.",
    )
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME") or
                        socket.gethostname(), help="this node's name (default $NODE_NAME, "
                        "else the host name)")
    parser.add_argument("--netns", metavar="NAME|PATH",
                        help="the node's network namespace, when the agent runs outside it")
    parser.add_argument("--ovs-db", default=DEFAULT_OVS_DB, metavar="REMOTE",
                        help="the Open_vSwitch database (default %(default)s)")
    parser.add_argument("--ovn-remote", metavar="REMOTE",
                        help="OVN southbound DB for ovn-controller (default: keep what is set)")
    parser.add_argument("--encap-ip", metavar="IP",
                        help="this node's tunnel endpoint (default: keep what is set)")
    parser.add_argument("--encap-type", default="geneve", help="tunnel type (default geneve)")
    parser.add_argument("--system-id", help="the chassis name (default: keep, else node name)")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                        help="the CNI socket (default %(default)s)")
    add_redis_options(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--kubeconfig", type=Path, metavar="PATH", help="kubeconfig file")
    source.add_argument("--in-cluster", action="store_true",
                        help="use the pod's service account")
    source.add_argument("--standalone", action="store_true",
                        help="no Kubernetes API: pods' networks come from the IPAM")
    parser.add_argument("--mtu", type=int, default=DEFAULT_MTU,
                        help="pod and ovn0 MTU (default %(default)s)")
    parser.add_argument("--datapath", choices=["auto", "system", "netdev"], default="auto",
                        help="datapath of a new br-int (default: system with the kernel "
                        "module, else netdev)")
    parser.add_argument("--bridge", default="br-int", help="integration bridge (default "
                        "%(default)s)")
    parser.add_argument("--pod-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="longest ADD wait for the pod's address and OVN port")
    parser.add_argument("--install-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="longest ADD wait for ovn-installed")
    parser.add_argument("--gateway-interval", type=float, default=10.0, metavar="SECONDS",
                        help="how often subnets are re-read for routes and SNAT")
    parser.add_argument("--reconcile-interval", type=float, default=10.0, metavar="SECONDS",
                        help="how often pod ports are checked against the live pods, by UID, "
                        "and those of gone pods removed (default %(default)s)")
    parser.add_argument("--install-cni", type=Path, metavar="DIR",
                        help="first write the podnet-cni launcher into DIR (/opt/cni/bin)")
    parser.set_defaults(handler=_main)


def settings_from(args: argparse.Namespace) -> AgentSettings:
    from node_agent.netns import netns_path

    return AgentSettings(
        node_name=args.node_name, ovs_db=args.ovs_db, socket_path=args.socket,
        netns=netns_path(args.netns) if args.netns else None, bridge=args.bridge,
        datapath=args.datapath, mtu=args.mtu, ovn_remote=args.ovn_remote,
        encap_ip=args.encap_ip, encap_type=args.encap_type, system_id=args.system_id,
        pod_timeout_s=args.pod_timeout, install_timeout_s=args.install_timeout,
        gateway_interval_s=args.gateway_interval,
        reconcile_interval_s=args.reconcile_interval,
    )


async def run_agent(args: argparse.Namespace, stop: asyncio.Event) -> None:
    from ipam.store import Ipam
    from node_agent.pods import IpamPods, KubePods, PodSource

    settings = settings_from(args)
    ipam = Ipam.connect(redis_settings(args))
    kube_api: Any = None
    pods: PodSource
    if args.standalone:
        pods = IpamPods(ipam)
    else:
        from podnet_plumbing import kube

        kube_api = kube.kube_client(args.kubeconfig, True if args.in_cluster else None)
        pods = KubePods(kube_api, settings.node_name)
    try:
        async with Agent(settings, pods, ipam, kube_api):
            await stop.wait()
    finally:
        await ipam.close()


def _main(args: argparse.Namespace) -> int:
    from ipam.errors import IpamError
    from node_agent import errors
    from node_agent.install import install_cni

    if args.install_cni is not None:
        print(f"podnet agent: installed {install_cni(args.install_cni)}", flush=True)

    async def main() -> None:
        stop = stop_on_signals()
        await run_agent(args, stop)

    try:
        asyncio.run(main())
    except (errors.CniError, IpamError, OSError, RuntimeError) as exc:
        log.debug("agent failed", exc_info=True)
        print(f"podnet agent: error: {exc}", file=sys.stderr)
        return 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0
