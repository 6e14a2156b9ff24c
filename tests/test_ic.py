"""The IC controller against real OVN: two AZs, an IC database, ``ovn-ic`` for each.

Everything is real (ovsdb-servers, ovn-northd, ovn-controller on gateway chassis in
network namespaces, ``ovn-ic``); the controller is driven with parsed ConfigMaps, as its
loop drives it. The tests of one module share the world and run in order: each brings
the AZs to the configuration it needs and waits (bounded) for OVN to converge.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podnet_ic.controller import Outcome
from podnet_ic.daemon import IcDaemon
from podnet_ic.desired import IcSubnet
from podnet_sync.nb_model import StaticRoute
from tests.ic_fixtures import JOIN, World, prefix, rows, world
from tests.ovn_fixtures import netns_node, running_node, token

pytestmark = pytest.mark.slow

AZ1_POD = "10.16.0.0/16"
AZ2_POD = "10.17.0.0/16"
AZ2_PRIVATE = "10.27.0.0/16"
"""disableInterConnection: never advertised."""
AZ2_NODE = "172.31.0.12"
OVERLAP = "10.16.128.0/17"
"""Inside AZ1's pod subnet: refused by AZ1 when AZ2 advertises it."""


@pytest.fixture(scope="module")
def ic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    subnets = {
        "az1": [IcSubnet("ovn-default", (AZ1_POD,)), IcSubnet("join", (JOIN,))],
        "az2": [IcSubnet("ovn-default", (AZ2_POD,)), IcSubnet("join", (JOIN,)),
                IcSubnet("private", (AZ2_PRIVATE,), disable_interconnection=True)],
    }
    addresses = {"az1": ("172.31.0.11",), "az2": (AZ2_NODE,)}
    with world(tmp_path_factory.mktemp("ic"), subnets, addresses) as made:
        # AZ2 routes its node's address (as a host route would be): blacklisted by IC.
        made.zones["az2"].extra_routes["node"] = StaticRoute(
            "ovn-cluster", "node", f"{AZ2_NODE}/32", "100.64.0.2")
        made.zones["az2"].sync()
        yield made


def connected(ic: World) -> dict[str, Outcome]:
    ic.enable()
    return ic.converge(lambda: AZ2_POD in ic.zones["az1"].learned()
                       and AZ1_POD in ic.zones["az2"].learned(), "routes learned both ways")


def ts_ip(ic: World, zone: str) -> str:
    (port,) = ic.zones[zone].nb("Logical_Router_Port", f"name={zone}-ts")
    return str(_as_list(port["networks"])[0]).split("/")[0]


def test_the_ic_southbound_lists_both_zones_with_a_gateway_each_and_their_ts_ports(
    ic: World,
) -> None:
    connected(ic)
    zones = {row["_uuid"]: row["name"] for row in _ic_sb(ic, "Availability_Zone")}
    assert sorted(zones.values()) == ["az1", "az2"]
    gateways = {zones[row["availability_zone"]]: row for row in _ic_sb(ic, "Gateway")}
    encaps = {row["_uuid"]: row["ip"] for row in _ic_sb(ic, "Encap")}
    for name, zone in ic.zones.items():
        assert gateways[name]["name"] == zone.gateway.system_id
        assert [encaps[e] for e in _as_list(gateways[name]["encaps"])] == [zone.gateway.encap_ip]
    bindings = {row["logical_port"]: row for row in _ic_sb(ic, "Port_Binding")}
    assert set(bindings) == {"ts-az1", "ts-az2"}
    for name in ic.zones:
        assert bindings[f"ts-{name}"]["transit_switch"] == "ts"
        assert zones[bindings[f"ts-{name}"]["availability_zone"]] == name
        assert bindings[f"ts-{name}"]["gateway"] == ic.zones[name].gateway.system_id


