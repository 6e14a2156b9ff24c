"""How every daemon of podnet learns it should stop: SIGINT or SIGTERM set an event.

The sync worker, the IC controller, the node agent and the lab's processes all run
until asked to stop and then shut down in order (watches cancelled, transactions
finished, children left as they should be). One helper installs the handlers, so the
signals they answer and the way they answer are the same everywhere.
"""

from __future__ import annotations

import asyncio
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (handlers on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, stop.set)
    return stop
