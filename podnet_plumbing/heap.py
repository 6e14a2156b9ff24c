"""Garbage-collector policy for podnet's long-running daemons.

A daemon's heap is mostly long-lived (imported modules, an OVSDB replica, an index of
every pod), and CPython's full collections walk all of it: pauses of tens to hundreds
of milliseconds, at random, in the middle of an admission or an event step. Frozen
once the long-lived part is built, that heap is skipped by later collections; cyclic
garbage made afterwards is still collected, and a daemon whose long-lived part keeps
changing (the sync worker, at every full step) settles again, paying one full
collection at a moment that is already a long one.
"""

from __future__ import annotations

import gc


def settle_heap(young_threshold: int | None = None) -> None:
    """Collect everything once, then freeze what is left out of the collector's sight.

    ``young_threshold`` (allocations between young collections; CPython's default is
    700) may be raised for a server whose requests allocate many short-lived objects,
    nearly all freed by reference counting.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
