"""What ``podnet up`` waits for before it goes on: node agents ready for pods, and the
applied subnets ready for admission (registered, not fenced, synced to OVN). Pure parts
and the agents' command line; ``tests/test_lab.py`` runs them for real."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from podnet.daemons import BackgroundProcess, DaemonError
from podnet.lab.agents import agent_argv, runtime_of, wait_ready
from podnet.lab.nodes import LabNode
from podnet.lab.settings import LabSettings
from podnet.lab.up import reasons_not_ready, wanted_subnets


def test_an_agent_runs_beside_its_nodes_namespace_and_serves_cni_in_the_state_dir() -> None:
    settings = LabSettings(state_dir=Path("/var/lib/podnet"), redis_port=16379)
    node = LabNode("node-1", 1, settings)
    argv = agent_argv(settings, node)
    assert argv[:4] == [sys.executable, "-m", "podnet.cli", "agent"]
    options = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert options == {
        "--node-name": "node-1", "--netns": "podnet-node-1",
        "--kubeconfig": "/var/lib/podnet/kubeconfig/agent.yaml",
        "--ovs-db": "unix:/var/lib/podnet/nodes/node-1/db.sock",
        "--socket": "/var/lib/podnet/nodes/node-1/cni.sock",
        "--redis": "redis://127.0.0.1:16379/0",
        "--install-cni": "/var/lib/podnet/nodes/node-1/cni-bin",
        "--gateway-interval": "1.0",
    }
    runtime = runtime_of(node)
    assert runtime.netns == "podnet-node-1"
    assert runtime.network == {"name": "podnet", "type": "podnet-cni",
                               "socket": "/var/lib/podnet/nodes/node-1/cni.sock"}
    assert runtime.plugin == "/var/lib/podnet/nodes/node-1/cni-bin/podnet-cni"


def test_waiting_for_agents_names_the_one_that_exited(tmp_path: Path) -> None:
    gone = BackgroundProcess("agent-node-2", tmp_path)
    with pytest.raises(DaemonError, match=r"the node agent of node-2 exited; see .*/agent-"
                                          r"node-2\.log"):
        wait_ready([("node-2", gone)], lambda node: False)
    wait_ready([("node-1", gone)], lambda node: True)  # ready: its process is not asked


def test_pods_wait_for_the_applied_subnets_join_and_the_default() -> None:
    objects = [{"kind": "Subnet", "metadata": {"name": "shop"}, "spec": {}},
               {"kind": "IPPool", "metadata": {"name": "front"}},
               {"kind": "Namespace", "metadata": {"name": "shop"}}]
    assert wanted_subnets(objects) == ({"shop", "join", "ovn-default"}, {"front"})
    declared = [{"kind": "Subnet", "metadata": {"name": "main"}, "spec": {"default": True}}]
    assert wanted_subnets(declared) == ({"main", "join"}, set())


def test_a_subnet_is_ready_for_pods_once_registered_unfenced_and_in_ovn() -> None:
    usage = {"shop": False, "edge": True, "join": False}
    reasons = reasons_not_ready({"shop", "edge", "join", "tools"}, {"front"}, usage, set(),
                                {"join"})
    assert reasons == ["subnet edge fenced", "subnet shop not synced yet",
                       "subnet tools not registered", "IPPool front not registered"]
    assert reasons_not_ready({"shop"}, {"front"}, {"shop": False}, {"front"}, {"shop"}) == []
