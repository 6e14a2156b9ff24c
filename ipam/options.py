"""The Redis options of every podnet component, spelled once: ``--redis``, the password
file and ``--prefix``.

A password written into ``--redis redis://:secret@host`` sits in the process's command
line, which every user of the node can read in ``/proc/<pid>/cmdline``. The password
file (a mounted Secret in the shipped manifests) keeps it out of argv and out of logs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ipam.settings import DEFAULT_REDIS_URL, RedisSettings

REDIS_URL_ENV = "PODNET_REDIS_URL"
DEFAULT_PREFIX = "podnet:"
MAX_PASSWORD_FILE = 4096


def add_redis_options(parser: argparse._ActionsContainer) -> None:
    """``--redis``, ``--redis-password-file`` and ``--prefix`` on ``parser`` (or a group)."""
    default_url = os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
    parser.add_argument(
        "--redis", metavar="URL", default=default_url,
        help="the IPAM's Redis: redis://[user@]host:port/db, rediss://... for TLS, "
        f"unix:///path/redis.sock (default: ${REDIS_URL_ENV} if set, else {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--redis-password-file", metavar="PATH", type=password_from_file, default=None,
        dest="redis_password",
        help="a file holding the Redis password (or the ACL user's), on one line; keeps it "
        "out of the command line",
    )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX,
        help=f"key prefix of this cluster's IPAM in Redis (default: {DEFAULT_PREFIX})",
    )


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
    return RedisSettings(url=args.redis, prefix=args.prefix, password=args.redis_password or "")
