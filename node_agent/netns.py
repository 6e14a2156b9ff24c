"""Work inside a network namespace without moving the agent itself.

A network namespace belongs to a thread, and a socket to the namespace of the thread
that created it, for its whole life. So the agent reaches a pod's namespace (and, when
it is told to run outside its node's namespace, the node's) from threads that enter it
with ``setns(2)``: a throwaway thread per job in a pod, or threads that live in the
node's namespace for good (:mod:`node_agent.plug`). The event loop's thread never
changes namespace, so nothing can leak into the wrong one. Commands (``nft``) run there
through ``nsenter``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class NetnsGone(FileNotFoundError):
    """The network namespace does not exist (any more)."""


def netns_path(name_or_path: str) -> str:
    """A namespace file: paths stay, bare names are ``ip netns`` names."""
    return name_or_path if "/" in name_or_path else f"{NETNS_RUN_DIR}/{name_or_path}"


def exists(path: str) -> bool:
    return os.path.exists(path)


def enter(path: str) -> None:
    """Move the calling thread into namespace ``path`` (for good)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NetnsGone(f"network namespace {path} does not exist") from exc
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


async def run_in_async(path: str | None, job: Callable[[], T]) -> T:
    """``job()`` run in namespace ``path`` (here when None) on a thread that then ends,
    awaited without blocking the event loop."""
    if path is None:
        return job()
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    def work() -> None:
        try:
            enter(path)
            value = job()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
            return
        loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=work, name="netns-job", daemon=True).start()
    return await future


def command_in(path: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` to be run in namespace ``path`` (through nsenter), as is when None."""
    return ["nsenter", f"--net={path}", "--", *argv] if path else list(argv)


async def run_command(
    path: str | None, argv: Sequence[str], stdin: bytes = b"", timeout_s: float = 30.0
) -> str:
    """Run a command in namespace ``path``; its stdout, or ``OSError`` with its stderr."""
    process = await asyncio.create_subprocess_exec(
        *command_in(path, argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate(stdin)
    except TimeoutError as exc:
        process.kill()
        await process.wait()
        raise OSError(f"{' '.join(argv)} did not finish in {timeout_s}s") from exc
    if process.returncode != 0:
        raise OSError(f"{' '.join(argv)} exited with {process.returncode}: "
                      f"{err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")
