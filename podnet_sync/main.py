"""``podnet sync``: the sync worker wired to its sources, Redis and the NB database.

Objects come from the Kubernetes API (one list-then-watch ``Watcher`` per kind) or,
standalone, from a manifests folder re-read when a file changes. Either way they land
in ``Store``s and every change marks the worker dirty; the worker's first step waits
until every store has its first full list, so nothing is released for being unseen.

The HTTP endpoint (``--listen``: ``/metrics``, ``/healthz``, ``/readyz``) starts before
the NB connection, so a liveness probe is answered while a slow NB is being reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import CoreV1Api, CustomObjectsApi

from ipam.cli import parse_listen, url_of
from ipam.options import add_redis_options, redis_settings
from ipam.settings import RedisSettings
from ipam.store import Ipam
from podnet_plumbing import kube
from podnet_plumbing.manifests import manifest_files, read_manifests
from podnet_plumbing.ovsdb import OvsdbError, SslFiles, close_api, nb_api, ssl_remotes
from podnet_plumbing.signals import stop_on_signals
from podnet_sync.admin_netpol import ANP_KIND, BANP_KIND
from podnet_sync.cluster import PodView
from podnet_sync.http import DEFAULT_SYNC_LISTEN, HttpSettings, make_sync_app, serving
from podnet_sync.metrics import SyncMetrics
from podnet_sync.nb import Northbound
from podnet_sync.status import SubnetStatusPatcher, status_only_change
from podnet_sync.worker import (
    KINDS,
    PodLister,
    PodPatcher,
    PodReporter,
    PolicyReporter,
    SyncSettings,
    SyncWorker,
)

log = logging.getLogger(__name__)

POLICY_API_VERSIONS = {"NetworkPolicy": "networking.k8s.io/v1",
                       ANP_KIND: "policy.networking.k8s.io/v1alpha1",
                       BANP_KIND: "policy.networking.k8s.io/v1alpha1"}


@dataclass(frozen=True)
class SyncOptions:
    redis: RedisSettings
    ovn_nb: str
    """One remote, or several comma-separated for a clustered NB."""
    sync: SyncSettings
    manifests: Path | None = None
    kube: kube.KubeSettings | None = None
    ovn_nb_ssl: SslFiles | None = None
    """Required when ``ovn_nb`` has ``ssl:`` remotes."""
    http: HttpSettings | None = None
    """Where to serve ``/metrics``, ``/healthz`` and ``/readyz`` (nowhere if None)."""


class OptionError(ValueError):
    """A command-line option is unusable; the message names the option and the value."""


class ManifestStores:
    """The objects of a manifests folder, one ``Store`` per kind, re-read on change."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stores = {kind: kube.Store() for kind in KINDS}
        self._seen: tuple[tuple[str, int, int], ...] | None = None

    def refresh(self) -> bool:
        seen = tuple(
            (str(p), p.stat().st_mtime_ns, p.stat().st_size)
            for p in manifest_files([self.folder]) if p.is_file()
        )
        if seen == self._seen:
            return False
        manifests, problems = read_manifests([self.folder])
        for problem in problems:
            log.warning("manifest skipped: %s", problem)
        by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for manifest in manifests:
            if manifest.kind in by_kind:
                obj = dict(manifest.obj)
                metadata = dict(obj.get("metadata") or {})
                metadata.setdefault("uid", f"manifest:{metadata.get('namespace', '')}/"
                                           f"{metadata.get('name', '')}")
                obj["metadata"] = metadata
                by_kind[manifest.kind].append(obj)
        for kind, objects in by_kind.items():
            self.stores[kind].replace(objects, "")
        self._seen = seen
        return True


async def follow_manifests(source: ManifestStores, worker: SyncWorker, poll_s: float) -> None:
    while True:
        if source.refresh():
            worker.mark("Manifests", full=True)
        await asyncio.sleep(poll_s)


@asynccontextmanager
async def kube_watchers(
    api: Any, worker_stores: Mapping[str, kube.Store], on_change: Any,
    settings: kube.WatchSettings | None = None,
) -> AsyncIterator[list[kube.Watcher]]:
    watchers = []
    for kind, store in worker_stores.items():
        try:
            list_fn = kube.lister(api, kind)
        except KeyError:
            log.info("not following %s: this client does not list it", kind)
            continue
        watchers.append(
            kube.Watcher(list_fn, kind, on_change(kind), store=store, settings=settings)
        )
    for watcher in watchers:
        watcher.start()
    try:
        yield watchers
    finally:
        for watcher in watchers:
            await watcher.stop()


def marking(worker: SyncWorker) -> Any:
    """Per-kind watch handlers that mark the worker dirty. A Subnet or IPPool whose
    status alone changed (the worker's own status patch) asks for nothing."""
    def for_kind(kind: str) -> Any:
        async def on_event(event: kube.WatchEvent) -> None:
            if isinstance(event, kube.Snapshot):
                worker.mark(kind, full=True)
            elif not (kind in ("Subnet", "IPPool") and event.type == "MODIFIED"
                      and status_only_change(event.old, event.obj)):
                if event.type == "DELETED":
                    worker.deleted(kind, str((event.obj.get("metadata") or {}).get("name")))
                worker.mark(kind, event.obj)
        return on_event
    return for_kind


