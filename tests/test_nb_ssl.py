"""The NB writer over an ``ssl:`` remote: a real NB ovsdb-server listening with TLS
(``pssl``) on certificates this module makes, and clients with good and bad ones.

python-ovs keeps its TLS files process-wide, so every connection here names its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from podnet.daemons import free_port
from podnet.ovn import OvnCentral
from podnet_plumbing.ovsdb import OvsdbError, SslFiles, close_api, nb_api
from podnet_sync.nb import Northbound
from podnet_sync.nb_model import DesiredState
from tests.test_nb import cluster, pod
from tests.tls import make_ca, make_signed


@dataclass(frozen=True)
class Pki:
    server: SslFiles
    client: SslFiles
    stranger_ca: tuple[Path, Path]
    """A CA that signed nothing the server or the client hold."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("nb-pki")
    ca = make_ca(folder, "ca")
    server_cert, server_key = make_signed(folder, "nb-server", ca)
    client_cert, client_key = make_signed(folder, "sync-client", ca)
    return Pki(SslFiles(server_key, server_cert, ca[0]), SslFiles(client_key, client_cert, ca[0]),
               make_ca(folder, "stranger-ca"))


@dataclass(frozen=True)
class SslCentral:
    central: OvnCentral
    remote: str


@pytest.fixture(scope="module")
def ssl_central(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[SslCentral]:
    """A central whose NB takes TLS on loopback (the tests' nbctl uses its unix socket)."""
    port = free_port()
    tls = [f"--remote=pssl:{port}:127.0.0.1", f"--private-key={pki.server.private_key}",
           f"--certificate={pki.server.certificate}", f"--ca-cert={pki.server.ca_cert}"]
    central = OvnCentral(tmp_path_factory.mktemp("nb-ssl-central"), nb_port=None, sb_port=None,
                         nb_args=tls)
    with central:
        yield SslCentral(central, f"ssl:127.0.0.1:{port}")


def test_a_northbound_over_ssl_reconciles_a_small_desired_state(
    ssl_central: SslCentral, pki: Pki
) -> None:
    api = nb_api(ssl_central.remote, ssl_files=pki.client)
    northbound = Northbound(api)
    try:
        report = northbound.reconcile(cluster(pod("web-a", "10.20.0.5"), with_service=False))
        assert report.by_kind["switch_ports.created"] == 4  # pod, node, two router links
        ports = ssl_central.central.nbctl("--bare", "--columns=name", "list",
                                          "Logical_Switch_Port").split()
        assert "web-a.default" in ports
        assert northbound.reconcile(cluster(pod("web-a", "10.20.0.5"), with_service=False)
                                    ).changes == 0
    finally:
        northbound.reconcile(DesiredState())
        close_api(api)


def test_a_client_trusting_another_ca_fails_at_once_naming_the_ca(
    ssl_central: SslCentral, pki: Pki
) -> None:
    wrong = SslFiles(pki.client.private_key, pki.client.certificate, pki.stranger_ca[0])
    started = time.monotonic()
    with pytest.raises(OvsdbError, match="does not verify against the CA certificate") as caught:
        nb_api(ssl_central.remote, timeout_s=5, ssl_files=wrong)
    assert str(pki.stranger_ca[0]) in str(caught.value)
    assert time.monotonic() - started < 10


def test_a_client_certificate_the_server_does_not_trust_fails_with_the_tls_alert(
    ssl_central: SslCentral, pki: Pki, tmp_path: Path
) -> None:
    cert, key = make_signed(tmp_path, "stranger-client", pki.stranger_ca)
    started = time.monotonic()
    with pytest.raises(OvsdbError, match=f"{ssl_central.remote}: TLS failed .*alert"):
        nb_api(ssl_central.remote, timeout_s=5, ssl_files=SslFiles(key, cert, pki.client.ca_cert))
    assert time.monotonic() - started < 10


def test_an_ssl_remote_without_files_is_refused_before_connecting(
    ssl_central: SslCentral,
) -> None:
    with pytest.raises(OvsdbError, match="ssl: remote needs a private key"):
        nb_api(ssl_central.remote)
