"""``podnet sync``: the sync worker wired to its sources, Redis and the NB database.

Objects come from the Kubernetes API (one list-then-watch ``Watcher`` per kind) or,
standalone, from a manifests folder re-read when a file changes. Either way they land
in ``Store``s and every change marks the worker dirty; the worker's first step waits
until every store has its first full list, so nothing is released for being unseen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import CoreV1Api

from ipam.nb import Northbound
from ipam.settings import DEFAULT_REDIS_URL, RedisSettings
from ipam.store import Ipam
from ipam.sync import KINDS, SyncSettings, SyncWorker
from podnet import kube
from podnet.manifests import manifest_files, read_manifests

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncOptions:
    redis: RedisSettings
    ovn_nb: str
    """One remote, or several comma-separated for a clustered NB."""
    sync: SyncSettings
    manifests: Path | None = None
    kube: kube.KubeSettings | None = None


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
    """Per-kind watch handlers that mark the worker dirty."""
    def for_kind(kind: str) -> Any:
        async def on_event(event: kube.WatchEvent) -> None:
            if isinstance(event, kube.Snapshot):
                worker.mark(kind, full=True)
            else:
                worker.mark(kind, event.obj)
        return on_event
    return for_kind


async def run_sync(options: SyncOptions, stop: asyncio.Event) -> None:
    from podnet.ovn import close_api, nb_api

    ipam = Ipam.connect(options.redis)
    api = await asyncio.to_thread(nb_api, options.ovn_nb)
    try:
        if options.manifests is not None:
            source = ManifestStores(options.manifests)
            source.refresh()
            worker = SyncWorker(ipam, Northbound(api), source.stores, options.sync)
            tasks = [asyncio.create_task(follow_manifests(source, worker, 2.0))]
            await _run_until(worker, tasks, stop)
            return
        client = kube.connect(options.kube or kube.KubeSettings())
        core = CoreV1Api(client)

        async def patch(namespace: str, name: str, annotations: Mapping[str, str]) -> object:
            return await kube.patch_pod_annotations(core, namespace, name, annotations)

        stores = {kind: kube.Store() for kind in KINDS}
        worker = SyncWorker(ipam, Northbound(api), stores, options.sync, patch_pod=patch)
        async with kube_watchers(client, stores, marking(worker)) as watchers:
            for watcher in watchers:
                await watcher.store.wait_synced()
            log.info("all kinds listed; syncing")
            await _run_until(worker, [], stop)
    finally:
        await ipam.close()
        await asyncio.to_thread(close_api, api)


async def _run_until(worker: SyncWorker, tasks: list[asyncio.Task[None]],
                     stop: asyncio.Event) -> None:
    runner = asyncio.create_task(worker.run())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([runner, stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in (runner, stopper, *tasks):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "sync", help="mirror allocations and Services into OVN; keep the IPAM true",
        description="Follow pods, services, endpointslices, nodes, Subnets and IPPools "
        "(Kubernetes API, or --manifests DIR standalone), bind and release addresses, and "
        "write OVN's northbound database: switches, ports, router, load balancers.",
    )
    parser.add_argument("--redis", default=DEFAULT_REDIS_URL, metavar="URL",
                        help="the IPAM's Redis (default %(default)s)")
    parser.add_argument("--prefix", default="podnet:", help="IPAM key prefix (default %(default)s)")
    parser.add_argument("--ovn-nb", required=True, metavar="REMOTE[,REMOTE...]",
                        help="OVN NB database: tcp:IP:PORT, ssl:IP:PORT or unix:PATH; "
                        "several, comma-separated, for a clustered NB")
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
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    if args.manifests is not None and not args.manifests.is_dir():
        print(f"podnet: error: --manifests {args.manifests}: not a directory")
        return 2
    options = SyncOptions(
        redis=RedisSettings(url=args.redis, prefix=args.prefix),
        ovn_nb=args.ovn_nb,
        sync=SyncSettings(resync_interval_s=args.resync_interval,
                          release_grace_s=args.release_grace),
        manifests=args.manifests,
        kube=kube.KubeSettings(args.kubeconfig, True if args.in_cluster else None),
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
        await run_sync(options, stop)

    try:
        asyncio.run(main())
    except (kube.KubeError, OSError) as exc:
        print(f"podnet: error: {exc}")
        return 1
    return 0
