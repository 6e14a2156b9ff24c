"""``podnet ic``: the IC controller wired to the Kubernetes API and the OVN databases.

It lists and watches ConfigMaps of ``kube-system`` (for ``ovn-ic-config``), Subnets and
Nodes, and runs :meth:`podnet_ic.controller.IcController.reconcile` after every change (of
those, and of what ``ovn-ic`` writes in the local NB: the transit switch's ports, learned
routes) and every ``--resync-interval`` seconds (which is also how a dead ``ovn-ic`` is started
again). Around each reconcile it labels the gateway Nodes ``ovn.kubernetes.io/ic-gw=true``
(the node agent then sets ``ovn-is-interconn`` on their Open vSwitch) and removes the
label from the others, and reports refused routes and unusable configurations as
Events on the ConfigMap. An invalid ConfigMap leaves the running setup as it is. One
bad Subnet or Node is skipped; a failed reconcile is retried at the next tick.

``/metrics``, ``/healthz`` and ``/readyz`` are served on ``--listen``.

With ``--leader-elect`` several replicas run and one leads, through the Lease
``--lease-namespace``/``--lease-name`` (``podnet_plumbing.lease``). A standby follows
nothing, reconciles nothing and runs no ``ovn-ic``; it is ready (``/readyz`` says
``standby``, ``podnet_ic_leader`` is 0). The leader reconciles as a single replica does.
When leadership ends (the lease lost, or released on a stop) the reconcile loop stops and
so does the ``ovn-ic`` this replica started: a former leader's ``ovn-ic`` could hold the
local SB's lock and keep serving the old configuration, such as an AZ the new leader
has torn down. Traffic does not depend on ``ovn-ic``, and the new leader starts its own
at its first reconcile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes.client import CoreV1Api
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from ipam.annotations import IC_GATEWAY_LABEL
from ipam.cli import parse_listen, url_of
from ipam.interconnect import IC_CONFIG_NAME, IC_CONFIG_NAMESPACE, IcConfig, IcConfigError
from ipam.subnet import JOIN_CIDR, JOIN_SUBNET
from podnet_ic.config import DISABLED, config_of
from podnet_ic.controller import ClusterInputs, IcController, Outcome
from podnet_ic.daemon import IcDaemonError, stop_any
from podnet_ic.desired import IcSubnet, Refusal
from podnet_ic.nb import IcDatabaseError
from podnet_plumbing import kube
from podnet_plumbing.lease import LeaderElector, LeaseSettings
from podnet_plumbing.ovsdb import OvsdbError
from podnet_plumbing.signals import stop_on_signals

log = logging.getLogger(__name__)

GW_LABEL = IC_GATEWAY_LABEL
COMPONENT = "podnet-ic"
DEFAULT_IC_LISTEN = "0.0.0.0:9478"
"""Beside the sync worker's 9477."""
DEFAULT_LEASE_NAMESPACE = "podnet-system"
DEFAULT_LEASE_NAME = "podnet-ic"


@dataclass(frozen=True)
class IcOptions:
    ovn_nb: str
    ovn_sb: str
    state_dir: Path
    kube: kube.KubeSettings
    listen: tuple[str, int] | None = None
    resync_interval_s: float = 5.0
    leader_election: LeaseSettings | None = None
    """None: this is the only replica, it always reconciles."""