def test_each_nb_holds_the_transit_switch_its_router_port_and_the_peers_remote_port(
    ic: World,
) -> None:
    connected(ic)
    for name, peer in (("az1", "az2"), ("az2", "az1")):
        zone = ic.zones[name]
        (ts,) = zone.nb("Logical_Switch", "name=ts")
        assert ts["other_config"].get("interconn-ts") == "ts"
        ports = {row["_uuid"]: row for row in zone.nb("Logical_Switch_Port")}
        on_ts = {ports[u]["name"]: ports[u] for u in _as_list(ts["ports"])}
        assert on_ts[f"ts-{name}"]["type"] == "router"
        assert on_ts[f"ts-{name}"]["options"]["router-port"] == f"{name}-ts"
        assert on_ts[f"ts-{name}"]["external_ids"]["podnet.io/owner"] == "podnet-ic"
        (peer_lrp,) = ic.zones[peer].nb("Logical_Router_Port", f"name={peer}-ts")
        assert on_ts[f"ts-{peer}"]["type"] == "remote"
        peer_address = f"{peer_lrp['mac']} {_as_list(peer_lrp['networks'])[0]}"
        assert _as_list(on_ts[f"ts-{peer}"]["addresses"]) == [peer_address]
        (lrp,) = zone.nb("Logical_Router_Port", f"name={name}-ts")
        assert lrp["external_ids"]["podnet.io/owner"] == "podnet-ic"
        (gateway_chassis,) = zone.nb("Gateway_Chassis")
        assert gateway_chassis["chassis_name"] == zone.gateway.system_id
        assert _as_list(lrp["gateway_chassis"]) == [gateway_chassis["_uuid"]]
        (nb_global,) = zone.nb("NB_Global")
        assert nb_global["name"] == name
    assert ts_ip(ic, "az1") != ts_ip(ic, "az2")


def test_each_sb_shows_the_peer_gateway_as_remote_and_its_own_as_interconnect(
    ic: World,
) -> None:
    connected(ic)
    for name, peer in (("az1", "az2"), ("az2", "az1")):
        chassis = {row["name"]: row for row in ic.zones[name].sb("Chassis")}
        own, remote = ic.zones[name].gateway.system_id, ic.zones[peer].gateway.system_id
        assert chassis[own]["other_config"].get("is-interconn") == "true"
        assert chassis[remote]["other_config"].get("is-remote") == "true"


def test_the_peers_pod_cidrs_are_learned_and_join_node_and_blacklisted_cidrs_never_are(
    ic: World,
) -> None:
    connected(ic)
    az1, az2 = ic.zones["az1"], ic.zones["az2"]
    assert az1.learned() == {AZ2_POD: ts_ip(ic, "az2")}
    assert az2.learned() == {AZ1_POD: ts_ip(ic, "az1")}
    advertised = {prefix(str(row["ip_prefix"])) for row in _ic_sb(ic, "Route")}
    assert JOIN not in advertised and AZ2_PRIVATE not in advertised
    assert f"{AZ2_NODE}/32" not in advertised
    options = az2.nb("NB_Global")[0]["options"]
    assert options["ic-route-adv"] == options["ic-route-learn"] == "true"
    assert set(options["ic-route-blacklist"].split(",")) == {JOIN, AZ2_PRIVATE, f"{AZ2_NODE}/32"}
    # Cross-cluster traffic is allowed above the gateway reroutes (29000).
    ic.converge(lambda: _policies(ic, "az1") == {f"ip4.dst == {AZ2_POD}": 30000},
                "the learned route's policy")


def test_auto_route_false_removes_learned_routes_and_a_manual_route_survives(
    ic: World,
) -> None:
    connected(ic)
    peer_ip = ts_ip(ic, "az2")
    az1 = ic.zones["az1"]
    ic.enable(auto_route=False)
    ic.converge(lambda: not az1.learned() and not ic.zones["az2"].learned(),
                "learned routes removed")
    options = az1.nb("NB_Global")[0]["options"]
    assert options["ic-route-adv"] == options["ic-route-learn"] == "false"
    az1.central.nbctl("lr-route-add", "ovn-cluster", AZ2_POD, peer_ip)
    for _ in range(3):
        ic.reconcile()
    az1.sync()  # the sync worker's full resync leaves it too
    assert az1.routes()[AZ2_POD]["nexthop"] == peer_ip
    assert _policies(ic, "az1") == {f"ip4.dst == {AZ2_POD}": 30000}
    az1.central.nbctl("lr-route-del", "ovn-cluster", AZ2_POD)
    ic.enable()
    connected(ic)


