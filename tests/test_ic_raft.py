"""The IC databases on a three-member raft cluster (``ic-db-host`` lists all three):
losing the IC NB and IC SB leaders keeps the routes learned, and the AZs go on
advertising and learning through the new leaders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.ovn_raft import RaftDatabase
from podnet_ic.desired import IcSubnet
from tests.ic_fixtures import JOIN, World, world

pytestmark = pytest.mark.slow

AZ1_POD, AZ2_POD, LATER = "10.16.0.0/16", "10.17.0.0/16", "10.18.0.0/16"


@pytest.fixture
def ic(tmp_path: Path) -> Iterator[World]:
    subnets = {"az1": [IcSubnet("ovn-default", (AZ1_POD,)), IcSubnet("join", (JOIN,))],
               "az2": [IcSubnet("ovn-default", (AZ2_POD,)), IcSubnet("join", (JOIN,))]}
    with world(tmp_path, subnets, {"az1": ("172.31.0.11",), "az2": ("172.31.0.12",)},
               clustered=True) as made:
        yield made


def _kill_leader(database: RaftDatabase) -> str:
    leader = database.leader()
    assert leader is not None
    database.kill(leader)
    return leader.daemon.name


def test_the_config_names_every_member_and_a_leader_kill_loses_no_learned_route(
    ic: World,
) -> None:
    config = ic.config("az1")
    assert config.db_hosts == ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    assert config.nb_remote.count("tcp:") == 3
    ic.enable()
    az1, az2 = ic.zones["az1"], ic.zones["az2"]
    ic.converge(lambda: AZ2_POD in az1.learned() and AZ1_POD in az2.learned(),
                "routes learned both ways")
    nb, sb = ic.ic.nb, ic.ic.sb
    assert isinstance(nb, RaftDatabase) and isinstance(sb, RaftDatabase)
    killed = [_kill_leader(nb), _kill_leader(sb)]
    assert AZ2_POD in az1.learned() and AZ1_POD in az2.learned()
    az1.subnets.append(IcSubnet("later", (LATER,)))
    az1.sync()
    ic.converge(lambda: LATER in az2.learned() and nb.leader() is not None
                and sb.leader() is not None, f"learning after {killed} died")
    assert AZ2_POD in az1.learned()
