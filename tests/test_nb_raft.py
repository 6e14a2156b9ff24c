"""The sync worker's NB writer against a 3-member raft cluster: it follows the leader
through a ``kill -9``, and the rows converge with nothing lost and nothing doubled."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.ovn import NB_SCHEMA
from podnet.ovn_raft import RaftDatabase, RaftMember
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_sync.nb import Northbound
from tests.nb_burst import desired, port_counts, settle

pytestmark = pytest.mark.slow
PODS = 1000


def wait_for_leader(db: RaftDatabase, other_than: RaftMember,
                    timeout_s: float = 30.0) -> RaftMember | None:
    """The cluster's leader once one other than ``other_than`` is elected."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leader = db.leader()
        if leader is not None and leader is not other_than:
            return leader
        time.sleep(0.1)
    return None


@pytest.fixture
def cluster_db(tmp_path: Path) -> Iterator[RaftDatabase]:
    with RaftDatabase(tmp_path / "nb", NB_SCHEMA, "OVN_Northbound", prefix="nb") as started:
        yield started


def test_the_writer_follows_a_new_leader_and_the_rows_converge_exactly(
    cluster_db: RaftDatabase,
) -> None:
    api = nb_api(cluster_db.remote)
    writer = Northbound(api, max_changes=50)  # many small transactions: the kill lands mid-way
    try:
        settle(writer, desired(PODS // 2), 60)
        leader = cluster_db.leader()
        assert leader is not None
        killer = threading.Timer(0.3, cluster_db.kill, (leader,))  # in the middle of the burst
        killer.start()
        began = time.monotonic()
        failures = settle(writer, desired(PODS), 60)
        took = time.monotonic() - began
        killer.join()
        print(f"leader {leader.daemon.name} killed: converged after {took:.1f} s, "
              f"{failures} failed steps")
        # the burst may end before the kill lands: the survivors elect after it
        new_leader = wait_for_leader(cluster_db, other_than=leader)
        assert new_leader is not None and new_leader is not leader
    finally:
        close_api(api)
    counts = port_counts(cluster_db)
    wanted = set(desired(PODS).switch_ports)
    assert {name for name, count in counts.items() if count > 1} == set()
    assert wanted <= set(counts)