def test_the_sync_workers_full_resync_leaves_every_ic_row_in_place(ic: World) -> None:
    connected(ic)
    az1 = ic.zones["az1"]
    before = (az1.nb("Logical_Router_Port", "name=az1-ts"), az1.nb("Gateway_Chassis"),
              az1.learned(), _policies(ic, "az1"))
    az1.sync()
    after = (az1.nb("Logical_Router_Port", "name=az1-ts"), az1.nb("Gateway_Chassis"),
             az1.learned(), _policies(ic, "az1"))
    assert after == before
    assert az1.nb("Logical_Switch_Port", "name=ts-az1")


def test_a_remote_cidr_overlapping_a_local_subnet_is_refused_and_reported(
    ic: World,
) -> None:
    connected(ic)
    az1, az2 = ic.zones["az1"], ic.zones["az2"]
    az2.extra_routes["overlap"] = StaticRoute("ovn-cluster", "overlap", OVERLAP, "100.64.0.3")
    az2.sync()
    try:
        ic.converge(lambda: OVERLAP in {prefix(str(r["ip_prefix"])) for r in _ic_sb(ic, "Route")},
                    "the overlapping prefix advertised")
        outcomes = ic.converge(lambda: bool(ic.reconcile()["az1"].refusals), "a refusal")
        (refusal,) = outcomes["az1"].refusals
        assert (refusal.az, refusal.prefix, refusal.subnet) == ("az2", OVERLAP, "ovn-default")
        assert "overlaps subnet ovn-default" in refusal.message
        for _ in range(5):
            ic.reconcile()
            time.sleep(0.2)
        assert OVERLAP not in az1.learned()
        assert AZ2_POD in az1.learned()
        assert OVERLAP in az1.nb("NB_Global")[0]["options"]["ic-route-blacklist"].split(",")
    finally:
        del az2.extra_routes["overlap"]
        az2.sync()
    ic.converge(lambda: not ic.reconcile()["az1"].refusals
                and OVERLAP not in az1.nb("NB_Global")[0]["options"]["ic-route-blacklist"],
                "the refusal lifted")


def test_a_local_subnet_overlapping_a_learned_route_makes_it_refused_and_removed(
    ic: World,
) -> None:
    connected(ic)
    az2 = ic.zones["az2"]
    az2.subnets.append(IcSubnet("overlap", (OVERLAP,)))
    az2.sync()
    try:
        outcomes = ic.converge(lambda: AZ1_POD not in az2.learned(), "the route removed")
        refusals = {(r.az, r.prefix, r.subnet) for r in outcomes["az2"].refusals}
        assert refusals == {("az1", AZ1_POD, "overlap")}
    finally:
        az2.subnets.pop()
        az2.sync()
    connected(ic)


def test_a_change_of_gw_nodes_moves_the_gateway_chassis_and_waits_for_a_missing_node(
    ic: World, tmp_path: Path,
) -> None:
    connected(ic)
    az1 = ic.zones["az1"]
    second = netns_node(tmp_path / "second-gw", az1.central, f"az1-gw2-{token()[:4]}")
    ic.configs["az1"] = ic.config("az1", **{"gw-nodes": f"{az1.gateway.name},{second.name}"})
    outcome = ic.reconcile()["az1"]
    assert outcome.problems == [f"gw-node {second.name}: no chassis registered yet"]
    assert [(g["chassis_name"], g["priority"]) for g in az1.nb("Gateway_Chassis")] == [
        (az1.gateway.system_id, 2)]
    with running_node(second):
        second.vsctl("set", "Open_vSwitch", ".", "external_ids:ovn-is-interconn=true")
        ic.converge(lambda: sorted((g["chassis_name"], g["priority"])
                                   for g in az1.nb("Gateway_Chassis"))
                    == sorted([(az1.gateway.system_id, 2), (second.system_id, 1)]),
                    "both gateway chassis")
        zones = {row["_uuid"]: row["name"] for row in _ic_sb(ic, "Availability_Zone")}
        ic.converge(lambda: sorted(str(g["name"]) for g in _ic_sb(ic, "Gateway")
                                   if zones.get(str(g["availability_zone"])) == "az1")
                    == sorted([az1.gateway.system_id, second.system_id]),
                    "both gateways in the IC SB")
        ic.enable()
        ic.converge(lambda: [g["chassis_name"] for g in az1.nb("Gateway_Chassis")]
                    == [az1.gateway.system_id], "back to one gateway chassis")
    connected(ic)