async def run_sync(options: SyncOptions, stop: asyncio.Event) -> None:
    metrics = SyncMetrics()
    ipam = Ipam.connect(options.redis)
    try:
        async with _http_endpoint(options.http, metrics, ipam):
            await _sync_with_nb(options, ipam, metrics, stop)
    finally:
        await ipam.close()


@asynccontextmanager
async def _http_endpoint(settings: HttpSettings | None, metrics: SyncMetrics,
                         ipam: Ipam) -> AsyncIterator[None]:
    if settings is None:
        yield
        return
    async with serving(make_sync_app(metrics, ipam), settings) as (host, port):
        log.info("metrics and probes on %s", url_of(host, port))
        yield


async def _sync_with_nb(options: SyncOptions, ipam: Ipam, metrics: SyncMetrics,
                        stop: asyncio.Event) -> None:
    api = await asyncio.to_thread(nb_api, options.ovn_nb, ssl_files=options.ovn_nb_ssl)
    try:
        if options.manifests is not None:
            source = ManifestStores(options.manifests)
            source.refresh()
            worker = SyncWorker(ipam, Northbound(api), source.stores, options.sync)
            metrics.attach(worker)
            tasks = [asyncio.create_task(follow_manifests(source, worker, 2.0))]
            await _run_until(worker, tasks, stop)
            return
        client = kube.connect(options.kube or kube.KubeSettings())
        stores = {kind: kube.Store() for kind in KINDS}
        worker = cluster_hooks(client).worker(ipam, Northbound(api), stores, options.sync)
        metrics.attach(worker)
        async with kube_watchers(client, stores, marking(worker)) as watchers:
            for watcher in watchers:
                await watcher.store.wait_synced()
            log.info("all kinds listed; syncing")
            await _run_until(worker, [asyncio.create_task(worker.sweep_orphans_forever())],
                             stop)
    finally:
        await asyncio.to_thread(close_api, api)


@dataclass(frozen=True)
class ClusterHooks:
    """What the worker does to the cluster: ``SyncWorker``'s arguments of those names."""

    patch_pod: PodPatcher
    report_pod: PodReporter
    list_pods: PodLister
    patch_subnet_status: SubnetStatusPatcher
    report_policy: PolicyReporter

    def worker(self, ipam: Ipam, northbound: Northbound, stores: Mapping[str, Any],
               settings: SyncSettings) -> SyncWorker:
        return SyncWorker(ipam, northbound, stores, settings, patch_pod=self.patch_pod,
                          report_pod=self.report_pod, list_pods=self.list_pods,
                          patch_subnet_status=self.patch_subnet_status,
                          report_policy=self.report_policy)


def cluster_hooks(client: Any) -> ClusterHooks:
    """What the worker does to the cluster, through ``client``: mark pods (``patch_pod``),
    record Events on them (``report_pod``), list the pods afresh (``list_pods``),
    write the Subnets' status (``patch_subnet_status``), and record an Event on a
    NetworkPolicy that cannot be enforced (``report_policy``)."""
    core = CoreV1Api(client)
    custom = CustomObjectsApi(client)
    list_pods = kube.lister(client, "Pod")

    async def patch(namespace: str, name: str, annotations: Mapping[str, str]) -> object:
        return await kube.patch_pod_annotations(core, namespace, name, annotations)

    async def report(pod: PodView, reason: str, message: str) -> object:
        involved = {"kind": "Pod", "namespace": pod.namespace, "name": pod.name,
                    "uid": pod.uid}
        await kube.record_event(core, involved, reason, message, component="podnet-sync")
        return None

    async def report_policy(policy: Mapping[str, str], reason: str, message: str) -> object:
        kind = policy.get("kind") or "NetworkPolicy"
        involved = {"apiVersion": POLICY_API_VERSIONS.get(kind, "networking.k8s.io/v1"),
                    "kind": kind, **policy}
        await kube.record_event(core, involved, reason, message, component="podnet-sync")
        return None

    async def pods_now() -> list[dict[str, Any]]:
        return await kube.list_now(list_pods, "Pod")

    async def subnet_status(name: str, status: Mapping[str, Any]) -> object:
        await kube.patch_subnet_status(custom, name, status)
        return None

    return ClusterHooks(patch, report, pods_now, subnet_status, report_policy)


