"""The Cluster URL is read in one place, a bad one is refused naming its part, and the
connection factory gives the cluster client the settings a plain URL gets."""

from __future__ import annotations

import argparse
import re

import pytest
from redis.asyncio.cluster import RedisCluster

from ipam import errors
from ipam.connection import redis_client
from ipam.options import add_redis_options, redis_settings
from ipam.redis_url import ClusterUrl, is_cluster_url, parse_cluster_url
from ipam.settings import RedisSettings


def test_a_full_cluster_url_names_its_nodes_and_credentials() -> None:
    url = "redis+cluster://podnet-sync:p%40ss@10.0.0.1:7000,redis-b,[fd00::3]:7001/"
    assert parse_cluster_url(url) == ClusterUrl(
        nodes=(("10.0.0.1", 7000), ("redis-b", 6379), ("fd00::3", 7001)),
        username="podnet-sync", password="p@ss",
    )


def test_the_tls_form_keeps_its_query_and_the_path_may_be_left_out_or_zero() -> None:
    url = "rediss+cluster://a:7000?ssl_ca_certs=/etc/ca.crt"
    target = parse_cluster_url(url)
    assert (target.tls, target.query) == (True, "ssl_ca_certs=/etc/ca.crt")
    assert parse_cluster_url("redis+cluster://a/0").nodes == (("a", 6379),)
    assert is_cluster_url(url) and not is_cluster_url("redis+sentinel://a/ipam/0")


def test_the_password_is_in_no_repr_and_no_refusal() -> None:
    assert "secret" not in repr(parse_cluster_url("redis+cluster://:secret@a/"))
    with pytest.raises(errors.MalformedValue) as refused:
        parse_cluster_url("redis+cluster://user:hunter2@a:99999/")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(("url", "message"), [
    ("redis+cluster://a_b:7000/",
     "redis cluster URL: node host 'a_b': is not a host name or an IPv4 address"),
    ("redis+cluster://a:7000,,b/", "node host '': is empty"),
    ("redis+cluster://[fd00::zz]:1/", "node host '[fd00::zz]:1': is not an IPv6"),
    ("redis+cluster://a:70000/", "node port 'a:70000': is out of range (1 to 65535)"),
    ("redis+cluster://a:port/", "node port 'a:port': is not a number"),
    ("redis+cluster://a:/", "node port 'a:': is empty"),
    ("redis+cluster:///", "node list '': names no node"),
    ("redis+cluster://a:7000/2", "path '2': must be empty (a Redis Cluster has one database"),
    ("redis+cluster://a:7000/podnet/0", "path 'podnet/0': must be empty"),
])
def test_a_malformed_cluster_url_is_refused_naming_the_part_and_the_reason(
    url: str, message: str,
) -> None:
    with pytest.raises(errors.MalformedValue, match=re.escape(message)):
        parse_cluster_url(url)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_redis_options(parser)
    return parser


def test_every_component_takes_a_cluster_url_on_its_command_line() -> None:
    args = parser().parse_args(["--redis", "redis+cluster://a:7000,b:7001/"])
    assert redis_settings(args).url == "redis+cluster://a:7000,b:7001/"


def test_a_bad_cluster_url_on_the_command_line_is_refused_at_start() -> None:
    with pytest.raises(argparse.ArgumentError, match="node port 'b:x': is not a number"):
        parser().parse_args(["--redis", "redis+cluster://a,b:x/"])


def test_the_help_shows_the_cluster_form() -> None:
    text = " ".join(parser().format_help().split())
    assert "redis+cluster://" in text and "rediss+cluster://" in text


def cluster_client(url: str, password: str = "") -> RedisCluster:
    client = redis_client(RedisSettings(url=url, password=password, max_connections=7))
    assert isinstance(client, RedisCluster)
    return client


def test_a_cluster_url_keeps_the_settings_of_a_plain_one() -> None:
    client = cluster_client("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/",
                            password="from-file")
    options = client.nodes_manager.connection_kwargs
    assert (options["password"], options["decode_responses"], options["socket_timeout"],
            options["max_connections"]) == ("from-file", True, 5.0, 7)
    assert sorted(client.nodes_manager.startup_nodes) == ["127.0.0.1:7000", "127.0.0.1:7001"]
    own = cluster_client("redis+cluster://u:own@127.0.0.1:7000/", password="from-file")
    assert (own.nodes_manager.connection_kwargs["username"],
            own.nodes_manager.connection_kwargs["password"]) == ("u", "own")


def test_the_tls_form_takes_the_rediss_query() -> None:
    client = cluster_client("rediss+cluster://127.0.0.1:7000/?ssl_ca_certs=/etc/ca.crt")
    options = client.nodes_manager.connection_kwargs
    assert (options["connection_class"].__name__, options["ssl_ca_certs"]) == (
        "SSLConnection", "/etc/ca.crt")
