"""The webhook's core stays pure: no HTTP framework, no Redis, no store, no metrics.

import-linter guards the IPAM core the same way; this test reads the imports of each
core module (directly and through other ``webhook`` modules it imports) so a stray
``import aiohttp`` in the core fails here with the chain that brought it in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "webhook"
CORE = ("review", "decide", "patch", "errors", "settings", "compat", "extender")
FORBIDDEN = ("aiohttp", "redis", "prometheus_client", "ipam.store", "ipam.api", "yaml")


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def reachable(module: str) -> dict[str, str]:
    """Every import reachable from ``webhook.<module>`` through webhook modules, with a chain."""
    chains = {f"webhook.{module}": f"webhook.{module}"}
    pending = [module]
    while pending:
        current = pending.pop()
        for name in imports_of(current):
            if name in chains:
                continue
            chains[name] = f"{chains[f'webhook.{current}']} -> {name}"
            if name.startswith("webhook.") and (PACKAGE / f"{name[8:]}.py").exists():
                pending.append(name[8:])
    return chains


@pytest.mark.parametrize("module", CORE)
def test_the_webhook_core_module_imports_no_io_library(module: str) -> None:
    chains = reachable(module)
    bad = [chain for name, chain in chains.items()
           if any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN)]
    assert not bad
