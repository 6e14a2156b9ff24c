"""One Redis URL setting covers TCP, a unix socket, passwords, ACL users and TLS."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ipam.settings import RedisSettings
from ipam.store import Ipam
from ipam.subnet import build_subnet
from podnet.daemons import RedisServer, free_port
from webhook.memo import MemoEntry, RedisReviewMemo


async def allocate_once(url: str) -> str:
    ipam = Ipam.connect(RedisSettings(url=url))
    try:
        await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
        return str((await ipam.reserve("s", "token")).ips[0])
    finally:
        await ipam.close()


async def test_a_unix_socket_url_works(own_redis: RedisServer) -> None:
    assert await allocate_once(own_redis.unix_url) == "10.0.0.2"


async def test_a_password_and_an_acl_user_work(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", password="s3cret") as server:
        assert await allocate_once(server.url) == "10.0.0.2"
        admin = Redis.from_url(server.url)
        await admin.acl_setuser(
            "podnet", enabled=True, passwords=["+agent-pw"], keys=["podnet:*"],
            commands=["+@all"],
        )
        await admin.aclose()
        url = f"redis://podnet:agent-pw@127.0.0.1:{server.port}/0"
        assert await allocate_once(url) == "10.0.0.2"  # the same subnet, already holding


async def test_a_password_given_beside_the_url_serves_the_ipam_and_the_review_memo(
    tmp_path: Path,
) -> None:
    with RedisServer(tmp_path / "redis", password="s3cret") as server:
        settings = RedisSettings(url=f"redis://127.0.0.1:{server.port}/0", password="s3cret")
        ipam = Ipam.connect(settings)
        memo = RedisReviewMemo.connect(settings, 60)
        try:
            await ipam.ensure_subnet(build_subnet("s", "10.0.0.0/24"))
            assert str((await ipam.reserve("s", "token")).ips[0]) == "10.0.0.2"
            entry = MemoEntry({"k": "v"})
            assert await memo.put("uid-1", entry) == entry
        finally:
            await ipam.close()
            await memo.close()


def make_tls_files(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "redis.crt", directory / "redis.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_a_rediss_url_speaks_tls(tmp_path: Path) -> None:
    cert, key = make_tls_files(tmp_path)
    tls_port = free_port()
    server = RedisServer(tmp_path / "redis")
    server.directory.mkdir(parents=True)
    process = subprocess.Popen([
        *server.argv(), "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no",
    ])
    server.process = process
    try:
        server.wait_ready()
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
        assert asyncio.run(allocate_once(url)) == "10.0.0.2"
    finally:
        server.stop()