class IcMetrics:
    """The controller's metrics, on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reconciles = Counter("podnet_ic_reconciles_total", "IC reconciles by result",
                                  ["result"], registry=self.registry)
        self.enabled = Gauge("podnet_ic_enabled",
                             "1 while ovn-ic-config enables interconnection",
                             registry=self.registry)
        self.refused = Gauge("podnet_ic_refused_routes",
                             "Remote prefixes not learned because they overlap a local "
                             "subnet", registry=self.registry)
        self.refusals = Counter("podnet_ic_route_refusals_total",
                                "Remote prefixes newly refused", registry=self.registry)
        self.starts = Counter("podnet_ic_ovn_ic_starts_total",
                              "Times ovn-ic was started (first start and restarts)",
                              registry=self.registry)
        self.invalid = Gauge("podnet_ic_config_invalid",
                             "1 while ovn-ic-config holds an unusable value",
                             registry=self.registry)
        self.leader = Gauge("podnet_ic_leader",
                            "1 while this replica leads and reconciles (always, without "
                            "--leader-elect); 0 while it stands by", registry=self.registry)
        self.ready = False
        self.standby = False

    def render(self) -> bytes:
        body: bytes = generate_latest(self.registry)
        return body


def make_app(metrics: IcMetrics) -> web.Application:
    async def get_metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def get_healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_readyz(_: web.Request) -> web.Response:
        if metrics.standby:  # ready to take over; another replica leads
            return web.json_response({"status": "ready", "role": "standby"})
        if not metrics.ready:
            return web.json_response({"status": "unready",
                                      "reason": "no reconcile has succeeded yet"}, status=503)
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/readyz", get_readyz)
    return app


@contextlib.asynccontextmanager
async def serving(metrics: IcMetrics, listen: tuple[str, int] | None) -> AsyncIterator[int]:
    """Serve the endpoints until the block exits; yields the port (0 when none)."""
    if listen is None:
        yield 0
        return
    runner = web.AppRunner(make_app(metrics), access_log=None)
    await runner.setup()
    try:
        host, port = listen
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise OSError(f"cannot listen on {url_of(host, port)}: "
                          f"{exc.strerror or exc}") from exc
        bound = next((int(a[1]) for a in runner.addresses if isinstance(a, tuple)), port)
        log.info("metrics and probes on %s", url_of(host, bound))
        yield bound
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ inputs


def subnet_of(obj: Mapping[str, Any]) -> IcSubnet:
    """A Subnet object as IC sees it; ``ValueError`` naming the field if unusable."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    spec = obj.get("spec") or {}
    block = spec.get("cidrBlock") if isinstance(spec, Mapping) else None
    if not name or not isinstance(block, str):
        raise ValueError(f"subnet {name or '(unnamed)'}: spec.cidrBlock is missing")
    cidrs = []
    for part in block.split(","):
        try:
            cidrs.append(str(ipaddress.ip_network(part.strip(), strict=False)))
        except ValueError as exc:
            raise ValueError(f"subnet {name}: spec.cidrBlock {block!r}: {exc}") from exc
    disabled = spec.get("disableInterConnection") is True
    return IcSubnet(name, tuple(cidrs), disabled)


def node_addresses(obj: Mapping[str, Any]) -> list[str]:
    status = obj.get("status") or {}
    found = []
    for address in status.get("addresses") or () if isinstance(status, Mapping) else ():
        if isinstance(address, Mapping) and address.get("type") == "InternalIP":
            with contextlib.suppress(ValueError):
                found.append(str(ipaddress.ip_address(str(address.get("address")))))
    return found


def inputs_of(subnets: Sequence[Mapping[str, Any]],
              nodes: Sequence[Mapping[str, Any]]) -> ClusterInputs:
    parsed: list[IcSubnet] = []
    for obj in subnets:
        try:
            parsed.append(subnet_of(obj))
        except ValueError as exc:
            log.warning("skipped: %s", exc)
    join = next((s for s in parsed if s.name == JOIN_SUBNET), None)
    if join is None:
        parsed.append(IcSubnet(JOIN_SUBNET, (JOIN_CIDR,)))
    join_cidrs = join.cidrs if join else (JOIN_CIDR,)
    addresses = sorted({ip for node in nodes for ip in node_addresses(node)})
    return ClusterInputs(tuple(sorted(parsed, key=lambda s: s.name)), join_cidrs,
                         tuple(addresses))


# ------------------------------------------------------------------ the loop


