"""What ``podnet up`` created outside its state directory, written down before it is made.

``podnet down`` must leave the machine as it was, even after an ``up`` that died halfway
or a controllers process that was killed while attaching pods. Network namespaces,
links and bridges are kernel objects with no owner, so the lab records each one in an
append-only file *before* creating it, and ``down`` removes whatever the file names
(removing something that does not exist is not an error). Lines are appended with
``O_APPEND`` in one write each, so several processes may record at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KINDS = ("netns", "link", "bridge")


@dataclass(frozen=True)
class Ledger:
    path: Path

    def record(self, kind: str, name: str) -> None:
        self._append(f"+ {kind} {name}\n")

    def forget(self, kind: str, name: str) -> None:
        """Note that ``name`` is gone (removed by its owner)."""
        self._append(f"- {kind} {name}\n")

    def _append(self, line: str) -> None:
        if line.split()[1] not in KINDS:
            raise ValueError(f"the ledger records {', '.join(KINDS)}, not {line.split()[1]}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)

    def entries(self) -> list[tuple[str, str]]:
        """What is recorded and not forgotten, newest first (the order to remove it in)."""
        live: dict[tuple[str, str], None] = {}
        for sign, kind, name in self._lines():
            live.pop((kind, name), None)
            if sign == "+":
                live[(kind, name)] = None
        return list(reversed(live))

    def _lines(self) -> Iterator[tuple[str, str, str]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] in "+-" and parts[1] in KINDS:
                yield parts[0], parts[1], parts[2]
