"""Subnet status: the IPAM's counts where ``kubectl get subnets`` shows them.

Kube-OVN users read a subnet's usage from its status (``v4usingIPs``, ``v4availableIPs``,
``v6usingIPs``, ``v6availableIPs``: the V4USED ... V6AVAILABLE columns of the CRD), and
tools decide from ``v4availableIPs`` whether a subnet is full. The IPAM is the truth of
those numbers, so the sync worker writes them, but apart from its steps: a step only
notes which subnets it touched (no await, no API call), and a task of its own reads each
touched subnet's usage from the IPAM and patches the Subnet's ``status`` subresource,

- at most once per interval per subnet, so a burst of pods costs one patch, not one each;
- only when the numbers differ from what the Subnet holds (a full resync checks all);
- with a failure logged and retried with backoff for that subnet alone.

Writing the status changes the Subnet, so its watch reports it: ``status_only_change``
tells the worker such an event asks for nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ipam import errors
from ipam.records import SubnetUsage
from podnet_plumbing.tasks import raise_if_cancelled

log = logging.getLogger(__name__)

SubnetStatusPatcher = Callable[[str, Mapping[str, Any]], Awaitable[object]]
"""Merges (subnet name, status fields) into the Subnet's ``status`` subresource."""
UsageReader = Callable[[str], Awaitable[SubnetUsage]]
SubnetReader = Callable[[str], Mapping[str, Any] | None]
"""The Subnet object as last seen (None: there is none to show a status on)."""

COUNT_FIELDS = ("v4usingIPs", "v4availableIPs", "v6usingIPs", "v6availableIPs")
READY = "Ready"


@dataclass(frozen=True)
class StatusSettings:
    interval_s: float = 1.0
    """A subnet's status is patched at most once per this many seconds."""
    retry_max_s: float = 60.0
    """The longest wait before a failed patch is tried again."""


class StatusObserver(Protocol):
    """Told of every status patch (metrics); runs inline, so it must be cheap."""

    def status_patched(self) -> None: ...

    def status_failed(self) -> None: ...


# --------------------------------------------------------------- the status


def subnet_counts(usage: SubnetUsage) -> dict[str, int]:
    """Kube-OVN's counts: addresses held (bound, reserved or kept) and addresses still
    free, per family; 0 for a family the subnet does not have."""
    counts = dict.fromkeys(COUNT_FIELDS, 0)
    for family in usage.families:
        counts[f"v{family.family}usingIPs"] = family.used + family.reserved
        counts[f"v{family.family}availableIPs"] = family.free
    return counts


def ready_condition(usage: SubnetUsage, stored: Mapping[str, Any]) -> dict[str, Any]:
    """A Kube-OVN-like ``Ready`` condition: False while allocation is fenced (Redis lost
    state and the index is not rebuilt yet). Its transition time moves only when its
    status does."""
    status, reason, message = ("False", "Fenced", "allocation waits until the sync worker "
                               "has rebuilt the IPAM's index from the live pods") \
        if usage.fenced else ("True", "Allocatable", "the IPAM hands out its addresses")
    previous = next((c for c in stored.get("conditions") or []
                     if isinstance(c, Mapping) and c.get("type") == READY), {})
    since = previous.get("lastTransitionTime") if previous.get("status") == status else None
    return {"type": READY, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since or _now()}