def test_killing_ovn_ic_gets_it_restarted_by_the_next_reconcile(ic: World) -> None:
    connected(ic)
    zone = ic.zones["az1"]
    daemon: IcDaemon = zone.controller.daemon(ic.configs["az1"])
    pid = daemon.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while daemon.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    outcome = ic.reconcile()["az1"]
    assert outcome.started is not None and outcome.started != pid
    assert daemon.pid() == outcome.started
    zone.subnets.append(IcSubnet("later", ("10.18.0.0/16",)))
    zone.sync()
    try:
        ic.converge(lambda: "10.18.0.0/16" in ic.zones["az2"].learned(),
                    "a route advertised by the restarted ovn-ic")
    finally:
        zone.subnets.pop()
        zone.sync()


def test_a_changed_az_name_tears_down_and_sets_up_again(ic: World) -> None:
    connected(ic)
    zone = ic.zones["az1"]
    ic.configs["az1"] = ic.config("az1", **{"az-name": "az9"})
    ic.converge(lambda: zone.nb("Logical_Router_Port", "name=az9-ts") != []
                and AZ2_POD in zone.learned(), "AZ az9 set up")
    assert zone.nb("Logical_Router_Port", "name=az1-ts") == []
    names = {row["name"] for row in _ic_sb(ic, "Availability_Zone")}
    assert names == {"az9", "az2"}
    ic.enable()
    connected(ic)
    assert {row["name"] for row in _ic_sb(ic, "Availability_Zone")} == {"az1", "az2"}


def test_deleting_the_config_removes_everything_ic(ic: World) -> None:
    connected(ic)
    az1 = ic.zones["az1"]
    manual = "192.168.77.0/24"
    az1.central.nbctl("lr-route-add", "ovn-cluster", manual, "100.64.0.9")
    ic.configs.pop("az1")
    outcome = ic.reconcile()["az1"]
    assert outcome.torn_down == "az1"
    assert az1.controller.daemon(ic.config("az1")).pid() is None
    assert az1.nb("Logical_Router_Port", "name=az1-ts") == []
    assert az1.nb("Logical_Switch", "name=ts") == []
    assert az1.nb("Gateway_Chassis") == []
    assert az1.learned() == {}
    assert _policies(ic, "az1") == {}
    (nb_global,) = az1.nb("NB_Global")
    assert nb_global["name"] == ""
    assert not {k for k in nb_global["options"] if k.startswith("ic-route")}
    assert az1.routes()[manual]["nexthop"] == "100.64.0.9"
    assert az1.nb("Logical_Router_Port", "name=ovn-cluster-ovn-default")  # the sync's rows
    assert {row["name"] for row in _ic_sb(ic, "Availability_Zone")} == {"az2"}
    ic.converge(lambda: not ic.zones["az2"].learned(), "AZ2 forgets AZ1's routes")
    az1.central.nbctl("lr-route-del", "ovn-cluster", manual)
    ic.enable()
    connected(ic)


# ------------------------------------------------------------------ helpers


def _ic_sb(ic: World, table: str) -> list[dict[str, Any]]:
    return rows(ic.ic.sbctl, table)


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def _policies(ic: World, zone: str) -> dict[str, int]:
    return {str(row["match"]): int(row["priority"])
            for row in ic.zones[zone].nb("Logical_Router_Policy")
            if row["external_ids"].get("podnet.io/owner") == "podnet-ic"}
