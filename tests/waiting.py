"""Waiting in tests for what real daemons do on their own time (watches, OVN, agents)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def eventually(
    check: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition",
    interval_s: float = 0.02,
) -> Any:
    """Poll ``check`` (a function, or one returning a coroutine) until it returns a true
    value, and return that value; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout_s}s")
        await asyncio.sleep(interval_s)
