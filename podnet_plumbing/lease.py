"""Leader election on a ``coordination.k8s.io/v1`` Lease, as Kubernetes controllers do it.

Several replicas of a controller run; one, the *leader*, does the work, the others stand
by. They agree through one Lease object, with the semantics of client-go's
``leaderelection`` package:

- ``spec.holderIdentity`` names the leader; ``spec.renewTime`` is when it last said it
  is alive, and ``spec.leaseDurationSeconds`` how long the others wait after that before
  they may take the lease over. ``acquireTime`` is when the holder took it, and
  ``leaseTransitions`` counts the changes of holder;
- a candidate takes the lease when it is absent (create), held by nobody, or expired
  (its ``renewTime`` plus the duration is past); the leader renews it every
  ``retry_period_s``. Every write is optimistic: a create races other creates (409
  AlreadyExists), an update carries the ``resourceVersion`` that was read (409 Conflict
  when someone wrote in between). Losing a race is not an error: the loser reads again
  at its next try;
- a leader that has not renewed successfully for ``renew_deadline_s`` steps down, before
  its lease expires for the others (the deadline is below the duration), so two
  replicas never both believe they lead for longer than clock skew allows;
- a leader that stops on purpose releases the lease (holder emptied, duration 1 s), so
  a standby takes over at its next retry rather than after the whole duration.

Expiry is judged by the candidate's own clock when it *observed* the lease change
(client-go's ``observedTime``), not by comparing the holder's ``renewTime`` with the local
clock, so clock skew between nodes does not matter: a lease is expired when its record
has not changed for ``leaseDurationSeconds`` as seen here.

The decisions are pure functions (:func:`expired`, :func:`acquired_record`,
:func:`renewed_record`, :func:`released_record`) over :class:`LeaseRecord`; only
:class:`LeaderElector` talks to the API, through the official client's
``CoordinationV1Api`` in a thread. Lease bodies are plain dicts with times written as
MicroTime (six fractional digits), as kube-apiserver requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How a Lease's times are written (``metav1.MicroTime``)."""
RELEASED_DURATION_S = 1
"""The duration a released lease carries: any standby may take it at once."""


def default_identity() -> str:
    """This process among the candidates: host name and PID (unique per replica)."""
    return f"{socket.gethostname()}_{os.getpid()}"


@dataclass(frozen=True)
class LeaseSettings:
    """Which lease, who we are, and the timings (client-go's defaults)."""

    name: str
    namespace: str
    identity: str = ""
    """Empty: :func:`default_identity`."""
    lease_duration_s: float = 15.0
    """How long after the last renewal the others wait before taking over."""
    renew_deadline_s: float = 10.0
    """How long the leader keeps trying to renew before it steps down."""
    retry_period_s: float = 2.0
    """How often the leader renews and a standby tries to acquire."""
    request_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.identity:
            object.__setattr__(self, "identity", default_identity())
        if not self.name or not self.namespace:
            raise ValueError("a lease needs a name and a namespace")
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                f"lease timings: need 0 < retry period ({self.retry_period_s} s) < renew "
                f"deadline ({self.renew_deadline_s} s) < lease duration "
                f"({self.lease_duration_s} s)")

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"


# ------------------------------------------------------------------ records


@dataclass(frozen=True)
class LeaseRecord:
    """A Lease's spec, as leader election reads and writes it."""

    holder: str = ""
    duration_s: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"holderIdentity": self.holder,
                                "leaseDurationSeconds": self.duration_s,
                                "leaseTransitions": self.transitions}
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


def record_of(lease: Mapping[str, Any]) -> LeaseRecord:
    """The record of a Lease object (a dict as the API sent it)."""
    spec = lease.get("spec") or {}
    return LeaseRecord(holder=str(spec.get("holderIdentity") or ""),
                       duration_s=int(spec.get("leaseDurationSeconds") or 0),
                       acquire_time=str(spec.get("acquireTime") or ""),
                       renew_time=str(spec.get("renewTime") or ""),
                       transitions=int(spec.get("leaseTransitions") or 0))


def micro_time(at: float) -> str:
    """Unix seconds as a MicroTime."""
    return datetime.fromtimestamp(at, UTC).strftime(MICRO_TIME)