async def _run_until(worker: SyncWorker, tasks: list[asyncio.Task[None]],
                     stop: asyncio.Event) -> None:
    runner = asyncio.create_task(worker.run())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([runner, stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in (runner, stopper, *tasks):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


SSL_OPTIONS = {
    "--ovn-nb-private-key": "ovn_nb_private_key",
    "--ovn-nb-certificate": "ovn_nb_certificate",
    "--ovn-nb-ca-cert": "ovn_nb_ca_cert",
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "sync", help="mirror allocations and Services into OVN; keep the IPAM true",
        description="Follow pods, services, endpointslices, nodes, Subnets and IPPools "
        "(Kubernetes API, or --manifests DIR standalone), bind and release addresses, and "
        "write OVN's northbound database: switches, ports, router, load balancers. "
        "Serves /metrics, /healthz and /readyz on --listen.",
    )
    add_redis_options(parser)
    _add_ovn_nb_arguments(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--manifests", type=Path, metavar="DIR",
                        help="standalone: read objects from YAML files in DIR")
    source.add_argument("--kubeconfig", type=Path, metavar="PATH",
                        help="kubeconfig file (default: in-cluster, else ~/.kube/config)")
    source.add_argument("--in-cluster", action="store_true",
                        help="use the pod's service account")
    parser.add_argument("--resync-interval", type=float, default=60.0, metavar="SECONDS",
                        help="seconds between full resyncs (default %(default)s)")
    parser.add_argument("--release-grace", type=float, default=30.0, metavar="SECONDS",
                        help="free a vanished pod's address only this long after it was "
                        "bound (default %(default)s)")
    parser.add_argument("--orphan-margin", type=float, default=15.0, metavar="SECONDS",
                        help="free a reservation that no stored pod carries once a list of "
                        "the pods started this long after it was made shows none with its "
                        "token (default %(default)s)")
    parser.add_argument("--listen", type=parse_listen, default=DEFAULT_SYNC_LISTEN,
                        metavar="HOST:PORT",
                        help="serve /metrics, /healthz and /readyz here, IPv6 in brackets "
                        f"(default {DEFAULT_SYNC_LISTEN})")
    parser.set_defaults(handler=_main)


def _add_ovn_nb_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ovn-nb", required=True, metavar="REMOTE[,REMOTE...]",
                        help="OVN NB database: tcp:IP:PORT, ssl:IP:PORT or unix:PATH; "
                        "several, comma-separated, for a clustered NB; ssl: needs the "
                        "three --ovn-nb-* files below")
    ssl_help = {
        "--ovn-nb-private-key": "TLS private key (as ovn-nbctl -p)",
        "--ovn-nb-certificate": "its certificate, signed by a CA the NB trusts "
                                "(as ovn-nbctl -c)",
        "--ovn-nb-ca-cert": "the CA certificate that signed the NB's certificate "
                            "(as ovn-nbctl -C)",
    }
    for option, text in ssl_help.items():
        parser.add_argument(option, type=Path, metavar="FILE", help=text)


def ssl_files_of(args: argparse.Namespace) -> SslFiles | None:
    """The NB's TLS files, checked: each given one readable, all three for ssl: remotes."""
    given = {option: getattr(args, dest) for option, dest in SSL_OPTIONS.items()}
    for option, path in given.items():
        if path is not None:
            _check_readable(option, path)
    key, certificate, ca_cert = given.values()
    if key is not None and certificate is not None and ca_cert is not None:
        return SslFiles(key, certificate, ca_cert)
    missing = ", ".join(option for option, path in given.items() if path is None)
    if ssl_remotes(args.ovn_nb):
        raise OptionError(f"--ovn-nb {args.ovn_nb}: an ssl: remote needs "
                          f"{', '.join(SSL_OPTIONS)}; missing {missing}")
    if any(path is not None for path in given.values()):
        raise OptionError(f"{missing} missing: the three TLS options go together")
    return None


def _check_readable(option: str, path: Path) -> None:
    if not path.exists():
        raise OptionError(f"{option} {path}: no such file")
    if not path.is_file():
        raise OptionError(f"{option} {path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise OptionError(f"{option} {path}: not readable by this user")


def options_of(args: argparse.Namespace) -> SyncOptions:
    """The worker's options from the command line; :class:`OptionError` if unusable."""
    if args.manifests is not None and not args.manifests.is_dir():
        raise OptionError(f"--manifests {args.manifests}: not a directory")
    host, port = args.listen
    return SyncOptions(
        redis=redis_settings(args),
        ovn_nb=args.ovn_nb,
        sync=SyncSettings(resync_interval_s=args.resync_interval,
                          release_grace_s=args.release_grace,
                          orphan_margin_s=args.orphan_margin, settle_heap=True),
        manifests=args.manifests,
        kube=kube.KubeSettings(args.kubeconfig, True if args.in_cluster else None),
        ovn_nb_ssl=ssl_files_of(args),
        http=HttpSettings(host, port),
    )


def _main(args: argparse.Namespace) -> int:
    try:
        options = options_of(args)
    except OptionError as exc:
        print(f"podnet: error: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = stop_on_signals()
        await run_sync(options, stop)

    try:
        asyncio.run(main())
    except (kube.KubeError, OvsdbError, OSError) as exc:
        print(f"podnet: error: {exc}", file=sys.stderr)
        return 1
    return 0
