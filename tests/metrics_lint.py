"""The checks of ``promtool check metrics`` (Prometheus' promlint), over exposition text.

Debian's prometheus package is far larger than what the check needs, so the rules are
spelled here and every ``/metrics`` test runs them: HELP for every metric, ``_total`` on
counters and only on counters, snake_case names and labels, base units, no reserved
suffixes outside histograms and summaries, no type in the name.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

_SNAKE = re.compile(r"[a-z_:][a-z0-9_:]*")
_NON_BASE_UNITS = {"milliseconds": "seconds", "microseconds": "seconds",
                   "nanoseconds": "seconds", "minutes": "seconds", "hours": "seconds",
                   "days": "seconds", "kilobytes": "bytes", "megabytes": "bytes",
                   "gigabytes": "bytes", "ms": "seconds", "kb": "bytes", "mb": "bytes"}
_RESERVED = ("_count", "_sum", "_bucket")


def lint(text: str) -> list[str]:
    """What promtool would complain about in ``text`` (empty when it would pass)."""
    problems: list[str] = []
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if line.startswith("# HELP ") and len(parts) >= 3:
            if parts[2] in helps:
                problems.append(f"{parts[2]}: HELP given twice")
            helps[parts[2]] = parts[3] if len(parts) > 3 else ""
        elif line.startswith("# TYPE ") and len(parts) >= 4:
            if parts[2] in types:
                problems.append(f"{parts[2]}: TYPE given twice")
            types[parts[2]] = parts[3]
    for name, kind in types.items():
        problems += [f"{name}: {problem}" for problem in _name_problems(name, kind)]
        if not helps.get(name, "").strip():
            problems.append(f"{name}: no help text")
    for family in text_string_to_metric_families(text):  # also proves it parses
        for sample in family.samples:
            problems += [f"{sample.name}: label {label} is not snake_case"
                         for label in sample.labels if not _SNAKE.fullmatch(label)]
    return sorted(set(problems))


def _name_problems(name: str, kind: str) -> list[str]:
    found = []
    if not _SNAKE.fullmatch(name):
        found.append("metric names should be written in 'snake_case' not 'camelCase'")
    if kind == "counter" and not name.endswith("_total"):
        found.append('counter metrics should have "_total" suffix')
    if kind != "counter" and name.endswith("_total"):
        found.append('non-counter metrics should not have "_total" suffix')
    if kind not in ("histogram", "summary"):
        found += [f'non-histogram and non-summary metrics should not have "{suffix}" suffix'
                  for suffix in _RESERVED if name.endswith(suffix)]
    words = name.split("_")
    found += [f'use base unit "{base}" instead of "{unit}"'
              for unit, base in _NON_BASE_UNITS.items() if unit in words]
    found += [f'metric name should not include type "{kind_word}"'
              for kind_word in ("counter", "gauge", "histogram", "summary")
              if kind_word in words]
    return found
