"""Many pods' worth of NB rows, and the sync worker's way of writing them: what the raft
failover test and ``bench/failover.py`` drive into a clustered NB."""

from __future__ import annotations

import collections
import ipaddress
import time
from typing import Any

from ipam.subnet import build_subnet
from podnet.ovn_raft import RaftDatabase
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