def expired(record: LeaseRecord, observed_at: float, now: float) -> bool:
    """Whether another candidate may take the lease: nobody holds it, or its record has
    not changed for its duration since we first saw it as it is (``observed_at``, our own
    monotonic clock)."""
    if not record.holder:
        return True
    return now >= observed_at + record.duration_s


def acquired_record(current: LeaseRecord | None, identity: str, duration_s: float,
                    wall: float) -> LeaseRecord:
    """The record that makes ``identity`` the holder (``current`` None: a new lease).
    Taking it from anyone else (a released lease too) is a transition."""
    stamp = micro_time(wall)
    if current is not None and current.holder == identity:
        return renewed_record(current, duration_s, wall)
    transitions = 0 if current is None else current.transitions + 1
    return LeaseRecord(identity, _seconds(duration_s), stamp, stamp, transitions)


def renewed_record(current: LeaseRecord, duration_s: float, wall: float) -> LeaseRecord:
    """The holder's renewal: a new ``renewTime``, the rest kept."""
    return replace(current, duration_s=_seconds(duration_s), renew_time=micro_time(wall))


def released_record(current: LeaseRecord, wall: float) -> LeaseRecord:
    """What a leader that stops writes: nobody holds it, and a standby need not wait."""
    stamp = micro_time(wall)
    return replace(current, holder="", duration_s=RELEASED_DURATION_S, acquire_time=stamp,
                   renew_time=stamp)


def _seconds(duration_s: float) -> int:
    return max(1, round(duration_s))


# ------------------------------------------------------------------ the API


class LeaseConflict(Exception):
    """Someone else wrote the lease first (409: AlreadyExists or Conflict)."""


class LeaseError(Exception):
    """The API refused or failed a lease call (not a lost race)."""


def _message(exc: ApiException) -> str:
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return str(json.loads(exc.body or "")["message"])
    return str(exc.reason or exc)


