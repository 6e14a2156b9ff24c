"""``podnet up`` / ``status`` / ``trace`` / ``down``: podnet on one machine, with no
cluster needed.

The lab runs every piece of podnet for real (Redis, OVN, the webhook over HTTPS, the
IPAM endpoint, the sync worker, simulated nodes with their node agents) and stands in
only for what a cluster would bring: an API server (``apiserver``), the controllers and
scheduler (``controllers``) and the kubelet's network side (``kubelet``). ``up`` is in
``up``, ``trace`` in ``trace``; this module is their command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ipam import errors
from podnet.daemons import DaemonError
from podnet.lab.settings import DEFAULT_MANIFESTS, DEFAULT_STATE_DIR, MAX_CLUSTERS, LabSettings
from podnet.lab.up import down, lab_processes, revive, status_report, up
from podnet_plumbing import kube

__all__ = [
    "DEFAULT_MANIFESTS", "DEFAULT_STATE_DIR", "LabSettings", "down", "lab_processes", "register",
    "revive", "status_report", "up",
]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "up", help="run all of podnet on this machine, on simulated nodes",
        description="Start Redis, OVN, the lab's API server, the webhook, the IPAM "
        "endpoint, the sync worker, simulated nodes and the lab's controllers; apply the "
        "manifests; report every pod.",
    )
    _common_options(parser)
    parser.add_argument(
        "--manifests", type=Path, action="append",
        help=f"manifest file or directory (repeatable; default {DEFAULT_MANIFESTS.name}/)",
    )
    parser.add_argument("--nodes", type=int, default=2, help="simulated nodes (default 2)")
    parser.add_argument("--redis-port", type=int, default=16379, help="Redis port (default 16379)")
    parser.add_argument(
        "--listen", default="127.0.0.1:8080", help="IPAM endpoint HOST:PORT (default %(default)s)"
    )
    parser.add_argument("--wait", type=float, default=60.0,
                        help="seconds to wait for pods to settle (default 60)")
    parser.add_argument("--ha", action="store_true",
                        help="run OVN central on raft: NB and SB on three members each, two "
                        "ovn-northd in active/standby (podnet status shows the roles); "
                        "with --clusters, the IC databases on raft too")
    parser.add_argument("--clusters", type=int, default=1,
                        choices=range(1, MAX_CLUSTERS + 1), metavar="N",
                        help="run N clusters, each with its own API server, OVN and "
                        "nodes, interconnected over OVN-IC (default 1, at most "
                        f"{MAX_CLUSTERS})")
    parser.set_defaults(handler=_run_up)
    status = commands.add_parser(
        "status", help="show what podnet up runs, its pods and the connectivity checks")
    _common_options(status)
    status.add_argument("--check", action="store_true",
                        help="run the connectivity checks again now")
    status.set_defaults(handler=_run_status)
    tracer = commands.add_parser(
        "trace", help="explain a pod's packet's path through OVN (ovn-trace, summarised)",
        description="Trace the first packet of a connection from a pod of podnet up to an "
        "IP (a pod, a Service VIP, anything) or NAMESPACE/POD: the switches and routers "
        "it crosses, the load balancer, the router policy, the ACL verdict and where it "
        "ends. Without :PORT the packet is an ICMP echo request.",
    )
    _common_options(tracer)
    tracer.add_argument("pod", metavar="NAMESPACE/POD", help="the pod sending the packet")
    tracer.add_argument("destination", metavar="DESTINATION[:PORT]",
                        help="IP, IP:PORT, [IPv6]:PORT, NAMESPACE/POD or NAMESPACE/POD:PORT")
    tracer.add_argument("--raw", action="store_true", help="also print ovn-trace's output")
    _cluster_option(tracer)
    tracer.set_defaults(handler=_run_trace)
    execute = commands.add_parser(
        "exec", help="run a command in a lab pod's network namespace",
        description="Run CMD in the network namespace of a pod of podnet up (the lab's "
        "pods have no containers, so kubectl exec has nothing to enter), e.g. "
        "`podnet exec default/web-0 -- ping -c1 10.16.0.9`.")
    _common_options(execute)
    execute.add_argument("pod", metavar="NAMESPACE/POD", help="the pod (POD alone: default)")
    execute.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]",
                         help="the command and its arguments")
    _cluster_option(execute)
    execute.set_defaults(handler=_run_exec)
    stop = commands.add_parser("down", help="stop what podnet up started and remove it all")
    _common_options(stop)
    stop.add_argument("--keep-data", action="store_true", help="keep the state directory")
    stop.set_defaults(handler=_run_down)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR,
        help="where podnet keeps pidfiles, logs and data (default %(default)s)",
    )


def _cluster_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", type=int, default=1, metavar="K",
                        help="with podnet up --clusters: the cluster the pod is in "
                        "(default 1)")


def _settings(args: argparse.Namespace) -> LabSettings:
    """Settings from the command line; status and down reuse what up recorded (trace
    and exec: of the cluster ``--cluster`` names)."""
    recorded = LabSettings.recorded(args.state_dir)
    if args.handler is not _run_up:
        found = recorded or LabSettings(state_dir=args.state_dir)
        cluster = getattr(args, "cluster", 1)
        if cluster != 1:
            try:
                return found.for_cluster(cluster)
            except ValueError as exc:
                raise SystemExit(f"podnet: --cluster {cluster}: {exc}") from exc
        return found
    base = recorded or LabSettings(state_dir=args.state_dir)
    return LabSettings(
        state_dir=args.state_dir, redis_port=args.redis_port, ipam_listen=args.listen,
        manifests=tuple(args.manifests or (DEFAULT_MANIFESTS,)), nodes=args.nodes,
        wait_s=args.wait, ha=args.ha, apiserver_listen=base.apiserver_listen,
        webhook_listen=base.webhook_listen, sync_listen=base.sync_listen,
        ic_listen=base.ic_listen,
        prefix=base.prefix,
        underlay_cidr=base.underlay_cidr, service_cidr=base.service_cidr,
        clusters=args.clusters, ic_nb_port=base.ic_nb_port, ic_sb_port=base.ic_sb_port,
        interconnect_cidr=base.interconnect_cidr,
    )


def _run_up(args: argparse.Namespace) -> int:
    try:
        up(_settings(args))
    except (DaemonError, errors.IpamError, kube.KubeError, OSError) as exc:
        print(f"podnet: error: {exc}", file=sys.stderr)
        print(f"podnet: what started keeps running; `podnet down --state-dir "
              f"{args.state_dir}` removes it", file=sys.stderr)
        return 1
    return 0


def _run_status(args: argparse.Namespace) -> int:
    print(status_report(_settings(args), check=args.check))
    return 0


def _run_trace(args: argparse.Namespace) -> int:
    from podnet.lab.trace import TraceError, explain

    try:
        print(explain(_settings(args), args.pod, args.destination, raw=args.raw))
    except (TraceError, ValueError, kube.KubeError) as exc:
        print(f"podnet trace: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_exec(args: argparse.Namespace) -> int:
    from podnet.lab.execute import ExecError, exec_in_pod

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        exec_in_pod(_settings(args), args.pod, command)
    except (ExecError, kube.KubeError, OSError) as exc:
        print(f"podnet exec: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_down(args: argparse.Namespace) -> int:
    failures = down(_settings(args), keep_data=args.keep_data)
    return 1 if failures else 0
