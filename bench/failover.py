"""Failover: what losing a machine of the control plane costs podnet, measured on real
daemons on loopback.

Run from the repository root: ``python bench/failover.py`` (``--help`` for the options).

- **OVN NB raft**: three NB members; the sync worker's NB writer reconciles a burst of
  ``--pods`` pods (in transactions of ``--batch`` rows, as a large step is cut) while the
  leader is killed with SIGKILL ``--kill-after`` seconds in. ``nb_converge_s`` is the
  time from the kill until the NB holds exactly the desired rows; ``nb_lost_rows`` and
  ``nb_duplicate_rows`` count desired ports missing or written twice. As a reference the
  same burst runs on an undisturbed cluster (``nb_reference_s``), so the ratio says what
  the kill cost.
- **OVN SB raft and northd**: three SB members and two ovn-northd; the SB leader is
  killed and the active northd stopped, then a logical switch is added in the NB:
  ``sb_converge_s`` is the time until its datapath is in the SB, written by the standby
  northd through the new SB leader (``northd_takeover_s`` until a northd is active).

It ends with one line ``RESULT name=failover key=value ...``; targets: converge <= 15 s,
nothing lost or doubled.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipam.subnet import build_subnet
from podnet.ovn import NB_SCHEMA
from podnet.ovn_raft import RaftCentral, RaftDatabase
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.cluster import parse_pod
from podnet_sync.nb import Northbound, NorthboundError
from podnet_sync.nb_model import DesiredState
from podnet_sync.topology import ClusterView, NodeJoin, desired_state


def pod(index: int) -> Any:
    ip = ipaddress.ip_address("10.20.0.10") + index
    return parse_pod({
        "metadata": {"namespace": "default", "name": f"p{index}", "uid": f"u-{index}",
                     "annotations": {
                         "ovn.kubernetes.io/allocated": "true",
                         "ovn.kubernetes.io/logical_switch": "apps",
                         "ovn.kubernetes.io/ip_address": str(ip),
                         "ovn.kubernetes.io/mac_address":
                             f"0a:00:00:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:"
                             f"{index & 255:02x}"}},
        "spec": {"nodeName": "node1"}, "status": {"phase": "Running"}})


def desired(count: int) -> DesiredState:
    return desired_state(ClusterView(
        subnets=[build_subnet("apps", "10.20.0.0/16"), build_subnet("join", "100.64.0.0/16")],
        pods=[pod(i) for i in range(count)],
        nodes=[NodeJoin("node1", (ipaddress.ip_address("100.64.0.2"),), "0a:58:64:40:00:02")],
        services=[], slices=[]))


def settle(writer: Northbound, state: DesiredState, timeout_s: float) -> int:
    """Reconcile until a step changes nothing, retrying failed steps as the worker does;
    the number of failed steps."""
    failures, deadline = 0, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if writer.reconcile(state).changes == 0:
                return failures
        except NorthboundError:
            failures += 1
            time.sleep(0.1)
    raise SystemExit(f"the NB did not converge within {timeout_s} s")


def port_counts(db: RaftDatabase) -> collections.Counter[str]:
    api = nb_api(db.remote)
    try:
        return collections.Counter(row.name for row in
                                   api.tables["Logical_Switch_Port"].rows.values())
    finally:
        close_api(api)


def nb_burst(directory: Path, pods: int, batch: int, kill_after_s: float | None
             ) -> dict[str, float]:
    """One burst into a fresh NB cluster, with (or without) the leader killed mid-way."""
    with RaftDatabase(directory, NB_SCHEMA, "OVN_Northbound", prefix="nb") as db:
        api = nb_api(db.remote)
        try:
            writer, state = Northbound(api, max_changes=batch), desired(pods)
            killed: list[float] = []
            leader = db.leader()
            assert leader is not None

            def kill() -> None:
                db.kill(leader)
                killed.append(time.monotonic())

            killer = threading.Timer(kill_after_s, kill) if kill_after_s is not None else None
            began = time.monotonic()
            if killer is not None:
                killer.start()
            failures = settle(writer, state, 120)
            ended = time.monotonic()
            if killer is not None:
                killer.join()
        finally:
            close_api(api)
        counts = port_counts(db)
    wanted = set(state.switch_ports)
    return {"took_s": ended - began, "after_kill_s": ended - killed[0] if killed else 0.0,
            "failures": failures, "lost": len(wanted - set(counts)),
            "duplicates": sum(1 for count in counts.values() if count > 1)}


def wait_until(check: Any, timeout_s: float) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout_s:
            raise SystemExit(f"not within {timeout_s} s")
        time.sleep(0.05)
    return time.monotonic() - began


def sb_failover(directory: Path) -> dict[str, float]:
    """The SB leader killed and the active northd stopped: how long until an NB change
    reaches the SB again."""
    with RaftCentral(directory) as central:
        active, leader = central.active_northd(), central.sb.leader()
        assert active is not None and leader is not None
        began = time.monotonic()
        active.stop()
        central.sb.kill(leader)
        central.nbctl("ls-add", "after-failover")
        takeover = wait_until(lambda: central.active_northd() is not None, 60)
        wait_until(lambda: "after-failover" in central.sbctl(
            "--bare", "--columns=external_ids", "list", "Datapath_Binding"), 60)
        return {"sb_converge_s": time.monotonic() - began, "northd_takeover_s": takeover}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=2000, help="pods in the NB burst")
    parser.add_argument("--batch", type=int, default=100,
                        help="rows per NB transaction (default 100)")
    parser.add_argument("--kill-after", type=float, default=0.5,
                        help="seconds into the burst the NB leader is killed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="podnet-failover-") as tmp:
        root = Path(tmp)
        reference = nb_burst(root / "reference", args.pods, args.batch, None)
        faulted = nb_burst(root / "faulted", args.pods, args.batch, args.kill_after)
        sb = sb_failover(root / "central")
    print(f"{'NB burst':<28} {'seconds':>8} {'failed steps':>13} {'lost':>5} {'doubled':>8}")
    for label, run in (("undisturbed", reference), ("leader killed", faulted)):
        print(f"{label:<28} {run['took_s']:>8.2f} {run['failures']:>13.0f} "
              f"{run['lost']:>5.0f} {run['duplicates']:>8.0f}")
    print(f"ratio (killed / undisturbed): {faulted['took_s'] / reference['took_s']:.2f}")
    print(f"SB leader killed + active northd stopped: NB change in SB after "
          f"{sb['sb_converge_s']:.2f} s (standby northd active after "
          f"{sb['northd_takeover_s']:.2f} s)")
    result = {
        "pods": args.pods, "nb_converge_s": f"{faulted['after_kill_s']:.2f}",
        "nb_reference_s": f"{reference['took_s']:.2f}",
        "nb_lost_rows": int(faulted["lost"]), "nb_duplicate_rows": int(faulted["duplicates"]),
        "nb_failed_steps": int(faulted["failures"]),
        "sb_converge_s": f"{sb['sb_converge_s']:.2f}",
        "northd_takeover_s": f"{sb['northd_takeover_s']:.2f}",
    }
    print("RESULT name=failover " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