class IcRunner:
    """Follows the stores and reconciles; reports what the reconcile found."""

    def __init__(self, controller: IcController, client: Any, stores: Mapping[str, kube.Store],
                 metrics: IcMetrics, resync_interval_s: float) -> None:
        self.controller = controller
        self.core = CoreV1Api(client)
        self.stores = stores
        self.metrics = metrics
        self.resync_interval_s = resync_interval_s
        self.wake = asyncio.Event()
        self.config: IcConfig = DISABLED
        self._config_error: str | None = None
        self._reported: set[tuple[str, str]] = set()

    def mark(self, _kind: str) -> Any:
        async def on_event(_event: kube.WatchEvent) -> None:
            self.wake.set()
        return on_event

    def config_map(self) -> dict[str, Any] | None:
        return self.stores["ConfigMap"].get(IC_CONFIG_NAME, IC_CONFIG_NAMESPACE)

    async def _event(self, reason: str, message: str, event_type: str = "Warning") -> None:
        obj = self.config_map()
        metadata = (obj or {}).get("metadata") or {}
        involved = {"kind": "ConfigMap", "namespace": IC_CONFIG_NAMESPACE,
                    "name": IC_CONFIG_NAME, "uid": str(metadata.get("uid") or "")}
        try:
            await kube.record_event(self.core, involved, reason, message, component=COMPONENT,
                                    event_type=event_type)
        except kube.KubeError as exc:
            log.warning("event %s not recorded: %s", reason, exc)

    async def read_config(self) -> IcConfig:
        """The ConfigMap's settings; an invalid one keeps the last good settings."""
        try:
            config = config_of(self.config_map())
        except IcConfigError as exc:
            message = str(exc)
            self.metrics.invalid.set(1)
            if message != self._config_error:
                log.error("%s; keeping the current setup", message)
                await self._event("InvalidConfig", f"{message}; the current setup is kept")
            self._config_error = message
            return self.config
        self.metrics.invalid.set(0)
        self._config_error = None
        return config

    async def step(self) -> Outcome | None:
        config = await self.read_config()
        inputs = inputs_of(self.stores["Subnet"].list(), self.stores["Node"].list())
        try:
            outcome = await asyncio.to_thread(self.controller.reconcile, config, inputs)
        except (IcDatabaseError, IcDaemonError, OvsdbError) as exc:
            self.metrics.reconciles.labels("failed").inc()
            log.error("reconcile failed: %s", exc)
            return None
        except Exception:  # a bug must not end the loop: the next tick tries again
            self.metrics.reconciles.labels("failed").inc()
            log.exception("reconcile failed")
            return None
        self.config = config
        self.metrics.reconciles.labels("ok").inc()
        self.metrics.ready = True
        self.metrics.enabled.set(1 if config.enabled else 0)
        if outcome.started is not None:
            self.metrics.starts.inc()
        for change in outcome.changes:
            log.info("%s", change)
        for problem in outcome.problems:
            log.info("waiting: %s", problem)
        await self._report_refusals(outcome.refusals)
        await self.label_gateways(outcome.gw_nodes if config.enabled else ())
        return outcome

    async def _report_refusals(self, refusals: tuple[Refusal, ...]) -> None:
        self.metrics.refused.set(len(refusals))
        current = {(r.az, r.prefix) for r in refusals}
        for refusal in refusals:
            if (refusal.az, refusal.prefix) in self._reported:
                continue
            log.warning("%s", refusal.message)
            self.metrics.refusals.inc()
            await self._event("RouteRefused", refusal.message)
        self._reported = current

    async def label_gateways(self, gw_nodes: tuple[str, ...]) -> None:
        """``ovn.kubernetes.io/ic-gw=true`` on exactly the gateway nodes."""
        wanted = set(gw_nodes)
        for node in self.stores["Node"].list():
            name = str((node.get("metadata") or {}).get("name") or "")
            labels = (node.get("metadata") or {}).get("labels") or {}
            has = labels.get(GW_LABEL) == "true"
            if (name in wanted) == has or not name:
                continue
            value = "true" if name in wanted else None
            try:
                await asyncio.to_thread(
                    self.core.patch_node, name, {"metadata": {"labels": {GW_LABEL: value}}},
                    _content_type=kube.MERGE_PATCH, _request_timeout=10)
                log.info("node %s: label %s %s", name, GW_LABEL, value or "removed")
            except Exception as exc:  # one node's failure never stops the others
                log.warning("node %s: label %s not changed: %s", name, GW_LABEL, exc)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.wake.clear()
            await self.step()
            waiters = [asyncio.create_task(self.wake.wait()), asyncio.create_task(stop.wait())]
            await asyncio.wait(waiters, timeout=self.resync_interval_s,
                               return_when=asyncio.FIRST_COMPLETED)
            for task in waiters:
                task.cancel()


def listers(client: Any) -> dict[str, Any]:
    core = CoreV1Api(client)

    def list_config_maps(**options: Any) -> Any:
        return core.list_namespaced_config_map(IC_CONFIG_NAMESPACE, **options)

    return {"ConfigMap": list_config_maps, "Subnet": kube.lister(client, "Subnet"),
            "Node": kube.lister(client, "Node")}


