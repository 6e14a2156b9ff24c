"""The node agents of ``podnet up``: one ``podnet agent`` per simulated node.

Each agent is the real node daemon, started as a background process ``agent-<node>``
with the command line a DaemonSet would run, except for where it stands: the lab's
control plane (API server, Redis) listens on the host's loopback, which a node's network
namespace cannot reach, so the agent runs in the host namespace and is told the node's
namespace with ``--netns``. Every node-side operation (``br-int``, ``ovn0``, routes,
nftables, the pods' veths) then happens in the node's namespace, and the CNI socket is a
file both sides see. ``podnet-cni`` itself runs in the node's namespace, as a runtime
would run it there.

A node is ready for pods once its agent has labelled it ``podnet.io/agent-ready=true``
(the join port is installed, routes and SNAT are in place); ``up`` waits for that before
the kubelet side starts attaching, and the scheduler extender keeps pods off nodes
without it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ipam import annotations as keys
from podnet.daemons import BackgroundProcess, DaemonError
from podnet.lab.kubelet import NodeRuntime
from podnet.lab.nodes import LabNode
from podnet.lab.rest import Rest
from podnet.lab.settings import LabSettings

NETWORK_NAME = "podnet"
PLUGIN = "podnet-cni"
GATEWAY_INTERVAL_S = 1.0
"""How often an agent re-reads the subnets: a Subnet applied after ``up`` started gets
its routes and SNAT on every node within about this long."""
MAX_SOCKET_PATH = 107
"""``sun_path`` holds 108 bytes, the terminating zero included."""


def agent_process(settings: LabSettings, node: str) -> BackgroundProcess:
    return BackgroundProcess(f"agent-{node}", settings.state_dir)


def cni_socket(node: LabNode) -> Path:
    return node.directory / "cni.sock"


def plugin_dir(node: LabNode) -> Path:
    return node.directory / "cni-bin"


def agent_argv(settings: LabSettings, node: LabNode) -> list[str]:
    """``podnet agent`` for ``node``, as the lab runs it (see the module's docstring)."""
    return [
        sys.executable, "-m", "podnet.cli", "agent",
        "--node-name", node.name, "--netns", node.netns,
        "--kubeconfig", str(settings.kubeconfig("agent")),
        "--ovs-db", f"unix:{node.directory / 'db.sock'}",
        "--socket", str(cni_socket(node)),
        "--redis", settings.redis_url,
        "--install-cni", str(plugin_dir(node)),
        "--gateway-interval", str(GATEWAY_INTERVAL_S),
    ]


def runtime_of(node: LabNode) -> NodeRuntime:
    """How the lab's kubelet attaches pods on ``node``: the plugin and its configuration."""
    return NodeRuntime(
        node.name, node.netns,
        {"name": NETWORK_NAME, "type": PLUGIN, "socket": str(cni_socket(node))},
        str(plugin_dir(node) / PLUGIN), (str(plugin_dir(node)),),
    )


def check_socket_path(node: LabNode) -> None:
    if len(str(cni_socket(node))) > MAX_SOCKET_PATH:
        raise DaemonError(f"the CNI socket path {cni_socket(node)} is longer than a unix "
                          "socket allows; use a shorter --state-dir")


def agent_ready(rest: Rest, node: str) -> bool:
    """Whether the node carries its agent's ready label."""
    found = rest.get("Node", node)
    labels = ((found or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(keys.AGENT_READY_LABEL) == "true"


def wait_ready(processes: Sequence[tuple[str, BackgroundProcess]],
               ready: Callable[[str], bool], timeout_s: float = 60.0,
               poll_s: float = 0.1) -> None:
    """Wait until every node is ready; fail naming the agent that exited or is late."""
    deadline = time.monotonic() + timeout_s
    waiting = dict(processes)
    while waiting:
        for node, process in list(waiting.items()):
            if ready(node):
                del waiting[node]
            elif process.pid() is None:
                raise DaemonError(f"the node agent of {node} exited; see {process.logfile}")
        if waiting and time.monotonic() >= deadline:
            late = ", ".join(f"{node} (see {p.logfile})" for node, p in waiting.items())
            raise DaemonError(f"node agents not ready after {timeout_s:.0f}s: {late}")
        if waiting:
            time.sleep(poll_s)
