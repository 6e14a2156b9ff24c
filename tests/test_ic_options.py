"""``podnet ic``'s command line: leader election is off unless asked for, and its
settings reach the elector."""

from __future__ import annotations

import pytest

from podnet.cli import build_parser
from podnet_ic.main import IcOptions, options_of
from podnet_plumbing.lease import default_identity

BASE = ["ic", "--ovn-nb", "unix:/nb", "--ovn-sb", "unix:/sb", "--state-dir", "/run/ic"]


def _options(*argv: str) -> IcOptions:
    return options_of(build_parser().parse_args([*BASE, *argv]))


def test_without_leader_elect_the_controller_always_reconciles() -> None:
    assert _options().leader_election is None


def test_leader_elect_takes_the_lease_of_podnet_system_with_client_go_timings() -> None:
    election = _options("--leader-elect").leader_election
    assert election is not None
    assert (election.namespace, election.name, election.identity) == (
        "podnet-system", "podnet-ic", default_identity())
    assert (election.lease_duration_s, election.renew_deadline_s,
            election.retry_period_s) == (15.0, 10.0, 2.0)


def test_the_lease_and_its_timings_can_be_chosen() -> None:
    election = _options("--leader-elect", "--lease-namespace", "kube-system", "--lease-name",
                        "ic", "--lease-identity", "pod-1", "--lease-duration", "2",
                        "--renew-deadline", "1.5", "--retry-period", "0.3").leader_election
    assert election is not None
    assert (election.where, election.identity) == ("kube-system/ic", "pod-1")
    assert (election.lease_duration_s, election.renew_deadline_s,
            election.retry_period_s) == (2.0, 1.5, 0.3)


def test_timings_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        _options("--leader-elect", "--renew-deadline", "20")
