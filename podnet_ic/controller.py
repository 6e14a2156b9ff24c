"""The IC controller's reconcile: config + cluster -> the four databases and ``ovn-ic``.

:class:`IcController` is what ``podnet ic`` runs on every change and periodically
(``podnet_ic.main`` feeds it from the Kubernetes API); tests drive it directly with a
parsed ConfigMap and subnets. One reconcile:

1. tears down what a previous configuration set up when the AZ name or the IC
   databases changed (or IC was turned off, or the ConfigMap deleted): stop ``ovn-ic``,
   remove podnet-ic's rows, the learned routes and the local transit switch, and the
   AZ's registration in the IC SB. gw-nodes and auto-route changes apply in place;
2. with IC on: makes the transit switch ``ts`` in the IC NB if absent, sets the local
   NB (AZ name, route options, router port, gateway chassis, switch port, policies),
   and keeps ``ovn-ic`` running with the right databases;
3. refuses (does not learn) remote prefixes that overlap a local subnet and reports
   them in its :class:`Outcome`.

Every step is idempotent: a reconcile after a crash or restart converges, and the
NB_Global marks (``podnet.io/ic-az``, ``podnet.io/ic-nb``, ``podnet.io/ic-sb``) say what
a previous process set up even when the ConfigMap is gone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipam.interconnect import IcConfig
from podnet_ic import nb
from podnet_ic.daemon import IcDaemon, stop_any
from podnet_ic.desired import (
    AZ_KEY,
    IcDesired,
    IcSubnet,
    Observed,
    Refusal,
    desired_state,
    router_port,
)
from podnet_plumbing.ovsdb import close_api, ic_nb_api, ic_sb_api, nb_api, on_changes, sb_api

log = logging.getLogger(__name__)


LOCAL_TABLES = ("Logical_Switch", "Logical_Switch_Port", "Logical_Router_Static_Route")
"""The local NB tables ``ovn-ic`` writes: its work there asks for a reconcile."""

@dataclass(frozen=True)
class ClusterInputs:
    """What the cluster says, beside the ConfigMap."""

    subnets: tuple[IcSubnet, ...] = ()
    join_cidrs: tuple[str, ...] = ()
    node_addresses: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What one reconcile did and found."""

    enabled: bool
    az: str = ""
    changes: list[str] = field(default_factory=list)
    refusals: tuple[Refusal, ...] = ()
    problems: list[str] = field(default_factory=list)
    gw_nodes: tuple[str, ...] = ()
    started: int | None = None
    """The PID of an ``ovn-ic`` this reconcile (re)started."""
    torn_down: str = ""
    """The AZ whose setup this reconcile removed."""


def _identity(config: IcConfig) -> tuple[str, str, str] | None:
    return (config.az_name, *config.remotes()) if config.enabled else None


