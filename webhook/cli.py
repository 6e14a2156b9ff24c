"""``podnet webhook``: run the admission webhook over HTTPS.

``register(commands)`` adds the subcommand to podnet's CLI; ``python -m webhook`` runs
the same parser on its own (handy for process-level tests and containers).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from collections.abc import Callable
from pathlib import Path

from ipam.options import add_redis_options, redis_settings
from webhook.errors import ConfigError
from webhook.server import serve
from webhook.settings import (
    DEFAULT_EXCLUDED_NAMESPACES,
    DEFAULT_SERVICE_CIDRS,
    LabelSelector,
    ServerSettings,
    WebhookSettings,
    parse_listen,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="0.0.0.0:8443", help="HOST:PORT (default 0.0.0.0:8443)")
    parser.add_argument("--tls-cert", required=True, type=Path, help="PEM certificate chain")
    parser.add_argument("--tls-key", required=True, type=Path, help="PEM private key")
    parser.add_argument(
        "--client-ca", type=Path, default=None, metavar="PEM",
        help="serve admission, extender and metrics requests only to clients with a "
        "certificate of this CA (the API server's); /healthz and /readyz stay open")
    add_redis_options(parser)
    parser.add_argument(
        "--manifests", type=Path, default=None,
        help="folder of YAML with Subnet, IPPool and Namespace objects (re-read on change)",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, metavar="PATH",
        help="follow Subnets, IPPools and Namespaces in the Kubernetes API (this kubeconfig)",
    )
    parser.add_argument(
        "--in-cluster", action="store_true",
        help="follow them in the Kubernetes API with the pod's service account",
    )
    parser.add_argument(
        "--exclude-namespaces", default=",".join(sorted(DEFAULT_EXCLUDED_NAMESPACES)),
        help="comma-separated namespaces whose pods are admitted unchanged",
    )
    parser.add_argument(
        "--exclude-selector", default="",
        help="label selector (k=v,k!=v,k,!k) of pods admitted unchanged",
    )
    parser.add_argument(
        "--service-cidr", default=",".join(DEFAULT_SERVICE_CIDRS), metavar="CIDR[,CIDR]",
        help="the cluster's Service CIDRs, which no Subnet may overlap (default "
        "%(default)s, kube-apiserver's)",
    )
    parser.add_argument(
        "--reservation-ttl", type=float, default=600.0,
        help="seconds a reservation waits for its pod to be stored (default 600)",
    )
    parser.add_argument(
        "--rescan", type=float, default=10.0, help="seconds between manifest checks"
    )
    parser.add_argument(
        "--no-require-rebuilt", dest="require_rebuilt", action="store_false",
        help="give out addresses even before the sync worker has rebuilt the index after a "
        "Redis restart or failover (for a webhook running without a sync worker; risks a "
        "duplicate address if Redis lost writes)",
    )


def service_cidrs(value: str) -> tuple[str, ...]:
    cidrs = tuple(item.strip() for item in value.split(",") if item.strip())
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            raise ConfigError(f"--service-cidr {cidr}: is not a CIDR") from None
    return cidrs


def settings_from(args: argparse.Namespace) -> ServerSettings:
    host, port = parse_listen(args.listen)
    selector = LabelSelector.parse(args.exclude_selector) if args.exclude_selector else None
    excluded = frozenset(n.strip() for n in args.exclude_namespaces.split(",") if n.strip())
    if args.manifests is not None and (args.kubeconfig is not None or args.in_cluster):
        raise ConfigError("--manifests and --kubeconfig/--in-cluster exclude each other")
    if args.manifests is not None and not args.manifests.is_dir():
        raise ConfigError(f"--manifests {args.manifests}: not a folder")
    return ServerSettings(
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        host=host,
        port=port,
        redis=redis_settings(args),
        manifests=args.manifests,
        rescan_s=args.rescan,
        kubeconfig=args.kubeconfig,
        in_cluster=args.in_cluster,
        client_ca=args.client_ca,
        webhook=WebhookSettings(
            excluded_namespaces=excluded,
            excluded_selector=selector,
            reservation_ttl_s=args.reservation_ttl,
            require_rebuilt=args.require_rebuilt,
            service_cidrs=service_cidrs(args.service_cidr),
        ),
    )


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed: TLS, HTTP and Redis I/O cost about a
    fifth less CPU per admission on it (bench/webhook.py). None means asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(args: argparse.Namespace) -> int:
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(settings_from(args)))
    except ConfigError as exc:
        print(f"podnet webhook: {exc}", file=sys.stderr)
        return 2
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``podnet webhook`` to podnet's CLI."""
    parser = commands.add_parser(
        "webhook", help="run the admission webhook (HTTPS)",
        description="Give each pod its address at admission, over HTTPS.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