async def reconcile_until(options: IcOptions, stop: asyncio.Event, api: Any,
                          metrics: IcMetrics, watch: kube.WatchSettings | None = None) -> None:
    """Follow the ConfigMap, Subnets and Nodes and reconcile until ``stop`` is set."""
    controller = await asyncio.to_thread(IcController, options.ovn_nb, options.ovn_sb,
                                         options.state_dir)
    try:
        stores = {kind: kube.Store() for kind in ("ConfigMap", "Subnet", "Node")}
        runner = IcRunner(controller, api, stores, metrics, options.resync_interval_s)
        loop = asyncio.get_running_loop()

        def wake_runner() -> None:  # from the NB connection's thread
            loop.call_soon_threadsafe(runner.wake.set)

        controller.on_local_changes(wake_runner)
        watchers = [kube.Watcher(list_fn, kind, runner.mark(kind), store=stores[kind],
                                 settings=watch)
                    for kind, list_fn in listers(api).items()]
        for watcher in watchers:
            watcher.start()
        try:
            for watcher in watchers:
                await watcher.store.wait_synced()
            log.info("ConfigMaps, Subnets and Nodes listed; reconciling")
            await runner.run(stop)
        finally:
            for watcher in watchers:
                await watcher.stop()
    finally:
        await asyncio.to_thread(controller.close)


