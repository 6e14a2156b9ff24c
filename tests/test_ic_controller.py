"""``podnet ic``'s loop through a Kubernetes API: the ConfigMap, Subnets and Nodes it
follows, the labels and Events it writes, its endpoints; against two real AZs.

AZ1 is run by the controller's loop (``podnet_ic.main.run_ic``) on the lab's API server;
AZ2 is driven directly, as in tests/test_ic.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ipam.annotations import IC_GATEWAY_LABEL
from podnet.daemons import free_port
from podnet_ic.daemon import stop_any
from podnet_ic.desired import IcSubnet
from podnet_ic.main import IcOptions, run_ic
from podnet_plumbing import kube
from podnet_plumbing.lease import LeaseSettings
from podnet_sync.nb_model import StaticRoute
from tests.ic_fixtures import JOIN, World, world
from tests.kube_api import KubeApi
from tests.metrics_lint import lint

pytestmark = pytest.mark.slow

AZ1_POD, AZ2_POD, OVERLAP = "10.16.0.0/16", "10.17.0.0/16", "10.16.128.0/17"


@pytest.fixture
def ic(tmp_path: Path) -> Iterator[World]:
    subnets = {"az1": [IcSubnet("ovn-default", (AZ1_POD,)), IcSubnet("join", (JOIN,))],
               "az2": [IcSubnet("ovn-default", (AZ2_POD,)), IcSubnet("join", (JOIN,))]}
    with world(tmp_path, subnets, {"az1": ("172.31.0.11",), "az2": ("172.31.0.12",)}) as made:
        made.zones["az1"].controller.close()  # AZ1 belongs to the loop under test
        yield made


def _node(name: str, address: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
            "status": {"addresses": [{"type": "InternalIP", "address": address}]}}


def _subnet(name: str, cidr: str) -> dict[str, Any]:
    return {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
            "spec": {"cidrBlock": cidr, "protocol": "IPv4"}}


@pytest.fixture
def api(ic: World) -> Iterator[KubeApi]:
    with KubeApi() as server:
        gateway = ic.zones["az1"].gateway.name
        server.create(_node(gateway, "172.31.0.11"))
        server.create(_node("az1-worker", "172.31.0.21", {IC_GATEWAY_LABEL: "true"}))
        server.create(_subnet("ovn-default", AZ1_POD))
        server.create(_subnet("join", JOIN))
        yield server


@contextlib.asynccontextmanager
async def running(ic: World, api: KubeApi, state_dir: Path, port: int,
                  resync_interval_s: float = 0.5, lease: LeaseSettings | None = None,
                  stop: asyncio.Event | None = None) -> AsyncIterator[asyncio.Task[None]]:
    zone = ic.zones["az1"]
    stop = stop or asyncio.Event()
    options = IcOptions(zone.central.nb_remote, zone.central.sb_remote, state_dir,
                        kube.KubeSettings(), listen=("127.0.0.1", port),
                        resync_interval_s=resync_interval_s, leader_election=lease)
    with api.client() as client:
        task = asyncio.create_task(run_ic(options, stop, client=client))
        try:
            yield task
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, 30)
            finally:
                stop_any(state_dir)  # the loop leaves ovn-ic running on exit, by design


async def until(check: Callable[[], bool], what: str, ic: World, timeout_s: float = 60) -> None:
    """Drive AZ2 (as its own controller would) until ``check()`` holds."""
    deadline = time.monotonic() + timeout_s
    az2 = ic.zones["az2"]
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.to_thread(az2.controller.reconcile, ic.configs["az2"], az2.inputs())
        await asyncio.sleep(0.3)


def _labels(api: KubeApi, name: str) -> dict[str, str]:
    return dict(api.get("Node", name).get("metadata", {}).get("labels") or {})


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


async def test_the_loop_follows_the_config_map_labels_gateways_and_reports_problems(
    ic: World, api: KubeApi, tmp_path: Path,
) -> None:
    ic.enable()
    az1 = ic.zones["az1"]
    port = free_port()
    async with running(ic, api, tmp_path / "az1-loop", port) as task:
        api.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "ovn-ic-config", "namespace": "kube-system"},
                    "data": ic.ic.config_map_data("az1", [az1.gateway.name])})
        await until(lambda: AZ2_POD in az1.learned()
                    and AZ1_POD in ic.zones["az2"].learned(), "routes learned both ways", ic)
        assert not task.done()
        assert _labels(api, az1.gateway.name).get(IC_GATEWAY_LABEL) == "true"
        assert IC_GATEWAY_LABEL not in _labels(api, "az1-worker")
        status, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert lint(body) == []
        assert "podnet_ic_enabled 1.0" in body

        # AZ2 advertises a prefix inside AZ1's pod subnet: refused, and reported.
        az2 = ic.zones["az2"]
        az2.extra_routes["overlap"] = StaticRoute("ovn-cluster", "overlap", OVERLAP,
                                                  "100.64.0.3")
        az2.sync()

        def refused() -> bool:
            return any(event.get("reason") == "RouteRefused"
                       and f"route {OVERLAP} advertised by AZ az2" in str(event.get("message"))
                       and event["involvedObject"]["name"] == "ovn-ic-config"
                       for event in api.objects("Event", "kube-system"))

        await until(refused, "a RouteRefused event", ic)
        assert OVERLAP not in az1.learned()
        _, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert "podnet_ic_refused_routes 1.0" in body
        del az2.extra_routes["overlap"]
        az2.sync()

        # An unusable value is reported on the ConfigMap and the setup stays.
        api.patch("ConfigMap", "ovn-ic-config", {"data": {"az-name": "AZ One"}}, "kube-system")

        def reported() -> bool:
            return any(event.get("reason") == "InvalidConfig"
                       and "data.az-name 'AZ One'" in str(event.get("message"))
                       for event in api.objects("Event", "kube-system"))

        await until(reported, "an InvalidConfig event", ic)
        assert AZ2_POD in az1.learned()

        # The ConfigMap deleted: everything IC goes, the label too.
        api.delete("ConfigMap", "ovn-ic-config", "kube-system")
        await until(lambda: az1.nb("Logical_Router_Port", "name=az1-ts") == []
                    and not az1.learned(), "AZ1's IC setup removed", ic)
        await until(lambda: IC_GATEWAY_LABEL not in _labels(api, az1.gateway.name),
                    "the gateway label removed", ic)
        assert az1.nb("NB_Global")[0]["name"] == ""


def _reconciles(port: int) -> float:
    _, body = _get(f"http://127.0.0.1:{port}/metrics")
    found = re.search(r'podnet_ic_reconciles_total\{result="ok"\} ([0-9.]+)', body)
    return float(found.group(1)) if found else 0.0


async def test_a_learned_route_is_allowed_through_without_waiting_for_a_resync(
    ic: World, api: KubeApi, tmp_path: Path,
) -> None:
    ic.enable()
    az1 = ic.zones["az1"]
    port = free_port()
    async with running(ic, api, tmp_path / "az1-prompt", port, resync_interval_s=3600):
        api.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "ovn-ic-config", "namespace": "kube-system"},
                    "data": ic.ic.config_map_data("az1", [az1.gateway.name])})

        def allowed() -> bool:
            return AZ2_POD in az1.learned() and any(
                AZ2_POD in str(row.get("match")) for row in az1.nb("Logical_Router_Policy"))

        # the resync is an hour away: ovn-ic's learned route itself wakes the loop
        await until(allowed, "the learned route's allow policy", ic)
        settled = await asyncio.to_thread(_reconciles, port)
        await asyncio.sleep(2)
        # its own writes do not keep waking it
        assert await asyncio.to_thread(_reconciles, port) - settled <= 2
        api.delete("ConfigMap", "ovn-ic-config", "kube-system")
        await until(lambda: not az1.learned(), "AZ1's IC setup removed", ic)


def _ovn_ic_alive(state_dir: Path) -> bool:
    try:
        pid = int((state_dir / "ovn-ic.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


async def test_two_replicas_with_leader_election_one_reconciles_and_the_other_takes_over(
    ic: World, api: KubeApi, tmp_path: Path,
) -> None:
    ic.enable()
    az1, az2 = ic.zones["az1"], ic.zones["az2"]
    api.create({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "ovn-ic-config", "namespace": "kube-system"},
                "data": ic.ic.config_map_data("az1", [az1.gateway.name])})
    timings = {"lease_duration_s": 2.0, "renew_deadline_s": 1.5, "retry_period_s": 0.3}
    ports = {"a": free_port(), "b": free_port()}
    dirs = {name: tmp_path / f"replica-{name}" for name in ports}
    stops = {name: asyncio.Event() for name in ports}
    lease = {name: LeaseSettings("podnet-ic", "podnet-system", identity=f"replica-{name}",
                                 **timings) for name in ports}

    def holder() -> str:
        found = api.state.find(api.state.resource("Lease"), "podnet-system", "podnet-ic")
        return str(((found or {}).get("spec") or {}).get("holderIdentity") or "")

    async with running(ic, api, dirs["a"], ports["a"], lease=lease["a"], stop=stops["a"]), \
            running(ic, api, dirs["b"], ports["b"], lease=lease["b"], stop=stops["b"]):
        await until(lambda: AZ2_POD in az1.learned() and AZ1_POD in az2.learned(),
                    "routes learned both ways", ic)
        await asyncio.sleep(1.5)  # several retry periods later, still the same one
        leader = holder().removeprefix("replica-")
        (standby,) = set(ports) - {leader}
        metrics = {name: (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics"))[1]
                   for name, port in ports.items()}
        assert "podnet_ic_leader 1.0" in metrics[leader]
        assert "podnet_ic_leader 0.0" in metrics[standby]
        assert 'podnet_ic_reconciles_total{result="ok"}' in metrics[leader]
        assert "podnet_ic_reconciles_total{" not in metrics[standby]  # reconciled nothing
        assert _ovn_ic_alive(dirs[leader]) and not _ovn_ic_alive(dirs[standby])
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{ports[standby]}/readyz")
        assert (status, json.loads(body)) == (200, {"status": "ready", "role": "standby"})

        # the leader stops: it releases the lease, the standby takes over and converges
        stops[leader].set()
        await until(lambda: holder() == f"replica-{standby}", "the standby leading", ic,
                    timeout_s=15)
        await until(lambda: _ovn_ic_alive(dirs[standby]) and not _ovn_ic_alive(dirs[leader]),
                    "ovn-ic running under the new leader only", ic, timeout_s=30)
        late = "10.18.0.0/16"
        az2.extra_routes["late"] = StaticRoute("ovn-cluster", "late", late, "100.64.0.3")
        az2.sync()

        def allowed() -> bool:  # learned by the new leader's ovn-ic, allowed by its loop
            return late in az1.learned() and any(
                late in str(row.get("match")) for row in az1.nb("Logical_Router_Policy"))

        await until(allowed, "a new AZ2 prefix learned and allowed in AZ1", ic)
        _, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{ports[standby]}/metrics")
        assert "podnet_ic_leader 1.0" in body
        spec = api.get("Lease", "podnet-ic", "podnet-system")["spec"]
        assert spec["leaseTransitions"] == 1
