"""``podnet.ovn_ic.IcDatabase``: the IC NB and IC SB as AZs reach them, over TCP on every
host, standalone or on raft; stopped by PID, data kept across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from podnet.ovn import OvnError, run
from podnet.ovn_ic import IcDatabase
from podnet.ovn_raft import RaftDatabase


def test_a_standalone_ic_database_answers_over_tcp_and_keeps_its_data(tmp_path: Path) -> None:
    database = IcDatabase(tmp_path)
    with database:
        assert set(database.pids()) == {"ovn_ic_nb_db", "ovn_ic_sb_db"}
        assert database.nb_remote == f"tcp:127.0.0.1:{database.nb_port}"
        database.nbctl("ts-add", "ts")
        data = database.config_map_data("az1", ["gw-1", "gw-2"], auto_route=False)
        assert data == {"enable-ic": "true", "az-name": "az1", "ic-db-host": "127.0.0.1",
                        "ic-nb-port": str(database.nb_port),
                        "ic-sb-port": str(database.sb_port), "gw-nodes": "gw-1,gw-2",
                        "auto-route": "false"}
    assert database.pids() == {}
    with database:
        assert "(ts)" in database.nbctl("ts-list")


@pytest.mark.slow
def test_a_clustered_ic_database_has_three_members_each_on_its_own_host(tmp_path: Path) -> None:
    with IcDatabase.clustered(tmp_path) as database:
        assert isinstance(database.nb, RaftDatabase) and database.nb.leader() is not None
        assert len(database.pids()) == 6
        assert database.db_host == "127.0.0.1,127.0.0.2,127.0.0.3"
        assert database.sb_remote == ",".join(
            f"tcp:127.0.0.{i}:{database.sb_port}" for i in (1, 2, 3))
        database.nbctl("ts-add", "ts")
        for host in database.hosts:  # every member answers clients on its own address
            assert "(ts)" in run(["ovn-ic-nbctl", f"--db=tcp:{host}:{database.nb_port}",
                                  "--no-leader-only", "--timeout=10", "ts-list"])


def test_hosts_must_be_addresses_an_odd_number_and_distinct(tmp_path: Path) -> None:
    with pytest.raises(OvnError, match="odd number of members, not 2"):
        IcDatabase(tmp_path, hosts=("127.0.0.1", "127.0.0.2"))
    with pytest.raises(OvnError, match=r"'ic\.example' is not an IP address"):
        IcDatabase(tmp_path, hosts=("ic.example",))
    with pytest.raises(OvnError, match="repeat an address"):
        IcDatabase(tmp_path, hosts=("127.0.0.1", "127.0.0.1", "127.0.0.2"))