class IcController:
    """The IC controller's state: connections, and the configuration now set up."""

    def __init__(self, ovn_nb: str, ovn_sb: str, state_dir: Path,
                 timeout_s: float = 10.0) -> None:
        self.ovn_nb = ovn_nb
        self.ovn_sb = ovn_sb
        self.state_dir = state_dir
        self.timeout_s = timeout_s
        self.local_nb = nb_api(ovn_nb, timeout_s)
        self.local_sb = sb_api(ovn_sb, timeout_s)
        self._ic: tuple[tuple[str, str], Any, Any] | None = None

    def close(self) -> None:
        self._close_ic()
        for api in (self.local_nb, self.local_sb):
            with contextlib.suppress(Exception):
                close_api(api)

    def on_local_changes(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when ``ovn-ic``'s work shows in the local NB (the transit
        switch and its ports, learned routes): a route learned is allowed through at
        once, not at the next resync."""
        on_changes(self.local_nb, LOCAL_TABLES, callback)

    def stop_daemons(self) -> bool:
        """Stop the ``ovn-ic`` this controller started."""
        return stop_any(self.state_dir)

    # ------------------------------------------------------------ connections

    def _ic_apis(self, remotes: tuple[str, str]) -> tuple[Any, Any]:
        if self._ic is not None and self._ic[0] == remotes:
            return self._ic[1], self._ic[2]
        self._close_ic()
        try:
            ic_nb = ic_nb_api(remotes[0], self.timeout_s)
        except Exception as exc:
            raise nb.IcDatabaseError(f"IC NB {remotes[0]}: {exc}") from exc
        try:
            ic_sb = ic_sb_api(remotes[1], self.timeout_s)
        except Exception as exc:
            close_api(ic_nb)
            raise nb.IcDatabaseError(f"IC SB {remotes[1]}: {exc}") from exc
        self._ic = (remotes, ic_nb, ic_sb)
        return ic_nb, ic_sb

    def _close_ic(self) -> None:
        if self._ic is not None:
            for api in self._ic[1:]:
                with contextlib.suppress(Exception):
                    close_api(api)
            self._ic = None

    def daemon(self, config: IcConfig) -> IcDaemon:
        ic_nb, ic_sb = config.remotes()
        return IcDaemon(self.state_dir, config.az_name, self.ovn_nb, self.ovn_sb, ic_nb, ic_sb)

    # ------------------------------------------------------------ reconcile

    def read_local(self) -> nb.LocalView:
        view: nb.LocalView = nb.read(self.local_nb, nb.ReadLocal(self.local_nb),
                                     "reading the local NB")
        return view

    def reconcile(self, config: IcConfig, inputs: ClusterInputs) -> Outcome:
        """One reconcile (blocking); raises :class:`podnet_ic.nb.IcDatabaseError` or
        :class:`podnet_ic.daemon.IcDaemonError` when a database or ``ovn-ic`` fails."""
        view = self.read_local()
        outcome = Outcome(config.enabled, config.az_name, gw_nodes=config.gw_nodes)
        previous_az = view.external_ids.get(AZ_KEY, "")
        previous = (previous_az, *(nb.local_remotes(view) or ("", "")))
        if previous_az and previous != _identity(config):
            self.teardown(previous_az, nb.local_remotes(view), outcome)
            view = self.read_local()
        if not config.enabled:
            self._clean(view, outcome)
            return outcome
        return self._set_up(config, inputs, view, outcome)

    def teardown(self, az: str, remotes: tuple[str, str] | None, outcome: Outcome) -> None:
        """Remove AZ ``az``'s IC setup: ``ovn-ic``, local rows, its IC SB registration."""
        log.info("tearing down the interconnection of AZ %s", az)
        if stop_any(self.state_dir):
            outcome.changes.append(f"stopped ovn-ic of AZ {az}")
        self._clean(self.read_local(), outcome)
        if remotes is not None:
            try:
                _, ic_sb = self._ic_apis(remotes)
                removed = nb.execute(ic_sb, nb.LeaveIcSb(ic_sb, az), "leaving the IC SB")
                if removed:
                    outcome.changes.append(f"removed AZ {az} from the IC SB ({removed} rows)")
            except nb.IcDatabaseError as exc:
                outcome.problems.append(f"AZ {az} left in the IC SB: {exc}")
        self._close_ic()
        outcome.torn_down = az

    def _clean(self, view: nb.LocalView, outcome: Outcome) -> None:
        if stop_any(self.state_dir):
            outcome.changes.append("stopped ovn-ic")
        desired = desired_state(IcConfig(enabled=False), (), (), (), Observed(
            routes=view.routes))
        changes = nb.execute(self.local_nb, nb.ApplyLocal(
            self.local_nb, desired, ("", ""), drop_transit_switch=True), "cleaning the local NB")
        outcome.changes.extend(changes)

    def _set_up(self, config: IcConfig, inputs: ClusterInputs, view: nb.LocalView,
                outcome: Outcome) -> Outcome:
        remotes = config.remotes()
        daemon = self.daemon(config)
        if view.az == config.az_name:  # set up before: keep ovn-ic up even if the IC DB
            started = daemon.ensure()  # is out of reach for this reconcile
            if started is not None:
                outcome.started = started
                outcome.changes.append(f"started ovn-ic of AZ {config.az_name} (pid {started})")
        ic_nb, ic_sb = self._ic_apis(remotes)
        ts_subnet: str = nb.execute(ic_nb, nb.EnsureTransitSwitch(ic_nb),
                                    "making the transit switch in the IC NB")
        remote_prefixes = nb.read(ic_sb, nb.ReadRemoteRoutes(ic_sb, config.az_name),
                                  "reading the IC SB routes")
        chassis = nb.read(self.local_sb, nb.ReadChassis(self.local_sb),
                          "reading the local SB chassis")
        observed = Observed(
            ts_subnet=ts_subnet, ts_present=view.ts_present, remote_ports=view.remote_ports,
            current_port=view.current_ports.get(router_port(config.az_name)),
            routes=view.routes, remote_prefixes=remote_prefixes, chassis=chassis)
        desired = desired_state(config, inputs.subnets, inputs.join_cidrs,
                                inputs.node_addresses, observed)
        outcome.refusals = desired.refusals
        outcome.problems.extend(desired.problems)
        outcome.changes.extend(self._apply(desired, remotes))
        started = daemon.ensure()
        if started is not None:
            outcome.started = started
            outcome.changes.append(f"started ovn-ic of AZ {config.az_name} (pid {started})")
        return outcome

    def _apply(self, desired: IcDesired, remotes: tuple[str, str]) -> list[str]:
        changes: list[str] = nb.execute(self.local_nb, nb.ApplyLocal(
            self.local_nb, desired, remotes), "writing the local NB")
        return changes

    def availability_zones(self, config: IcConfig) -> list[str]:
        """The AZs the IC SB lists (for status and tests)."""
        _, ic_sb = self._ic_apis(config.remotes())
        zones: list[str] = nb.read(ic_sb, nb.ReadAvailabilityZones(ic_sb), "reading AZs")
        return zones
