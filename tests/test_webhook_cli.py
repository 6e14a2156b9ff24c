"""``podnet webhook`` options become the settings the server runs with."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from webhook.cli import register, settings_from
from webhook.errors import ConfigError
from webhook.settings import parse_listen


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="podnet")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["webhook", *argv])


def test_webhook_options_become_server_settings(tmp_path: Path) -> None:
    args = parse(
        "--listen", "127.0.0.1:9443", "--tls-cert", "c.pem", "--tls-key", "k.pem",
        "--redis", "redis://10.0.0.5:6380/2", "--prefix", "prod:", "--manifests", str(tmp_path),
        "--exclude-selector", "podnet.io/skip", "--reservation-ttl", "120",
    )
    settings = settings_from(args)
    assert (settings.host, settings.port) == ("127.0.0.1", 9443)
    assert settings.redis.url == "redis://10.0.0.5:6380/2" and settings.redis.prefix == "prod:"
    assert settings.manifests == tmp_path and settings.tls_cert == Path("c.pem")
    assert settings.webhook.reservation_ttl_s == 120
    assert settings.webhook.excluded_namespaces == {"kube-system", "podnet-system"}
    assert settings.webhook.excluded_selector is not None
    assert settings.webhook.excluded_selector.matches({"podnet.io/skip": "yes"})
    assert args.handler.__name__ == "run"


def test_a_listen_address_without_a_port_is_refused() -> None:
    with pytest.raises(ConfigError, match="--listen"):
        parse_listen("0.0.0.0")
    assert parse_listen("[::1]:8443") == ("::1", 8443)


def test_a_missing_manifests_folder_is_refused(tmp_path: Path) -> None:
    args = parse("--tls-cert", "c", "--tls-key", "k", "--manifests", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="not a folder"):
        settings_from(args)
