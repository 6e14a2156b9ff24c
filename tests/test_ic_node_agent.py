"""The node agent's part of OVN-IC: ``ovn-is-interconn`` follows the node's IC gateway label.

The decision is pure (``bootstrap.interconnect_change``); the write goes through the
agent's own OVS DB client to a real ovsdb-server with the Open_vSwitch schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest

from ipam.annotations import IC_GATEWAY_LABEL, INTERCONN_KEY
from node_agent import bootstrap, ovs
from podnet.daemons import RedisServer
from podnet.ovn import OVS_SCHEMA, OvsDaemon, create_db, run
from tests.agent_harness import lab
from tests.waiting import eventually


def test_a_labelled_gateway_node_asks_for_interconnect_and_an_unlabelled_one_drops_it() -> None:
    labelled = {IC_GATEWAY_LABEL: "true"}
    assert bootstrap.interconnect_change(labelled, {}) == ({INTERCONN_KEY: "true"}, ())
    assert bootstrap.interconnect_change(labelled, {INTERCONN_KEY: "true"}) == ({}, ())
    assert bootstrap.interconnect_change({}, {INTERCONN_KEY: "true"}) == ({}, (INTERCONN_KEY,))
    assert bootstrap.interconnect_change({IC_GATEWAY_LABEL: "false"}, {}) == ({}, ())


@pytest.fixture
def ovsdb(tmp_path: Path) -> Iterator[str]:
    socket = tmp_path / "db.sock"
    create_db(tmp_path / "conf.db", OVS_SCHEMA)
    daemon = OvsDaemon("ovsdb-server", "ovsdb-server", tmp_path,
                       args=[f"--remote=punix:{socket}", str(tmp_path / "conf.db")])
    daemon.start()
    try:
        run(["ovs-vsctl", f"--db=unix:{socket}", "--no-wait", "init"])
        yield f"unix:{socket}"
    finally:
        daemon.stop()


def _external_ids(remote: str) -> str:
    return run(["ovs-vsctl", f"--db={remote}", "get", "Open_vSwitch", ".", "external_ids"])


async def test_the_agents_ovs_client_sets_and_removes_the_interconnect_key_only(
    ovsdb: str,
) -> None:
    run(["ovs-vsctl", f"--db={ovsdb}", "--no-wait", "set", "Open_vSwitch", ".",
         "external_ids:system-id=node-1"])
    client = ovs.Ovs(ovsdb)
    await client.start()
    try:
        settings, remove = bootstrap.interconnect_change({IC_GATEWAY_LABEL: "true"},
                                                         await client.chassis_settings())
        await client.configure_chassis(settings, remove)
        assert 'ovn-is-interconn="true"' in _external_ids(ovsdb)
        settings, remove = bootstrap.interconnect_change({}, await client.chassis_settings())
        await client.configure_chassis(settings, remove)
        ids = _external_ids(ovsdb)
        assert "ovn-is-interconn" not in ids and "system-id=node-1" in ids
    finally:
        await client.stop()


@pytest.mark.slow
async def test_the_running_agent_follows_its_nodes_ic_gateway_label(
    tmp_path: Path, redis_server: RedisServer,
) -> None:
    async with lab(tmp_path, redis_server.url) as cluster:
        node = await cluster.add_node("node1")
        await cluster.node_ready(node)

        async def interconnect() -> str:
            out = await asyncio.to_thread(node.ovs.vsctl, "get", "Open_vSwitch", ".",
                                          "external_ids")
            return "interconn" if INTERCONN_KEY in out else "plain"

        async def chassis_interconnect() -> bool:
            out = await asyncio.to_thread(
                cluster.central.sbctl, "--bare", "--columns=other_config", "find", "Chassis",
                f"name={node.ovs.system_id}")
            return "is-interconn=true" in out

        cluster.api.patch("Node", "node1", {"metadata": {"labels": {IC_GATEWAY_LABEL: "true"}}})
        await eventually(lambda: _is(interconnect(), "interconn"), 20, "ovn-is-interconn set")
        await eventually(chassis_interconnect, 20, "the chassis an interconnect gateway")
        cluster.api.patch("Node", "node1", {"metadata": {"labels": {IC_GATEWAY_LABEL: None}}})
        await eventually(lambda: _is(interconnect(), "plain"), 20, "ovn-is-interconn removed")


async def _is(value: Awaitable[str], wanted: str) -> bool:
    return await value == wanted
