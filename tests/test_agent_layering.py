"""The node agent's pure core stays free of I/O libraries, and the shim of everything
but the smallest stdlib modules (ARCHITECTURE §1: cores take and return typed values).

Each module is imported in a fresh interpreter and the modules it pulled in are checked,
which also catches an import made indirectly through another podnet module.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import node_agent

CORE = ["netconf", "network", "qos", "gateway", "result", "protocol", "errors"]
IO_LIBRARIES = {"pyroute2", "ovsdbapp", "ovs", "kubernetes", "redis", "aiohttp", "asyncio",
                "subprocess", "node_agent.plug", "node_agent.ovs", "node_agent.agent",
                "node_agent.server", "node_agent.routing", "node_agent.netns"}
ROOT = Path(node_agent.__file__).resolve().parent.parent


def loaded_by(module: str) -> set[str]:
    probe = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import {module}; "
             "print(' '.join(sys.modules))")
    done = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True,
                          check=True)
    return {name for name in done.stdout.split() if name in IO_LIBRARIES
            or name.split(".")[0] in IO_LIBRARIES}


@pytest.mark.parametrize("module", CORE)
def test_the_core_module_imports_no_io_library(module: str) -> None:
    assert loaded_by(f"node_agent.{module}") == set()
