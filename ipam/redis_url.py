"""The Sentinel and Cluster forms of ``--redis``, read in one place.

redis-py reads ``redis://``, ``rediss://`` and ``unix://`` URLs itself but has no URL
for Sentinel, where a client names several sentinels and the primary they watch instead
of one server, nor for Redis Cluster, where it names a few nodes to learn the shards
from. podnet's components take their store as one URL each, so both forms are URLs too:
``redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>/<db>`` and
``redis+cluster://[user:password@]host1:6379,host2:6379/``, or ``rediss+sentinel://``
and ``rediss+cluster://`` for TLS with the query parameters of ``rediss://``.

The reader is pure (no I/O, no redis import) so every component refuses a malformed URL
at start with the same message, naming the part of the URL and what is wrong with it.
The password is never part of a message.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from ipam.errors import MalformedValue

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_TLS_SCHEME = "rediss+sentinel"
DEFAULT_SENTINEL_PORT = 26379
CLUSTER_SCHEME = "redis+cluster"
CLUSTER_TLS_SCHEME = "rediss+cluster"
DEFAULT_CLUSTER_PORT = 6379
_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")
_MASTER_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


@dataclass(frozen=True)
class SentinelUrl:
    """What a Sentinel URL says: whom to ask, for which primary, and how to talk to it."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    tls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    query: str = ""
    """The query string as given; it means what it means in a ``rediss://`` URL."""


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith((f"{SENTINEL_SCHEME}://", f"{SENTINEL_TLS_SCHEME}://"))


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Read ``url``; a ``MalformedValue`` names the part that is wrong and why."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in (SENTINEL_SCHEME, SENTINEL_TLS_SCHEME):
        raise _bad("scheme", scheme, f"is not {SENTINEL_SCHEME} or {SENTINEL_TLS_SCHEME}")
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    authority, _, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    master, db = _path(path)
    return SentinelUrl(
        sentinels=_sentinels(hosts), master=master, db=db,
        tls=scheme.lower() == SENTINEL_TLS_SCHEME,
        username=unquote(username), password=unquote(password), query=query,
    )


@dataclass(frozen=True)
class _Form:
    """How one kind of URL names its hosts in messages, and their default port."""

    url: str
    host: str
    hosts: str
    default_port: int


_SENTINEL_FORM = _Form("redis sentinel URL", "sentinel", "sentinel list", DEFAULT_SENTINEL_PORT)
_CLUSTER_FORM = _Form("redis cluster URL", "node", "node list", DEFAULT_CLUSTER_PORT)


def _bad(part: str, value: str, reason: str, form: _Form = _SENTINEL_FORM) -> MalformedValue:
    return MalformedValue(f"{form.url}: {part}", repr(value), reason)


def _sentinels(hosts: str) -> tuple[tuple[str, int], ...]:
    return _endpoints(hosts, _SENTINEL_FORM)


def _endpoints(hosts: str, form: _Form) -> tuple[tuple[str, int], ...]:
    if not hosts:
        raise _bad(form.hosts, hosts, f"names no {form.host} (host:port,host:port,...)", form)
    return tuple(_endpoint(entry, form) for entry in hosts.split(","))


def _endpoint(entry: str, form: _Form) -> tuple[str, int]:
    if entry.startswith("["):  # [v6]:port
        host, close, tail = entry[1:].partition("]")
        if not close or (tail and not tail.startswith(":")):
            raise _bad(form.host, entry, "an IPv6 address is written [address]:port", form)
        port_text = tail[1:] if tail else ""
        _check_ipv6(entry, host, form)
    else:
        host, colon, port_text = entry.partition(":")
        if colon and not port_text:
            raise _bad(f"{form.host} port", entry, "is empty", form)
        if ":" in port_text:
            raise _bad(form.host, entry, "an IPv6 address is written [address]:port", form)
        _check_host(entry, host, form)
    return host, _port(entry, port_text, form) if port_text else form.default_port


def _check_host(entry: str, host: str, form: _Form) -> None:
    if not host:
        raise _bad(f"{form.host} host", entry, "is empty", form)
    if not _HOSTNAME.match(host):
        raise _bad(f"{form.host} host", host, "is not a host name or an IPv4 address", form)


def _check_ipv6(entry: str, host: str, form: _Form) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise _bad(f"{form.host} host", entry, "is not an IPv6 address", form) from None


def _port(entry: str, text: str, form: _Form) -> int:
    if not text.isascii() or not text.isdigit():
        raise _bad(f"{form.host} port", entry, "is not a number", form)
    port = int(text)
    if not 1 <= port <= 65535:
        raise _bad(f"{form.host} port", entry, "is out of range (1 to 65535)", form)
    return port


def _path(path: str) -> tuple[str, int]:
    """``<master-name>[/<db>]`` (a final slash is allowed)."""
    parts = path.removesuffix("/").split("/") if path else []
    if not parts or not parts[0]:
        raise _bad("master name", "", "is missing (.../<master-name>/<db>)")
    if len(parts) > 2:
        raise _bad("path", path, "has more than /<master-name>/<db>")
    master = unquote(parts[0])
    if not _MASTER_NAME.match(master):
        raise _bad("master name", master,
                   "must be 1 to 128 letters, digits, '.', '_' or '-'")
    if len(parts) == 1:
        return master, 0
    db_text = parts[1]
    if not db_text.isascii() or not db_text.isdigit():
        raise _bad("db", db_text, "is not a number")
    return master, int(db_text)


@dataclass(frozen=True)
class ClusterUrl:
    """What a Cluster URL says: a few nodes to learn the shards from (any node of the
    cluster will do; more than one survives one being down) and how to talk to them."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    query: str = ""
    """The query string as given; it means what it means in a ``rediss://`` URL."""


def is_cluster_url(url: str) -> bool:
    return url.lower().startswith((f"{CLUSTER_SCHEME}://", f"{CLUSTER_TLS_SCHEME}://"))


def parse_cluster_url(url: str) -> ClusterUrl:
    """Read ``url``; a ``MalformedValue`` names the part that is wrong and why."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in (CLUSTER_SCHEME, CLUSTER_TLS_SCHEME):
        raise _bad("scheme", scheme, f"is not {CLUSTER_SCHEME} or {CLUSTER_TLS_SCHEME}",
                   _CLUSTER_FORM)
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    authority, _, path = rest.partition("/")
    if path not in ("", "0", "0/"):
        # A cluster has database 0 alone; a master name belongs to a Sentinel URL.
        raise _bad("path", path, "must be empty (a Redis Cluster has one database, 0)",
                   _CLUSTER_FORM)
    userinfo, at, hosts = authority.rpartition("@")
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    return ClusterUrl(
        nodes=_endpoints(hosts, _CLUSTER_FORM), tls=scheme.lower() == CLUSTER_TLS_SCHEME,
        username=unquote(username), password=unquote(password), query=query,
    )


def check_url(url: str) -> None:
    """Refuse a Sentinel or Cluster URL that does not read (others are redis-py's)."""
    if is_sentinel_url(url):
        parse_sentinel_url(url)
    elif is_cluster_url(url):
        parse_cluster_url(url)
