"""A task that runs until cancelled ends even when a library swallowed the cancellation."""

from __future__ import annotations

import asyncio

from podnet_plumbing.tasks import raise_if_cancelled


async def test_a_loop_that_checks_ends_although_its_cancellation_was_swallowed() -> None:
    swallowed = asyncio.Event()

    async def loop() -> None:
        while True:
            raise_if_cancelled()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:  # as 3.11's wait_for does when its result is ready
                swallowed.set()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert swallowed.is_set()
    assert done == {task} and task.cancelled()


async def test_a_task_never_asked_to_stop_goes_on() -> None:
    raise_if_cancelled()  # nothing happens
