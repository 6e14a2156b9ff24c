"""Two webhook processes on one Redis admit thousands of pods at once: never a duplicate.

This is the promise that lets podnet run any number of webhook replicas: allocation is
one atomic Lua script, so replicas need no coordination of their own. Retries of the
same review sent to the *other* replica must land on the same reservation.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ipam.settings import RedisSettings
from ipam.store import Ipam
from podnet.daemons import free_port
from tests.test_webhook_server import annotations_of, patch_of, pod, review
from tests.tls import client_context, make_certificate
from webhook.patch import apply_patch

ROOT = Path(__file__).resolve().parent.parent
PODS = 2000
RETRIED = 200


class WebhookProcess:
    """``python -m webhook`` on a port of its own, stopped by the PID we started."""

    def __init__(self, settings: RedisSettings, cert: Path, key: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.args = [
            sys.executable, "-m", "webhook", "--listen", f"127.0.0.1:{self.port}",
            "--tls-cert", str(cert), "--tls-key", str(key), "--redis", settings.url,
            "--prefix", settings.prefix, "--log-level", "WARNING", "--no-require-rebuilt",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                self.args, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        for _ in range(200):
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            try:
                async with session.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
        pytest.fail(f"webhook on port {self.port} never became ready: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def replicas(tmp_path: Path, redis_settings: RedisSettings) -> Iterator[list[WebhookProcess]]:
    cert, key = make_certificate(tmp_path / "tls")
    processes = [
        WebhookProcess(redis_settings, cert, key, tmp_path / f"webhook-{n}.log") for n in (1, 2)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


def deployment_pod(index: int) -> dict[str, Any]:
    template_hash = f"{index % 7:x}6b9c8f5d"
    return pod(
        name=None, generate_name=f"web{index % 7}-{template_hash}-",
        owner=("ReplicaSet", f"web{index % 7}-{template_hash}"),
        labels={"app": f"web{index % 7}", "pod-template-hash": template_hash},
    )


@pytest.mark.slow
async def test_two_webhook_processes_admit_two_thousand_pods_with_no_duplicate_address(
    tmp_path: Path, replicas: list[WebhookProcess], ipam: Ipam
) -> None:
    cert = tmp_path / "tls" / "webhook.crt"
    connector = aiohttp.TCPConnector(ssl=client_context(cert), limit=128)
    async with aiohttp.ClientSession(connector=connector) as session:
        for replica in replicas:  # one after the other: the first registers ovn-default
            replica.start()
            await replica.wait_ready(session)
        gate = asyncio.Semaphore(96)

        async def admit(body: dict[str, Any], replica: WebhookProcess) -> dict[str, Any]:
            async with gate, session.post(replica.url + "/mutate-pods", json=body) as response:
                assert response.status == 200
                answer: dict[str, Any] = await response.json()
            assert answer["response"]["allowed"], answer["response"].get("status")
            return answer

        bodies = [review(deployment_pod(i), uid=str(uuid.uuid4())) for i in range(PODS)]
        sends = [admit(body, replicas[i % 2]) for i, body in enumerate(bodies)]
        retries = [admit(bodies[i], replicas[(i + 1) % 2]) for i in range(RETRIED)]
        answers = await asyncio.gather(*sends, *retries)

    stored = [
        annotations_of(apply_patch(body["request"]["object"], patch_of(answer)))
        for body, answer in zip(bodies + bodies[:RETRIED], answers, strict=True)
    ]
    addresses = [a["ovn.kubernetes.io/ip_address"] for a in stored[:PODS]]
    assert len(set(addresses)) == PODS
    assert len({a["ovn.kubernetes.io/mac_address"] for a in stored[:PODS]}) == PODS
    assert stored[PODS:] == stored[:RETRIED]  # the other replica answered a retry the same
    usage = await ipam.usage("ovn-default")
    assert usage.families[0].reserved == PODS