class Leadership:
    """What a replica does as leadership comes and goes: a reconcile loop per term."""

    def __init__(self, options: IcOptions, api: Any, metrics: IcMetrics,
                 watch: kube.WatchSettings | None, halt: asyncio.Event) -> None:
        self.options = options
        self.api = api
        self.metrics = metrics
        self.watch = watch
        self.halt = halt
        self.failure: BaseException | None = None
        self._term: tuple[asyncio.Event, asyncio.Task[None]] | None = None

    def standing_by(self) -> None:
        self.metrics.leader.set(0)
        self.metrics.standby = True

    async def started(self) -> None:
        """Leader now: start reconciling (ready again once a reconcile succeeds)."""
        self.metrics.leader.set(1)
        self.metrics.standby = False
        self.metrics.ready = False
        stop = asyncio.Event()
        task = asyncio.create_task(reconcile_until(self.options, stop, self.api, self.metrics,
                                                   self.watch))
        task.add_done_callback(self._ended)
        self._term = (stop, task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failure = task.exception()
            self.halt.set()  # a loop that cannot run: give the lease up and fail

    async def stopped(self) -> None:
        """Leader no more: stop reconciling, and stop this replica's ovn-ic."""
        self.standing_by()
        if self._term is not None:
            stop, task = self._term
            self._term = None
            stop.set()
            with contextlib.suppress(Exception):  # reported through ``failure``
                await task
        if await asyncio.to_thread(stop_any, self.options.state_dir):
            log.info("stopped this replica's ovn-ic: it leads no more")


async def run_ic(options: IcOptions, stop: asyncio.Event, client: Any | None = None,
                 watch: kube.WatchSettings | None = None) -> None:
    """Run until ``stop`` is set. ``ovn-ic`` keeps running after a plain exit (traffic
    and learned routes do not depend on this process); IC off stops it. With leader
    election, reconcile only while leading (the module's docstring)."""
    metrics = IcMetrics()
    async with serving(metrics, options.listen):
        api = client if client is not None else kube.connect(options.kube)
        if options.leader_election is None:
            metrics.leader.set(1)
            await reconcile_until(options, stop, api, metrics, watch)
            return
        await lead_when_elected(options, options.leader_election, stop, api, metrics, watch)


async def lead_when_elected(options: IcOptions, settings: LeaseSettings, stop: asyncio.Event,
                            api: Any, metrics: IcMetrics,
                            watch: kube.WatchSettings | None = None) -> None:
    """Stand by, lead when the lease is ours, stand by again when it is lost; release it
    on ``stop``. A reconcile loop that fails to run ends this with its error."""
    halt = asyncio.Event()
    leadership = Leadership(options, api, metrics, watch, halt)
    leadership.standing_by()
    if await asyncio.to_thread(stop_any, options.state_dir):
        log.info("stopped an ovn-ic left in %s: only the leader runs one",
                 options.state_dir)
    log.info("leader election on lease %s as %s", settings.where, settings.identity)
    relay = asyncio.create_task(_relay(stop, halt))
    try:
        await LeaderElector(api, settings).run(halt, leadership.started, leadership.stopped)
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
    if leadership.failure is not None:
        raise leadership.failure


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


# ------------------------------------------------------------------ command line


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "ic", help="interconnect this cluster with others over OVN-IC (ovn-ic-config)",
        description="Follow ConfigMap kube-system/ovn-ic-config (Kube-OVN's keys: enable-ic, "
        "az-name, ic-db-host, ic-nb-port, ic-sb-port, gw-nodes, auto-route), Subnets and "
        "Nodes; join this cluster's OVN to the IC databases as availability zone az-name: "
        "transit switch ts, router port <az>-ts with gateway chassis on the gw-nodes, "
        "route advertisement and learning, and one ovn-ic supervised by PID. Labels the "
        f"gateway Nodes {GW_LABEL}=true. Serves /metrics, /healthz and /readyz on --listen.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--kubeconfig", type=Path, metavar="PATH",
                        help="kubeconfig file (default: in-cluster, else ~/.kube/config)")
    source.add_argument("--in-cluster", action="store_true",
                        help="use the pod's service account")
    parser.add_argument("--ovn-nb", required=True, metavar="REMOTE[,REMOTE...]",
                        help="this cluster's OVN NB: tcp:IP:PORT or unix:PATH; several, "
                        "comma-separated, for a clustered NB")
    parser.add_argument("--ovn-sb", required=True, metavar="REMOTE[,REMOTE...]",
                        help="this cluster's OVN SB, as --ovn-nb")
    parser.add_argument("--state-dir", required=True, type=Path, metavar="DIR",
                        help="where ovn-ic's pidfile, log and control socket go")
    parser.add_argument("--listen", type=parse_listen, default=DEFAULT_IC_LISTEN,
                        metavar="HOST:PORT",
                        help="serve /metrics, /healthz and /readyz here, IPv6 in brackets "
                        f"(default {DEFAULT_IC_LISTEN})")
    parser.add_argument("--resync-interval", type=float, default=5.0, metavar="SECONDS",
                        help="seconds between reconciles without a change; also how soon a "
                        "dead ovn-ic is started again (default %(default)s)")
    election = parser.add_argument_group(
        "leader election", "several replicas, one reconciling: the holder of a "
        "coordination.k8s.io/v1 Lease; the others stand by (ready, running no ovn-ic)")
    election.add_argument("--leader-elect", action="store_true",
                          help="reconcile only while holding the lease (default: always)")
    election.add_argument("--lease-namespace", default=DEFAULT_LEASE_NAMESPACE,
                          metavar="NAMESPACE", help="the lease's namespace (default "
                          "%(default)s)")
    election.add_argument("--lease-name", default=DEFAULT_LEASE_NAME, metavar="NAME",
                          help="the lease's name (default %(default)s)")
    election.add_argument("--lease-identity", default="", metavar="ID",
                          help="this replica's name in the lease, unique among them "
                          "(default: host name and PID; in a pod, its name)")
    election.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS",
                          help="how long the standbys wait after the leader's last renewal "
                          "(default %(default)s)")
    election.add_argument("--renew-deadline", type=float, default=10.0, metavar="SECONDS",
                          help="how long the leader tries to renew before it steps down "
                          "(default %(default)s)")
    election.add_argument("--retry-period", type=float, default=2.0, metavar="SECONDS",
                          help="how often the leader renews and a standby tries "
                          "(default %(default)s)")
    parser.set_defaults(handler=_main)


def options_of(args: argparse.Namespace) -> IcOptions:
    if args.resync_interval <= 0:
        raise ValueError(f"--resync-interval {args.resync_interval}: must be above 0")
    election = None
    if args.leader_elect:
        election = LeaseSettings(
            args.lease_name, args.lease_namespace, identity=args.lease_identity,
            lease_duration_s=args.lease_duration, renew_deadline_s=args.renew_deadline,
            retry_period_s=args.retry_period)
    return IcOptions(
        ovn_nb=args.ovn_nb, ovn_sb=args.ovn_sb, state_dir=args.state_dir,
        kube=kube.KubeSettings(args.kubeconfig, True if args.in_cluster else None),
        listen=args.listen, resync_interval_s=args.resync_interval,
        leader_election=election)


def _main(args: argparse.Namespace) -> int:
    try:
        options = options_of(args)
    except ValueError as exc:
        print(f"podnet: error: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = stop_on_signals()
        await run_ic(options, stop)

    try:
        asyncio.run(main())
    except (kube.KubeError, OvsdbError, IcDatabaseError, OSError) as exc:
        print(f"podnet: error: {exc}", file=sys.stderr)
        return 1
    return 0
