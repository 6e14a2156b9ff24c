"""The Sentinel form of ``--redis``, read in one place.

redis-py reads ``redis://``, ``rediss://`` and ``unix://`` URLs itself but has no URL
for Sentinel, where a client names several sentinels and the primary they watch instead
of one server. podnet's components take their store as one URL each, so the Sentinel
form is a URL too:
``redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>/<db>``, or
``rediss+sentinel://`` for TLS with the query parameters of ``rediss://``.

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


def _bad(part: str, value: str, reason: str) -> MalformedValue:
    return MalformedValue(f"redis sentinel URL: {part}", repr(value), reason)


def _sentinels(hosts: str) -> tuple[tuple[str, int], ...]:
    if not hosts:
        raise _bad("sentinel list", hosts, "names no sentinel (host:port,host:port,...)")
    return tuple(_sentinel(entry) for entry in hosts.split(","))


def _sentinel(entry: str) -> tuple[str, int]:
    if entry.startswith("["):  # [v6]:port
        host, close, tail = entry[1:].partition("]")
        if not close or (tail and not tail.startswith(":")):
            raise _bad("sentinel", entry, "an IPv6 address is written [address]:port")
        port_text = tail[1:] if tail else ""
        _check_ipv6(entry, host)
    else:
        host, colon, port_text = entry.partition(":")
        if colon and not port_text:
            raise _bad("sentinel port", entry, "is empty")
        if ":" in port_text:
            raise _bad("sentinel", entry, "an IPv6 address is written [address]:port")
        _check_host(entry, host)
    return host, _port(entry, port_text) if port_text else DEFAULT_SENTINEL_PORT


def _check_host(entry: str, host: str) -> None:
    if not host:
        raise _bad("sentinel host", entry, "is empty")
    if not _HOSTNAME.match(host):
        raise _bad("sentinel host", host, "is not a host name or an IPv4 address")


def _check_ipv6(entry: str, host: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise _bad("sentinel host", entry, "is not an IPv6 address") from None


def _port(entry: str, text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise _bad("sentinel port", entry, "is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise _bad("sentinel port", entry, "is out of range (1 to 65535)")
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
