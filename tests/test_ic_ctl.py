"""``podnet nbctl|sbctl|ic-nbctl|ic-sbctl``: OVN's tools against the right database, the
arguments passed as they are, a bad ``--db`` refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from podnet.cli import main
from podnet.ctl import CtlError, check_remote, lab_remote
from podnet.lab.interconnect import ic_databases
from podnet.lab.settings import LabSettings
from podnet.ovn import OvnCentral


def test_nbctl_runs_ovn_nbctl_against_the_given_database_with_the_arguments_as_given(
    ovn_central: OvnCentral, capfd: pytest.CaptureFixture[str],
) -> None:
    name = "ctl-check; echo not-a-shell"
    assert main(["nbctl", "--db", ovn_central.nb_remote, "ls-add", name]) == 0
    try:
        assert main(["nbctl", "--db", ovn_central.nb_remote, "--", "--bare", "--columns=name",
                     "find", "Logical_Switch", f"name=\"{name}\""]) == 0
        assert capfd.readouterr().out.strip() == name
    finally:
        ovn_central.nbctl("--if-exists", "ls-del", name)
    assert main(["sbctl", "--db", ovn_central.sb_remote, "--", "--columns=options",
                 "list", "SB_Global"]) == 0


def test_a_database_that_is_not_a_remote_is_refused_naming_it(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert main(["ic-nbctl", "--db", "tcp:127.0.0.1:6645;touch /tmp/x", "show"]) == 2
    assert "--db 'tcp:127.0.0.1:6645;touch /tmp/x'" in capfd.readouterr().err
    assert check_remote("tcp:10.0.0.1:6645, tcp:[fd00::1]:6645,unix:/run/a.sock") == (
        "tcp:10.0.0.1:6645,tcp:[fd00::1]:6645,unix:/run/a.sock")
    with pytest.raises(CtlError, match="is not tcp:HOST:PORT"):
        check_remote("tcp:10.0.0.1")


def test_without_db_the_recorded_labs_databases_are_used(tmp_path: Path) -> None:
    with pytest.raises(CtlError, match="no lab recorded there"):
        lab_remote("nbctl", tmp_path, 1)
    one = LabSettings(state_dir=tmp_path / "one")
    one.record()
    assert lab_remote("nbctl", one.state_dir, 1) == one.central().nb_remote
    assert lab_remote("sbctl", one.state_dir, 1) == one.central().sb_remote
    with pytest.raises(CtlError, match="runs one cluster: no IC databases"):
        lab_remote("ic-sbctl", one.state_dir, 1)
    two = LabSettings(state_dir=tmp_path / "two", clusters=2)
    two.record()
    assert lab_remote("nbctl", two.state_dir, 2) == two.for_cluster(2).central().nb_remote
    assert lab_remote("ic-nbctl", two.state_dir, 1) == ic_databases(two).nb_remote
    assert lab_remote("ic-sbctl", two.state_dir, 1) == ic_databases(two).sb_remote
    with pytest.raises(CtlError, match="--cluster 3"):
        lab_remote("nbctl", two.state_dir, 3)


def test_podnet_ic_refuses_a_resync_interval_that_is_not_positive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    assert main(["ic", "--ovn-nb", "unix:/x", "--ovn-sb", "unix:/y", "--state-dir",
                 str(tmp_path), "--resync-interval", "0"]) == 2
    assert "--resync-interval 0.0: must be above 0" in capsys.readouterr().err
