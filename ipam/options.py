"""The Redis options of every podnet component, spelled once: ``--redis``, the password
file, the replica acknowledgements and ``--prefix``.

A password written into ``--redis redis://:secret@host`` sits in the process's command
line, which every user of the node can read in ``/proc/<pid>/cmdline``. The password
file (a mounted Secret in the shipped manifests) keeps it out of argv and out of logs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ipam.errors import MalformedValue
from ipam.redis_url import check_url
from ipam.settings import DEFAULT_REDIS_URL, RedisSettings

REDIS_URL_ENV = "PODNET_REDIS_URL"
DEFAULT_PREFIX = "podnet:"
MAX_PASSWORD_FILE = 4096


def add_redis_options(parser: argparse._ActionsContainer) -> None:
    """``--redis``, ``--redis-password-file`` and ``--prefix`` on ``parser`` (or a group)."""
    default_url = os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
    parser.add_argument(
        "--redis", metavar="URL", default=default_url, type=redis_url,
        help="the IPAM's Redis: redis://[user@]host:port/db, rediss://... for TLS, "
        "unix:///path/redis.sock, or the primary Redis Sentinel names: "
        "redis+sentinel://[user@]host1:26379,host2:26379,.../<master-name>/<db> "
        "(rediss+sentinel://...?ssl_ca_certs=... for TLS), or a Redis Cluster: "
        "redis+cluster://[user@]host1:6379,host2:6379,.../ (rediss+cluster://... for TLS) "
        f"(default: ${REDIS_URL_ENV} if set, else {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--redis-password-file", metavar="PATH", type=password_from_file, default=None,
        dest="redis_password",
        help="a file holding the Redis password (or the ACL user's), on one line; keeps it "
        "out of the command line",
    )
    parser.add_argument(
        "--redis-min-replica-acks", metavar="N", type=_count, default=0,
        help="count a write as done only once N replicas hold it (Redis WAIT), else "
        "report the store unavailable; for a primary with replicas (default: 0, off)",
    )
    parser.add_argument(
        "--redis-ack-timeout-ms", metavar="MS", type=_positive, default=1000,
        help="how long to wait for those replicas (default: 1000)",
    )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX,
        help=f"key prefix of this cluster's IPAM in Redis (default: {DEFAULT_PREFIX})",
    )


def redis_url(url: str) -> str:
    """``url``, refused at start when it is a Sentinel or Cluster URL that does not
    read."""
    try:
        check_url(url)
    except MalformedValue as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return url


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def _positive(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def password_from_file(path: str) -> str:
    """The password in ``path`` (one line; a final newline is not part of it)."""
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_PASSWORD_FILE + 1)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        password = raw.decode().removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{path}: is not UTF-8 text") from None
    if len(raw) > MAX_PASSWORD_FILE or not password or any(c in password for c in "\r\n\0"):
        raise argparse.ArgumentTypeError(
            f"{path}: must hold one password of 1 to {MAX_PASSWORD_FILE} bytes on one line")
    return password


def redis_settings(args: argparse.Namespace) -> RedisSettings:
    """The settings ``add_redis_options`` parsed."""
    return RedisSettings(
        url=args.redis, prefix=args.prefix, password=args.redis_password or "",
        min_replica_acks=args.redis_min_replica_acks,
        replica_ack_timeout_ms=args.redis_ack_timeout_ms,
    )
