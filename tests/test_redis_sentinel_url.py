"""The Sentinel URL is read in one place, a bad one is refused naming its part, and the
connection factory gives it the settings a plain URL gets."""

from __future__ import annotations

import argparse
import re

import pytest

from ipam import errors
from ipam.connection import SentinelClient, redis_client
from ipam.options import add_redis_options, redis_settings
from ipam.redis_url import SentinelUrl, is_sentinel_url, parse_sentinel_url
from ipam.settings import RedisSettings


def test_a_full_sentinel_url_names_its_sentinels_master_db_and_credentials() -> None:
    url = "redis+sentinel://podnet-sync:p%40ss@10.0.0.1:26379,sentinel-b,[fd00::3]:26380/ipam/2"
    assert parse_sentinel_url(url) == SentinelUrl(
        sentinels=(("10.0.0.1", 26379), ("sentinel-b", 26379), ("fd00::3", 26380)),
        master="ipam", db=2, username="podnet-sync", password="p@ss",
    )


def test_the_tls_form_keeps_its_query_and_the_db_defaults_to_zero() -> None:
    url = "rediss+sentinel://a:26379/ipam?ssl_ca_certs=/etc/ca.crt"
    target = parse_sentinel_url(url)
    assert (target.tls, target.db, target.query) == (True, 0, "ssl_ca_certs=/etc/ca.crt")
    assert is_sentinel_url(url) and not is_sentinel_url("rediss://a:6379/0")


def test_the_password_is_in_no_repr() -> None:
    assert "secret" not in repr(parse_sentinel_url("redis+sentinel://:secret@a/ipam/0"))


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel://a_b:26379/ipam/0",
     "redis sentinel URL: sentinel host 'a_b': is not a host name or an IPv4 address"),
    ("redis+sentinel://a:26379,,b/ipam/0", "sentinel host '': is empty"),
    ("redis+sentinel://[fd00::zz]:1/ipam/0", "sentinel host '[fd00::zz]:1': is not an IPv6"),
    ("redis+sentinel://a:70000/ipam/0",
     "sentinel port 'a:70000': is out of range (1 to 65535)"),
    ("redis+sentinel://a:0/ipam/0", "sentinel port 'a:0': is out of range"),
    ("redis+sentinel://a:port/ipam/0", "sentinel port 'a:port': is not a number"),
    ("redis+sentinel://a:/ipam/0", "sentinel port 'a:': is empty"),
    ("redis+sentinel:///ipam/0", "sentinel list '': names no sentinel"),
    ("redis+sentinel://a:26379", "master name '': is missing"),
    ("redis+sentinel://a:26379//0", "master name '': is missing"),
    ("redis+sentinel://a:26379/ip am/0", "master name 'ip am': must be 1 to 128"),
    ("redis+sentinel://a:26379/ipam/zero", "db 'zero': is not a number"),
    ("redis+sentinel://a:26379/ipam/0/x", "path 'ipam/0/x': has more than"),
])
def test_a_malformed_sentinel_url_is_refused_naming_the_part_and_the_reason(
    url: str, message: str,
) -> None:
    with pytest.raises(errors.MalformedValue, match=re.escape(message)):
        parse_sentinel_url(url)


def test_a_password_never_appears_in_a_refusal() -> None:
    with pytest.raises(errors.MalformedValue) as refused:
        parse_sentinel_url("redis+sentinel://user:hunter2@a:99999/ipam/0")
    assert "hunter2" not in str(refused.value)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_redis_options(parser)
    return parser


def test_every_component_takes_a_sentinel_url_and_the_replica_acks_on_its_command_line(
) -> None:
    args = parser().parse_args([
        "--redis", "redis+sentinel://a,b,c/ipam/0", "--redis-min-replica-acks", "1",
        "--redis-ack-timeout-ms", "250",
    ])
    settings = redis_settings(args)
    assert (settings.url, settings.min_replica_acks, settings.replica_ack_timeout_ms) == (
        "redis+sentinel://a,b,c/ipam/0", 1, 250)
    assert redis_settings(parser().parse_args([])).min_replica_acks == 0


def test_a_bad_sentinel_url_on_the_command_line_is_refused_at_start() -> None:
    with pytest.raises(argparse.ArgumentError, match="sentinel port 'b:x': is not a number"):
        parser().parse_args(["--redis", "redis+sentinel://a,b:x/ipam/0"])


def test_the_help_shows_the_sentinel_form() -> None:
    assert "redis+sentinel://" in " ".join(parser().format_help().split())


def server_options(url: str, password: str = "") -> dict[str, object]:
    """What the factory's client would connect to the primary with (no connection made)."""
    client = redis_client(RedisSettings(url=url, password=password, max_connections=7))
    assert isinstance(client, SentinelClient)
    options: dict[str, object] = dict(client.connection_pool.connection_kwargs)
    options["connection_class"] = client.connection_pool.connection_class.__name__
    options["max_connections"] = client.connection_pool.max_connections
    return options


def test_the_tls_form_takes_the_rediss_query_for_the_servers_and_the_sentinels() -> None:
    url = "rediss+sentinel://127.0.0.1:1,127.0.0.1:2/ipam/3?ssl_ca_certs=/etc/ca.crt"
    client = redis_client(RedisSettings(url=url))
    assert isinstance(client, SentinelClient) and client.sentinel_manager is not None
    sentinel_options = client.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel_options["ssl_ca_certs"] == "/etc/ca.crt"
    options = server_options(url)
    assert (options["connection_class"], options["ssl_ca_certs"], options["db"]) == (
        "SentinelManagedSSLConnection", "/etc/ca.crt", 3)


def test_a_sentinel_url_keeps_the_settings_of_a_plain_one() -> None:
    options = server_options("redis+sentinel://a/ipam/0", password="from-file")
    assert (options["password"], options["decode_responses"], options["max_connections"],
            options["socket_timeout"]) == ("from-file", True, 7, 5.0)
    own = server_options("redis+sentinel://u:own@a/ipam/0", password="from-file")
    assert (own["username"], own["password"]) == ("u", "own")  # the URL's comes first
