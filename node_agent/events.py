"""A failed attach as a Warning Event on the pod, where ``kubectl describe pod`` shows it.

When a CNI ADD fails, kubelet reports ``FailedCreatePodSandBox`` with podnet's message
buried in the runtime's error chain, and then retries every few seconds. The agent knows
the cause, so it says it on the pod itself (reason ``FailedAttach``), but the Event is a
courtesy, never part of the CNI call:

- ``EventRecorder.warn`` never awaits and never raises: it puts the Event in a bounded
  queue that a task of its own drains; a full queue drops it (counted, logged) rather
  than hold a reply back;
- a pod failing in a loop records one Event per pod and reason per interval; the next
  one says how many failures were left out, so the count is not lost;
- a failed API call is logged, and the agent goes on.

An agent without API access (``--standalone``) has no recorder at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from node_agent import errors
from node_agent.netconf import PodRef
from podnet_plumbing.tasks import raise_if_cancelled

log = logging.getLogger(__name__)

FAILED_ATTACH = "FailedAttach"
COMPONENT = "podnet-agent"

EventSender = Callable[[PodRef, str, str], Awaitable[object]]
"""Records (pod, reason, message) as a Warning Event on the pod."""
UidLookup = Callable[[PodRef], str]
"""The pod's UID as the agent knows it ('' when it does not)."""


@dataclass(frozen=True)
class EventSettings:
    interval_s: float = 60.0
    """At most one Event per pod and reason in this many seconds."""
    queue_size: int = 64
    """Events waiting to be sent; beyond that they are dropped."""
    remembered: int = 4096
    """Pod and reason pairs remembered for the interval (the oldest go first)."""


@dataclass
class _Seen:
    at: float
    left_out: int = 0


class EventRecorder:
    """Fire-and-forget Warning Events, bounded in flight and per pod and reason."""

    def __init__(self, send: EventSender, settings: EventSettings | None = None) -> None:
        self.send = send
        self.settings = settings or EventSettings()
        self.sent = 0
        self.suppressed = 0
        """Failures left out because their pod and reason had an Event in the interval."""
        self.dropped = 0
        """Events dropped: the queue was full, or the API call failed."""
        self._queue: asyncio.Queue[tuple[PodRef, str, str]] = asyncio.Queue(
            self.settings.queue_size)
        self._seen: dict[tuple[str, str, str], _Seen] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="podnet-events")

    async def stop(self) -> None:
        """Stop sending; Events still queued are dropped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def warn(self, pod: PodRef, reason: str, message: str) -> bool:
        """Queue a Warning Event on ``pod`` unless one of that reason went out within the
        interval; returns whether it was queued. Never blocks, never raises."""
        key = (pod.namespace, pod.name, reason)
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen.at < self.settings.interval_s:
            seen.left_out += 1
            self.suppressed += 1
            return False
        if seen is not None and seen.left_out:
            message = (f"{message} ({seen.left_out} more like it in the "
                       f"{self.settings.interval_s:.0f} s before were not recorded)")
        try:
            self._queue.put_nowait((pod, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1
            log.info("pod %s: event %s dropped: %d events wait already", pod.key, reason,
                     self._queue.qsize())
            return False
        self._seen.pop(key, None)
        self._seen[key] = _Seen(now)  # re-inserted: the dict stays oldest first
        self._forget_old(now)
        return True

    def _forget_old(self, now: float) -> None:
        if len(self._seen) <= self.settings.remembered:
            return
        for key in [k for k, s in self._seen.items() if now - s.at >= self.settings.interval_s]:
            del self._seen[key]
        while len(self._seen) > self.settings.remembered:
            del self._seen[next(iter(self._seen))]

    async def _drain(self) -> None:
        while True:
            pod, reason, message = await self._queue.get()
            try:
                await self.send(pod, reason, message)
                self.sent += 1
            except Exception as exc:  # an Event is best effort; the agent's log has it
                raise_if_cancelled()
                self.dropped += 1
                log.info("pod %s: could not record event %s: %s", pod.key, reason, exc)


def kube_sender(kube_api: Any, uid_of: UidLookup) -> EventSender:
    """An ``EventSender`` through the official client ``kube_api``: the Event names the
    pod by namespace, name and (when known) UID, as ``kubectl describe`` matches it."""
    from kubernetes import client

    from podnet_plumbing import kube

    core = client.CoreV1Api(kube_api)

    async def send(pod: PodRef, reason: str, message: str) -> object:
        involved = {"kind": "Pod", "namespace": pod.namespace, "name": pod.name}
        uid = pod.uid or uid_of(pod)
        if uid:
            involved["uid"] = uid
        await kube.record_event(core, involved, reason, message, component=COMPONENT)
        return None

    return send


def attach_failure(pod: PodRef, container_id: str, exc: Exception) -> str:
    """The Event's message: the pod, the sandbox and the cause, as the CNI error says it."""
    cause = str(exc).removeprefix("podnet: ") or type(exc).__name__
    details = exc.details if isinstance(exc, errors.CniError) else ""
    return (f"podnet could not attach pod {pod.key} (sandbox {container_id[:12]}): {cause}"
            + (f" ({details})" if details else ""))