def subnet_status(usage: SubnetUsage, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The status to write, given the one the Subnet has (``stored``)."""
    return {**subnet_counts(usage), "conditions": [ready_condition(usage, stored)]}


def same_status(wanted: Mapping[str, Any], stored: Mapping[str, Any] | None) -> bool:
    """Whether ``stored`` already says what ``wanted`` does (times aside)."""
    if stored is None or any(stored.get(key) != wanted[key] for key in COUNT_FIELDS):
        return False
    return _conditions_of(stored) == _conditions_of(wanted)


def _conditions_of(status: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
            for c in status.get("conditions") or [] if isinstance(c, Mapping)]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_only_change(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether an update changed nothing but the status (and the resourceVersion)."""
    if old is None:
        return False

    def rest(obj: Mapping[str, Any]) -> dict[str, Any]:
        metadata = {key: value for key, value in (obj.get("metadata") or {}).items()
                    if key not in ("resourceVersion", "managedFields")}
        return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": metadata}

    return rest(old) == rest(new)


# --------------------------------------------------------------- the writer


class SubnetStatusWriter:
    """Patches touched subnets' status from the IPAM, coalesced and rate-limited."""

    def __init__(self, usage: UsageReader, patch: SubnetStatusPatcher, subnet: SubnetReader,
                 settings: StatusSettings | None = None) -> None:
        self.usage = usage
        self.patch = patch
        self.subnet = subnet
        self.settings = settings or StatusSettings()
        self.observer: StatusObserver | None = None
        self._dirty: set[str] = set()
        self._not_before: dict[str, float] = {}  # subnet -> monotonic time
        self._written: dict[str, dict[str, Any]] = {}  # subnet -> the status last patched
        self._failures: dict[str, int] = {}
        self._wake = asyncio.Event()

    def touch(self, names: Iterable[str]) -> None:
        """Note subnets whose usage may have changed; costs no I/O."""
        fresh = {name for name in names if name}
        if fresh - self._dirty:
            self._dirty |= fresh
            self._wake.set()

    def touch_all(self, names: Iterable[str]) -> None:
        """A full resync: every subnet is checked against what its Subnet holds (not
        what this writer last patched), and forgotten subnets are dropped."""
        wanted = set(names)
        for memory in (self._not_before, self._written, self._failures):
            for name in [name for name in memory if name not in wanted]:
                del memory[name]
        self._written.clear()
        self.touch(wanted)

    async def run(self) -> None:
        """Write touched subnets' status until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                now = time.monotonic()
                due = sorted(n for n in self._dirty if self._not_before.get(n, 0.0) <= now)
                if not due:
                    await asyncio.sleep(min(self._not_before[n] for n in self._dirty) - now)
                    continue
                self._dirty.difference_update(due)
                for name in due:
                    await self.publish(name)

    async def publish(self, name: str) -> bool:
        """Patch one subnet's status if it differs; True when a patch was sent. A failure
        is logged and the subnet is tried again after a backoff."""
        self._not_before[name] = time.monotonic() + self.settings.interval_s
        try:
            return await self._publish(name)
        except errors.UnknownSubnet:
            return False  # deleted meanwhile: nothing to show
        except Exception as exc:  # one subnet's trouble never stops the others
            raise_if_cancelled()
            self._failed(name, exc)
            return False

    async def _publish(self, name: str) -> bool:
        obj = self.subnet(name)
        if obj is None:
            return False  # a subnet the IPAM made on its own (join) has no object
        found = obj.get("status")
        stored: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        wanted = subnet_status(await self.usage(name), stored)
        if same_status(wanted, stored) or same_status(wanted, self._written.get(name)):
            self._failures.pop(name, None)
            return False
        await self.patch(name, wanted)
        self._written[name] = wanted
        self._failures.pop(name, None)
        if self.observer is not None:
            self.observer.status_patched()
        log.debug("subnet %s: status %s", name, subnet_counts_text(wanted))
        return True

    def _failed(self, name: str, exc: Exception) -> None:
        attempts = self._failures.get(name, 0) + 1
        self._failures[name] = attempts
        delay = min(self.settings.interval_s * 2 ** attempts, self.settings.retry_max_s)
        self._not_before[name] = time.monotonic() + delay
        self._dirty.add(name)
        self._wake.set()
        log.warning("subnet %s: could not write its status (attempt %d; retrying in %.0f s): "
                    "%s", name, attempts, delay, exc)
        if self.observer is not None:
            self.observer.status_failed()


def subnet_counts_text(status: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={status.get(key)}" for key in COUNT_FIELDS)
