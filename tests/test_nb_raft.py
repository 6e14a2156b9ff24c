"""The sync worker's NB writer against a 3-member raft cluster: it follows the leader
through a ``kill -9``, and the rows converge with nothing lost and nothing doubled."""

from __future__ import annotations

import collections
import ipaddress
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipam.subnet import build_subnet
from podnet.ovn import NB_SCHEMA
from podnet.ovn_raft import RaftDatabase
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.cluster import parse_pod
from podnet_sync.nb import Northbound, NorthboundError
from podnet_sync.nb_model import DesiredState
from podnet_sync.topology import ClusterView, NodeJoin, desired_state

pytestmark = pytest.mark.slow
PODS = 1000


@pytest.fixture
def cluster_db(tmp_path: Path) -> Iterator[RaftDatabase]:
    with RaftDatabase(tmp_path / "nb", NB_SCHEMA, "OVN_Northbound", prefix="nb") as started:
        yield started


def pod(index: int) -> Any:
    ip = ipaddress.ip_address("10.20.0.10") + index
    return parse_pod({
        "metadata": {"namespace": "default", "name": f"p{index}", "uid": f"u-{index}",
                     "annotations": {
                         "ovn.kubernetes.io/allocated": "true",
                         "ovn.kubernetes.io/logical_switch": "apps",
                         "ovn.kubernetes.io/ip_address": str(ip),
                         "ovn.kubernetes.io/mac_address": f"0a:00:00:00:{index >> 8:02x}:"
                                                          f"{index & 255:02x}"}},
        "spec": {"nodeName": "node1"}, "status": {"phase": "Running"}})


def desired(count: int) -> DesiredState:
    return desired_state(ClusterView(
        subnets=[build_subnet("apps", "10.20.0.0/22"), build_subnet("join", "100.64.0.0/16")],
        pods=[pod(i) for i in range(count)],
        nodes=[NodeJoin("node1", (ipaddress.ip_address("100.64.0.2"),), "0a:58:64:40:00:02")],
        services=[], slices=[]))


def reconcile_until_settled(writer: Northbound, state: DesiredState,
                            timeout_s: float = 60.0) -> tuple[int, float]:
    """What the worker does: a failed step is retried; (failed steps, seconds taken)."""
    began, failures = time.monotonic(), 0
    while True:
        try:
            if writer.reconcile(state).changes == 0:
                return failures, time.monotonic() - began
        except NorthboundError:
            failures += 1
        assert time.monotonic() - began < timeout_s, "the NB never converged"
        time.sleep(0.2)


def port_names(db: RaftDatabase) -> collections.Counter[str]:
    api = nb_api(db.remote)
    try:
        return collections.Counter(row.name for row in
                                   api.tables["Logical_Switch_Port"].rows.values())
    finally:
        close_api(api)


def test_the_writer_follows_a_new_leader_and_the_rows_converge_exactly(
    cluster_db: RaftDatabase,
) -> None:
    api = nb_api(cluster_db.remote)
    writer = Northbound(api, max_changes=50)  # many small transactions: the kill lands mid-way
    try:
        reconcile_until_settled(writer, desired(PODS // 2))
        leader = cluster_db.leader()
        assert leader is not None
        killer = threading.Timer(0.3, cluster_db.kill, (leader,))  # in the middle of the burst
        killer.start()
        failures, took = reconcile_until_settled(writer, desired(PODS))
        killer.join()
        print(f"leader {leader.daemon.name} killed: converged after {took:.1f} s, "
              f"{failures} failed steps")
        new_leader = cluster_db.leader()
        assert new_leader is not None and new_leader is not leader
    finally:
        close_api(api)
    counts = port_names(cluster_db)
    wanted = set(desired(PODS).switch_ports)
    assert {name for name, count in counts.items() if count > 1} == set()
    assert wanted <= set(counts)
