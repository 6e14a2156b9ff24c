"""``podnet sync``'s options are checked before anything connects, and a problem is one
line naming the option, the value and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from podnet.cli import build_parser, main
from podnet_plumbing.ovsdb import SslFiles
from podnet_sync.http import HttpSettings
from podnet_sync.main import OptionError, SyncOptions, options_of
from podnet_sync.worker import SyncSettings

SSL_REMOTE = "ssl:192.0.2.1:6641,ssl:192.0.2.2:6641"


def parsed(*argv: str) -> SyncOptions:
    return options_of(build_parser().parse_args(["sync", *argv]))


def tls_files(folder: Path) -> list[Path]:
    files = [folder / name for name in ("key.pem", "cert.pem", "ca.pem")]
    for path in files:
        path.write_text("PEM\n")
    return files


def test_an_ssl_remote_with_its_three_files_gives_them_to_the_nb_connection(
    tmp_path: Path,
) -> None:
    key, cert, ca = tls_files(tmp_path)
    options = parsed("--ovn-nb", SSL_REMOTE, "--ovn-nb-private-key", str(key),
                     "--ovn-nb-certificate", str(cert), "--ovn-nb-ca-cert", str(ca))
    assert options.ovn_nb_ssl == SslFiles(key, cert, ca)


def test_an_ssl_remote_without_the_files_names_the_missing_options() -> None:
    with pytest.raises(OptionError) as caught:
        parsed("--ovn-nb", SSL_REMOTE)
    assert str(caught.value) == (
        f"--ovn-nb {SSL_REMOTE}: an ssl: remote needs --ovn-nb-private-key, "
        "--ovn-nb-certificate, --ovn-nb-ca-cert; missing --ovn-nb-private-key, "
        "--ovn-nb-certificate, --ovn-nb-ca-cert")


def test_a_missing_ca_file_is_named_with_its_option(tmp_path: Path) -> None:
    key, cert, _ = tls_files(tmp_path)
    with pytest.raises(OptionError, match=f"^--ovn-nb-ca-cert {tmp_path}/nope.pem: no such file$"):
        parsed("--ovn-nb", SSL_REMOTE, "--ovn-nb-private-key", str(key),
               "--ovn-nb-certificate", str(cert), "--ovn-nb-ca-cert", str(tmp_path / "nope.pem"))


def test_tls_files_given_in_part_are_refused_even_for_a_tcp_remote(tmp_path: Path) -> None:
    key, _, _ = tls_files(tmp_path)
    with pytest.raises(OptionError, match="--ovn-nb-certificate, --ovn-nb-ca-cert missing"):
        parsed("--ovn-nb", "tcp:192.0.2.1:6641", "--ovn-nb-private-key", str(key))


def test_a_tcp_remote_needs_no_tls_and_the_endpoint_listens_on_9477_by_default() -> None:
    options = parsed("--ovn-nb", "tcp:192.0.2.1:6641")
    assert options.ovn_nb_ssl is None
    assert options.http == HttpSettings("0.0.0.0", 9477)


def test_the_daemon_freezes_its_heap_after_full_steps_while_an_embedded_worker_does_not() -> None:
    assert parsed("--ovn-nb", "tcp:192.0.2.1:6641").sync.settle_heap
    assert not SyncSettings().settle_heap


def test_the_command_exits_2_with_the_reason_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sync", "--ovn-nb", "ssl:192.0.2.1:6641"]) == 2
    assert capsys.readouterr().err.startswith(
        "podnet: error: --ovn-nb ssl:192.0.2.1:6641: an ssl: remote needs")
