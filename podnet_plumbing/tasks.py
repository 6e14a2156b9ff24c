"""Cancellation that survives libraries which swallow it.

On Python 3.11, ``asyncio.wait_for`` returns the inner result when a cancellation
arrives just as that result is ready, and the cancellation is lost; redis-py sends every
command through ``wait_for``. A task that runs until cancelled (the sync worker, the
lab's controllers, a watcher) would then carry on, and whoever awaits its end would
wait forever. The task still counts the request (``Task.cancelling``), so such loops
check it every turn.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop and is not done."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
