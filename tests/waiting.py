"""Waiting in tests for what real daemons do on their own time (watches, OVN, agents)."""

from __future__ import annotations

import asyncio
import time
import warnings
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


def until(check: Callable[[], bool], timeout_s: float = 20.0, what: str = "",
          interval_s: float = 0.2) -> None:
    """Poll ``check`` (a plain function) until it holds; fail the test after
    ``timeout_s``, naming ``what`` (or the function)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, \
            f"{what or getattr(check, '__name__', check)} never held in {timeout_s}s"
        time.sleep(interval_s)


async def cancelled(task: asyncio.Task[Any], timeout_s: float = 10.0) -> None:
    """Cancel ``task`` and wait for it to end, at most ``timeout_s``.

    A task that does not end has swallowed its cancellation somewhere: rather than hang
    the suite until its timeout, warn with the chain of awaits it is stuck in (the
    diagnosis), and let the teardown go on.
    """
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        warnings.warn(f"task {task.get_name()} ignored its cancellation for {timeout_s}s; "
                      f"stuck at:\n{await_chain(task)}", stacklevel=2)
    elif not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


def await_chain(task: asyncio.Task[Any]) -> str:
    """Where a suspended task waits: each coroutine of its await chain, outermost first."""
    lines = []
    awaitable: Any = task.get_coro()
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in "
                         f"{frame.f_code.co_name}")
        else:
            lines.append(f"  {awaitable!r}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom",
                                                                    None)
    return "\n".join(lines)
