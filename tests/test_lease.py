"""Leader election on a Lease (``podnet_plumbing.lease``): the pure decisions, and the
elector against the lab's API server (``coordination.k8s.io/v1`` leases, as
kube-apiserver serves them: resourceVersion conflicts, 404 when absent, 409 on a racing
create)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from podnet_plumbing.lease import (
    RELEASED_DURATION_S,
    LeaderElector,
    LeaseApi,
    LeaseConflict,
    LeaseRecord,
    LeaseSettings,
    acquired_record,
    default_identity,
    expired,
    micro_time,
    record_of,
    released_record,
    renewed_record,
)
from tests.kube_api import KubeApi

NAMESPACE, NAME = "kube-system", "podnet-ic"
FAST = {"lease_duration_s": 2.0, "renew_deadline_s": 1.5, "retry_period_s": 0.3}


# ------------------------------------------------------------------ pure


def test_the_settings_default_to_client_go_timings_and_a_host_and_pid_identity() -> None:
    settings = LeaseSettings(NAME, NAMESPACE)
    assert (settings.lease_duration_s, settings.renew_deadline_s,
            settings.retry_period_s) == (15.0, 10.0, 2.0)
    assert settings.identity == default_identity()
    assert settings.identity.endswith(f"_{os.getpid()}")
    with pytest.raises(ValueError, match="renew deadline"):
        LeaseSettings(NAME, NAMESPACE, lease_duration_s=5, renew_deadline_s=5)
    with pytest.raises(ValueError, match="name and a namespace"):
        LeaseSettings("", NAMESPACE)


def test_a_lease_is_expired_when_unheld_or_unchanged_for_its_duration_as_observed() -> None:
    held = LeaseRecord("a", 15, renew_time=micro_time(0))
    assert expired(LeaseRecord(), observed_at=100.0, now=100.0)
    assert not expired(held, observed_at=100.0, now=114.9)
    assert expired(held, observed_at=100.0, now=115.0)


def test_acquiring_counts_a_transition_unless_the_holder_renews() -> None:
    fresh = acquired_record(None, "a", 15, 1000.0)
    assert (fresh.holder, fresh.duration_s, fresh.transitions) == ("a", 15, 0)
    assert fresh.acquire_time == fresh.renew_time == "1970-01-01T00:16:40.000000Z"
    taken = acquired_record(LeaseRecord("b", 15, "x", "y", 3), "a", 15, 2000.0)
    assert (taken.holder, taken.transitions) == ("a", 4)
    from_nobody = acquired_record(LeaseRecord("", 1, "x", "y", 4), "a", 15, 2000.0)
    assert from_nobody.transitions == 5
    again = acquired_record(taken, "a", 15, 2001.5)
    assert (again.acquire_time, again.transitions) == (taken.acquire_time, 4)  # a renewal
    assert again.renew_time == "1970-01-01T00:33:21.500000Z"


def test_renewing_moves_only_the_renew_time_and_releasing_empties_the_holder() -> None:
    held = acquired_record(None, "a", 15, 1000.0)
    renewed = renewed_record(held, 15, 1002.0)
    assert renewed == LeaseRecord("a", 15, held.acquire_time, micro_time(1002.0), 0)
    released = released_record(renewed, 1003.0)
    assert (released.holder, released.duration_s, released.transitions) == (
        "", RELEASED_DURATION_S, 0)
    assert released.spec()["holderIdentity"] == ""  # as client-go releases it


def test_a_record_round_trips_through_a_lease_spec() -> None:
    record = LeaseRecord("a", 15, micro_time(1.25), micro_time(2.5), 7)
    assert record_of({"spec": record.spec()}) == record
    assert record_of({}) == LeaseRecord()


# ------------------------------------------------------------------ the lab's leases


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi() as server:
        yield server


def _lease(holder: str, renew: str) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": renew, "leaseTransitions": 0}}


def _status(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ApiException) as failed:
        call()
    return failed.value.status, json.loads(str(failed.value.body))["reason"]


def test_the_lab_serves_leases_as_kube_apiserver_does(api: KubeApi) -> None:
    with api.client() as kube_api:
        leases: Any = client.CoordinationV1Api(kube_api)
        assert _status(lambda: leases.read_namespaced_lease(NAME, NAMESPACE)) == (
            404, "NotFound")
        created = leases.create_namespaced_lease(NAMESPACE, _lease("a", micro_time(1.5)))
        assert created.spec.holder_identity == "a"
        assert _status(lambda: leases.create_namespaced_lease(
            NAMESPACE, _lease("b", micro_time(1.5)))) == (409, "AlreadyExists")
        body = leases.read_namespaced_lease(NAME, NAMESPACE, _preload_content=False)
        stale = json.loads(body.data)
        fresh = {**stale, "spec": {**stale["spec"], "renewTime": micro_time(2.5)}}
        leases.replace_namespaced_lease(NAME, NAMESPACE, fresh)
        stale["spec"]["holderIdentity"] = "b"  # written on the old resourceVersion
        assert _status(lambda: leases.replace_namespaced_lease(NAME, NAMESPACE, stale)) == (
            409, "Conflict")
        bad = {**fresh, "metadata": {"name": NAME, "namespace": NAMESPACE},
               "spec": {**fresh["spec"], "renewTime": "2026-01-01T00:00:00Z"}}
        assert _status(lambda: leases.replace_namespaced_lease(NAME, NAMESPACE, bad)) == (
            400, "BadRequest")
        bad["spec"] = {**fresh["spec"], "leaseDurationSeconds": 0}
        assert _status(lambda: leases.replace_namespaced_lease(NAME, NAMESPACE, bad)) == (
            422, "Invalid")
        patched = leases.patch_namespaced_lease(NAME, NAMESPACE,
                                                {"spec": {"holderIdentity": "c"}})
        assert patched.spec.holder_identity == "c"
        listed = leases.list_namespaced_lease(NAMESPACE)
        assert [item.metadata.name for item in listed.items] == [NAME]
        watched = leases.list_namespaced_lease(
            NAMESPACE, watch=True, resource_version="0", timeout_seconds=1,
            _preload_content=False)
        first = json.loads(next(iter(watched.stream())).decode().splitlines()[0])
        assert (first["type"], first["object"]["spec"]["holderIdentity"]) == ("ADDED", "c")
        watched.release_conn()
        resources = client.ApisApi(kube_api).get_api_versions()
        assert "coordination.k8s.io" in {group.name for group in resources.groups}
        with urllib.request.urlopen(f"{api.url}/apis/coordination.k8s.io/v1") as response:
            found = json.loads(response.read())
        assert {"name": "leases", "singularName": "lease", "namespaced": True,
                "kind": "Lease"}.items() <= found["resources"][0].items()


def test_a_racing_create_and_a_stale_update_are_conflicts_for_the_elector(
    api: KubeApi,
) -> None:
    with api.client() as kube_api:
        one = LeaseApi(kube_api, LeaseSettings(NAME, NAMESPACE, identity="one"))
        two = LeaseApi(kube_api, LeaseSettings(NAME, NAMESPACE, identity="two"))
        assert one.read() is None
        lease = one.create(acquired_record(None, "one", 15, time.time()))
        with pytest.raises(LeaseConflict, match="already exists"):
            two.create(acquired_record(None, "two", 15, time.time()))
        one.update(lease, renewed_record(record_of(lease), 15, time.time()))
        with pytest.raises(LeaseConflict, match="has been modified"):
            two.update(lease, acquired_record(record_of(lease), "two", 15, time.time()))


# ------------------------------------------------------------------ elections


class Candidate:
    """One elector running on its own client, with its own stop event."""

    def __init__(self, api: KubeApi, identity: str, log: list[str]) -> None:
        self.client: Any = api.client()
        self.elector = LeaderElector(self.client, LeaseSettings(
            NAME, NAMESPACE, identity=identity, **FAST))
        self.stop = asyncio.Event()
        self.log = log
        self.task = asyncio.create_task(self.elector.run(self.stop, self._started,
                                                         self._stopped))

    async def _started(self) -> None:
        self.log.append(f"{self.identity} started")

    async def _stopped(self) -> None:
        self.log.append(f"{self.identity} stopped")

    @property
    def identity(self) -> str:
        return self.elector.identity

    @property
    def leading(self) -> bool:
        return self.elector.leading

    async def end(self) -> None:
        self.stop.set()
        try:
            await asyncio.wait_for(self.task, 10)
        finally:
            self.client.close()


@contextlib.asynccontextmanager
async def candidates(api: KubeApi, *identities: str
                     ) -> AsyncIterator[tuple[list[Candidate], list[str]]]:
    log: list[str] = []
    running = [Candidate(api, identity, log) for identity in identities]
    try:
        yield running, log
    finally:
        for one in running:
            await one.end()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.05)


def _holder(api: KubeApi) -> str:
    return str(api.get("Lease", NAME, NAMESPACE)["spec"].get("holderIdentity") or "")


async def test_one_of_two_candidates_leads_and_the_other_takes_over_on_release(
    api: KubeApi,
) -> None:
    async with candidates(api, "a", "b") as (both, log):
        await until(lambda: any(c.leading for c in both), "a leader")
        await asyncio.sleep(1.0)  # several retry periods: still exactly one
        assert [c.leading for c in both].count(True) == 1
        leader, standby = both if both[0].leading else both[::-1]
        assert _holder(api) == leader.identity
        await leader.end()  # stops, and releases the lease
        await until(lambda: standby.leading, "the standby taking over", timeout_s=2)
        assert _holder(api) == standby.identity
        assert api.get("Lease", NAME, NAMESPACE)["spec"]["leaseTransitions"] == 1
        assert log == [f"{leader.identity} started", f"{leader.identity} stopped",
                       f"{standby.identity} started"]


async def test_a_leader_that_cannot_renew_steps_down_and_a_standby_takes_over_after_expiry(
    api: KubeApi,
) -> None:
    async with candidates(api, "a") as ((a,), log):
        await until(lambda: a.leading, "a leading")
        api.stop()  # the API unreachable: a cannot renew
        try:
            await until(lambda: not a.leading, "a stepping down", timeout_s=5)
            assert log == ["a started", "a stopped"]
        finally:
            api.start()
        # a stands by again, and wins its own lease back once it has expired
        await until(lambda: a.leading, "a leading again", timeout_s=8)


async def test_a_standby_waits_for_the_whole_duration_of_a_lease_not_released(
    api: KubeApi,
) -> None:
    api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": NAME, "namespace": NAMESPACE},
                "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 2,
                         "renewTime": micro_time(time.time()), "leaseTransitions": 0}})
    async with candidates(api, "b") as ((b,), _):
        started = time.monotonic()
        await until(lambda: b.leading, "b taking over the expired lease", timeout_s=6)
        assert time.monotonic() - started >= 1.5  # not before the lease expired
        assert api.get("Lease", NAME, NAMESPACE)["spec"]["leaseTransitions"] == 1
