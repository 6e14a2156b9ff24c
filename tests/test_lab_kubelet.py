"""The lab's kubelet side and bookkeeping: CNI calls as a runtime makes them, the ledger
``podnet down`` removes from, and the names a lab gives the kernel objects it makes."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.lab.kubelet import (
    AttachError,
    CniKubelet,
    NodeRuntime,
    _answer,
    cni_environment,
    container_id,
    result_ips,
    sandbox_name,
)
from podnet.lab.ledger import Ledger
from podnet.lab.settings import MAX_IFNAME, LabSettings
from podnet.ovn import netns_add, netns_delete, netns_exists

POD = {"metadata": {"name": "web-0", "namespace": "shop",
                    "uid": "7f1c2d3e-0000-4000-8000-000000000001"}}


def test_the_cni_environment_is_what_kubelet_sets() -> None:
    env = cni_environment("ADD", POD, "/run/netns/x", ["/opt/cni/bin"])
    assert env == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": container_id(POD),
        "CNI_NETNS": "/run/netns/x",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;"
                    f"K8S_POD_INFRA_CONTAINER_ID={container_id(POD)};"
                    "K8S_POD_UID=7f1c2d3e-0000-4000-8000-000000000001",
        "CNI_PATH": "/opt/cni/bin",
    }
    assert len(container_id(POD)) == 64
    assert sandbox_name("podnet", POD) == sandbox_name("podnet", dict(POD))


def test_a_cni_result_gives_the_addresses_and_an_error_gives_its_message() -> None:
    result = {"cniVersion": "1.0.0", "ips": [{"address": "10.66.0.20/16"},
                                             {"address": "fd00::5/64"}]}
    assert result_ips(result) == ("10.66.0.20", "fd00::5")
    error = json.dumps({"cniVersion": "1.0.0", "code": 11, "msg": "try again later",
                        "details": "the pod is not routed yet"}).encode()
    with pytest.raises(AttachError, match="podnet-cni ADD: try again later "
                                          r"\(the pod is not routed yet\)"):
        _answer("ADD", "podnet-cni", 1, error, b"")
    assert _answer("DEL", "podnet-cni", 0, b"", b"") is None


@pytest.fixture
def node_netns() -> Iterator[str]:
    name = f"pktest-{uuid.uuid4().hex[:8]}"
    netns_add(name)
    try:
        yield name
    finally:
        netns_delete(name)


async def test_without_an_agent_attach_fails_with_the_plugins_reason_and_leaves_nothing(
    tmp_path: Path, node_netns: str,
) -> None:
    plugin = shutil.which("podnet-cni", path=str(Path(sys.executable).parent))
    assert plugin is not None
    socket = tmp_path / "no-agent.sock"
    runtime = NodeRuntime("node-1", node_netns, {"name": "podnet", "type": "podnet-cni",
                                                  "socket": str(socket)}, plugin)
    ledger = Ledger(tmp_path / "created.ledger")
    prefix = f"pk{uuid.uuid4().hex[:6]}"
    kubelet = CniKubelet({"node-1": runtime}, prefix, ledger, timeout_s=30)
    node = {"metadata": {"name": "node-1"}}
    with pytest.raises(AttachError, match="the podnet agent is not running on this node"):
        await kubelet.attach(POD, node)
    sandbox = sandbox_name(prefix, POD)
    assert ledger.entries() == [("netns", sandbox)]
    # The sandbox is on record for a kubelet that restarts after the pod was deleted.
    ((left, on_node),) = kubelet.leftovers(set())
    assert (left["metadata"]["uid"], on_node) == (POD["metadata"]["uid"], "node-1")
    assert kubelet.leftovers({POD["metadata"]["uid"]}) == []
    try:
        await kubelet.detach(POD, "node-1")
    except AttachError:
        pass  # DEL needs the agent too; the sandbox goes regardless
    finally:
        netns_delete(sandbox)
    assert not netns_exists(sandbox)


def test_the_ledger_lists_what_was_made_and_not_removed_newest_first(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "created.ledger")
    ledger.record("bridge", "podnet-underlay")
    ledger.record("netns", "podnet-node-1")
    ledger.record("link", "podnet-ul1")
    ledger.record("netns", "podnet-p-1")
    ledger.forget("netns", "podnet-p-1")
    ledger.record("netns", "podnet-node-1")  # a second up records again
    assert ledger.entries() == [("netns", "podnet-node-1"), ("link", "podnet-ul1"),
                                ("bridge", "podnet-underlay")]
    with pytest.raises(ValueError, match="the ledger records"):
        ledger.record("process", "42")


def test_lab_names_fit_the_kernels_limit_for_interface_names() -> None:
    for prefix in ("podnet", "pl1a2b3c", "a-very-long-prefix"):
        settings = LabSettings(prefix=prefix, nodes=12)
        assert len(settings.underlay_bridge) <= MAX_IFNAME
        assert len(settings.external_link) <= MAX_IFNAME
        assert all(len(settings.underlay_link(i)) <= MAX_IFNAME for i in range(1, 13))
    assert LabSettings().underlay_bridge == "podnet-underlay"
    assert str(LabSettings().node_address(2)) == "172.30.0.12/24"
    assert str(LabSettings().external_underlay_address()) == "172.30.0.254/24"


def test_recorded_settings_are_what_up_wrote(tmp_path: Path) -> None:
    settings = LabSettings(state_dir=tmp_path, nodes=3, prefix="plx", manifests=(tmp_path,))
    settings.record()
    assert LabSettings.recorded(tmp_path) == settings
    assert LabSettings.recorded(tmp_path / "nothing") is None
