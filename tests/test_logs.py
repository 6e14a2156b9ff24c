"""No credentials in argv or logs, and one line per malformed HTTP request: the query
endpoint run as its own process against a Redis that wants a password."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.daemons import RedisServer, free_port
from podnet_plumbing import logs
from tests.test_cli import http_get, wait_for_http

PODNET = Path(sys.executable).parent / "podnet"
PASSWORD = "pw-9f3e1c"


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", password=PASSWORD) as server:
        yield server


def serve(*redis_options: str) -> tuple[subprocess.Popen[str], str]:
    listen = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen([str(PODNET), "ipam", "serve", "--listen", listen, *redis_options],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_http(f"http://{listen}/healthz", process)
    return process, listen


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    return err


def send_raw(listen: str, data: bytes) -> bytes:
    host, port = listen.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(data)
        return conn.recv(4096)


def test_the_password_comes_from_a_file_and_never_shows_in_argv_or_the_log(
    locked_redis: RedisServer, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    process, listen = serve("--redis", f"redis://127.0.0.1:{locked_redis.port}/0",
                            "--redis-password-file", str(secret))
    try:
        assert http_get(f"http://{listen}/readyz") == (200, {"status": "ok"})
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert PASSWORD.encode() not in cmdline
    finally:
        err = stop(process)
    assert "IPAM query endpoint on" in err and PASSWORD not in err


def test_a_password_written_in_the_url_is_redacted_in_every_log_line(
    locked_redis: RedisServer,
) -> None:
    process, listen = serve("--redis", locked_redis.url)
    try:
        assert http_get(f"http://{listen}/readyz") == (200, {"status": "ok"})
    finally:
        err = stop(process)
    assert f"redis://:***@127.0.0.1:{locked_redis.port}/0" in err
    assert PASSWORD not in err


def test_a_malformed_http_request_is_a_400_and_one_warning_line_not_a_traceback(
    locked_redis: RedisServer,
) -> None:
    process, listen = serve("--redis", locked_redis.url)
    try:
        answer = send_raw(listen, b"GET /\x00\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 400")
        assert http_get(f"http://{listen}/healthz")[0] == 200  # and it goes on serving
    finally:
        err = stop(process)
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "Error handling request" in line]
    assert " WARNING aiohttp.server: " in line and ": 400 Invalid char in url path" in line


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "must hold one password"), (b"one\ntwo\n", "must hold one password"),
    (b"\xff\xfe", "is not UTF-8 text"), (b"x" * 5000, "must hold one password"),
])
def test_an_unusable_password_file_is_refused_naming_the_file_and_the_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    secret = tmp_path / "password"
    secret.write_bytes(content)
    result = subprocess.run([str(PODNET), "ipam", "subnets", "--redis-password-file",
                             str(secret)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert f"argument --redis-password-file: {secret}: {reason}" in result.stderr


def test_redaction_keeps_the_user_and_hides_only_the_password() -> None:
    assert logs.redact("redis://podnet:pw@h:1/0 and rediss://:x@y/1 and http://h/p") == (
        "redis://podnet:***@h:1/0 and rediss://:***@y/1 and http://h/p")


def test_an_exception_text_holding_a_url_is_redacted_too() -> None:
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, None)
    try:
        raise ConnectionError("cannot reach redis://:pw@h:1/0")
    except ConnectionError:
        record.exc_info = sys.exc_info()
    logs.RedactCredentials().filter(record)
    assert record.exc_text is not None and ":***@h" in record.exc_text
    assert "pw@" not in record.exc_text
