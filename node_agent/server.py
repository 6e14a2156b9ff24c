"""The agent's CNI endpoint: an asyncio unix socket only root can use.

The socket lives in a directory of mode 0700 and is itself 0600, so only root (what a
container runtime runs plugins as) can connect: a CNI call moves interfaces between
namespaces, and nobody else may ask for that. Each connection carries one request
(:mod:`node_agent.protocol`); calls run concurrently, each to completion even when the
shim gives up waiting, so the node never stays half plumbed.

This is the boundary of the exception hierarchy: whatever a handler raises leaves as a
CNI error. A :class:`~node_agent.errors.CniError` keeps its code; anything else is a bug,
logged here with its traceback and answered as an internal error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node_agent import errors, protocol

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    Handler = Callable[[protocol.Request], Awaitable[dict[str, Any] | None]]


CALLS_TIMEOUT_S = 30.0
"""At shutdown, how long calls under way may take to finish."""


class SocketInUse(RuntimeError):
    """Another agent already serves the socket."""


def _prepare(path: Path) -> None:
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    if not path.exists() and not path.is_symlink():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket of an agent that is gone
            return
    raise SocketInUse(f"another podnet agent serves {path}")


class CniServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._server: asyncio.Server | None = None
        self._calls: set[asyncio.Task[protocol.Reply]] = set()

    async def start(self) -> None:
        _prepare(self.path)
        self._server = await asyncio.start_unix_server(
            self._serve, str(self.path), limit=protocol.MAX_MESSAGE_BYTES)
        os.chmod(self.path, 0o600)
        log.info("serving CNI on %s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
        if self._calls:
            await asyncio.wait(self._calls, timeout=CALLS_TIMEOUT_S)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            call = asyncio.create_task(self.answer(line))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
            reply = await asyncio.shield(call)
            writer.write(protocol.encode(reply))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            log.info("CNI connection ended early: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def answer(self, line: bytes) -> protocol.Reply:
        """The reply to one request line; never raises."""
        try:
            request = protocol.decode_request(line)
            return protocol.success(await self.handler(request))
        except errors.CniError as exc:
            log.info("CNI call failed: %s (code %d)%s", exc.msg, exc.code,
                     f": {exc.details}" if exc.details else "")
            return protocol.failure(exc)
        except Exception as exc:
            log.exception("CNI call failed unexpectedly")
            return protocol.failure(errors.InternalError(
                f"podnet agent: {type(exc).__name__}: {exc}",
                "this is a bug; the agent's log has the traceback"))