class LeaseApi:
    """The three calls leader election makes, blocking (run them in a thread)."""

    def __init__(self, api: client.ApiClient, settings: LeaseSettings) -> None:
        self.client = api
        self.coordination = client.CoordinationV1Api(api)
        self.settings = settings

    def _call(self, what: str, call: Callable[[], Any]) -> dict[str, Any] | None:
        try:
            response = call()
        except ApiException as exc:
            if exc.status == 404 and what == "reading":
                return None
            if exc.status == 409:
                raise LeaseConflict(f"{what} lease {self.settings.where}: "
                                    f"{_message(exc)}") from exc
            raise LeaseError(f"{what} lease {self.settings.where}: {_message(exc)} "
                             f"(HTTP {exc.status})") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise LeaseError(f"{what} lease {self.settings.where}: {exc}") from exc
        found: dict[str, Any] = json.loads(response.data)
        return found

    def read(self) -> dict[str, Any] | None:
        """The Lease, or None when there is none."""
        s = self.settings
        return self._call("reading", lambda: self.coordination.read_namespaced_lease(
            s.name, s.namespace, _preload_content=False, _request_timeout=s.request_timeout_s))

    def _write(self, method: str, path: str, body: Mapping[str, Any]) -> Any:
        """A create or replace with ``body`` sent as it is. The generated
        ``create_namespaced_lease``/``replace_namespaced_lease`` turn a dict into a
        ``V1Lease`` first and write its times back with ``isoformat()``, which drops the
        fraction when the microseconds are zero: kube-apiserver refuses that as a
        MicroTime. The request is the client's own (its credentials, its TLS)."""
        s = self.settings
        request = self.client.param_serialize(
            method=method, resource_path=path,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=dict(body), auth_settings=["BearerToken"])
        response: Any = self.client.call_api(*request, _request_timeout=s.request_timeout_s)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response

    def create(self, record: LeaseRecord) -> dict[str, Any]:
        s = self.settings
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": record.spec()}
        created = self._call("creating", lambda: self._write(
            "POST", f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases", body))
        assert created is not None
        return created

    def update(self, lease: Mapping[str, Any], record: LeaseRecord) -> dict[str, Any]:
        """Replace the lease's spec; the ``resourceVersion`` read makes it conditional."""
        s = self.settings
        body = {**lease, "spec": record.spec()}
        updated = self._call("updating", lambda: self._write(
            "PUT", f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases/{s.name}",
            body))
        assert updated is not None
        return updated


# ------------------------------------------------------------------ the elector


class LeaderElector:
    """Acquire, hold and release one lease; tell the caller when leadership changes.

    ``await elector.run(stop, on_started, on_stopped)``: tries to acquire every retry
    period; once leader, calls ``on_started`` and renews every retry period; when it can
    no longer renew within the renew deadline (or ``stop`` is set) it calls
    ``on_stopped`` and, if ``stop`` was set, releases the lease and returns; after losing
    it, it stands by again. :attr:`leading` says where it is now.
    """

    def __init__(self, api: client.ApiClient, settings: LeaseSettings,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.api = LeaseApi(api, settings)
        self.clock = clock
        self.wall = wall
        self.leading = False
        self._lease: dict[str, Any] | None = None
        self._observed: tuple[LeaseRecord, float] | None = None

    @property
    def identity(self) -> str:
        return self.settings.identity

    def _observe(self, record: LeaseRecord) -> float:
        """When we first saw the lease as it is now (our clock)."""
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, self.clock())
        return self._observed[1]

    def _try_acquire_or_renew(self) -> bool:
        """One attempt (blocking): True when we hold the lease after it."""
        s = self.settings
        lease = self.api.read()
        if lease is None:
            record = acquired_record(None, s.identity, s.lease_duration_s, self.wall())
            self._keep(self.api.create(record))
            return True
        current = record_of(lease)
        observed_at = self._observe(current)
        if current.holder != s.identity and not expired(current, observed_at, self.clock()):
            self._lease = lease
            return False
        record = (renewed_record(current, s.lease_duration_s, self.wall())
                  if current.holder == s.identity
                  else acquired_record(current, s.identity, s.lease_duration_s, self.wall()))
        self._keep(self.api.update(lease, record))
        return True

    def _keep(self, lease: dict[str, Any]) -> None:
        self._lease = lease
        self._observe(record_of(lease))

    async def _attempt(self) -> bool:
        try:
            return await asyncio.to_thread(self._try_acquire_or_renew)
        except LeaseConflict as exc:
            log.debug("%s", exc)
        except LeaseError as exc:
            log.warning("%s", exc)
        return False

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Try every retry period until we lead (True) or ``stop`` is set (False)."""
        waiting_for = ""
        while not stop.is_set():
            if await self._attempt():
                log.info("lease %s acquired: %s leads", self.settings.where, self.identity)
                return True
            holder = record_of(self._lease or {}).holder
            if holder and holder != waiting_for:
                log.info("lease %s is held by %s; standing by", self.settings.where, holder)
                waiting_for = holder
            await _sleep(stop, self.settings.retry_period_s)
        return False

    async def hold(self, stop: asyncio.Event) -> None:
        """Renew every retry period until a renewal fails for the renew deadline (the
        lease lost: returns) or ``stop`` is set (returns, still holding)."""
        s = self.settings
        last_renewed = self.clock()
        while not stop.is_set():
            await _sleep(stop, s.retry_period_s)
            if stop.is_set():
                return
            if await self._attempt():
                last_renewed = self.clock()
                continue
            holder = record_of(self._lease or {}).holder
            if holder and holder != self.identity:
                log.warning("lease %s taken over by %s", s.where, holder)
                return
            if self.clock() - last_renewed >= s.renew_deadline_s:
                log.error("lease %s not renewed for %.1f s (the renew deadline): stepping "
                          "down", s.where, self.clock() - last_renewed)
                return

    async def release(self) -> None:
        """Give the lease up, if we still hold it, so a standby takes over at once."""
        lease = self._lease
        if lease is None or record_of(lease).holder != self.identity:
            return
        try:
            await asyncio.to_thread(self.api.update, lease,
                                    released_record(record_of(lease), self.wall()))
            log.info("lease %s released", self.settings.where)
        except (LeaseConflict, LeaseError) as exc:
            log.warning("lease %s not released (it expires by itself): %s",
                        self.settings.where, exc)
        self._lease = None

    async def run(self, stop: asyncio.Event, on_started: Callable[[], Awaitable[None]],
                  on_stopped: Callable[[], Awaitable[None]]) -> None:
        """Elect, lead, stand by again after a loss, until ``stop``; then release."""
        while not stop.is_set():
            if not await self.acquire(stop):
                break
            self.leading = True
            try:
                await on_started()
                await self.hold(stop)
            finally:
                self.leading = False
                await on_stopped()
        await self.release()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
