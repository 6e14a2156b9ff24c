"""The OVN/OVS daemons podnet runs in directories of its own: start, translate, carry
traffic, survive a northbound restart, and leave nothing behind when stopped.

Everything here is the real thing (Debian's OVN 23.03 and OVS 3.1, userspace datapath);
pods are network namespaces plugged into ``br-int``.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.ovn import (
    OvnCentral,
    OvnError,
    OvsNode,
    Underlay,
    link_exists,
    log_tail,
    netns_exists,
    run,
    wait_for,
)
from podnet_plumbing.ovsdb import close_api, nb_api
from podnet_plumbing.processes import running
from tests.ovn_fixtures import (
    NetnsPod,
    PodFactory,
    current_namespace_lock,
    netns_node,
    netns_pod,
    running_node,
    token,
    unique_encap_ip,
)

ECHO_SERVER = textwrap.dedent("""
    import socket, sys
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", int(sys.argv[1])))
    server.listen()
    print("ready", flush=True)
    conn, _ = server.accept()
    data = b""
    while chunk := conn.recv(1 << 16):
        data += chunk
    conn.sendall(data[::-1])
    conn.close()
""")

ECHO_CLIENT = textwrap.dedent("""
    import socket, sys
    conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    conn.sendall(b"podnet" * 1000)
    conn.shutdown(socket.SHUT_WR)
    reply = b""
    while chunk := conn.recv(1 << 16):
        reply += chunk
    print(len(reply), reply[:6].decode())
""")


def switch_with_ports(central: OvnCentral, switch: str, *pods: tuple[str, str, str]) -> None:
    """Add (port, mac, ip) ports, with port security, to ``switch``."""
    for port, mac, ip in pods:
        central.nbctl(
            "lsp-add", switch, port, "--", "lsp-set-addresses", port, f"{mac} {ip}",
            "--", "lsp-set-port-security", port, f"{mac} {ip}",
        )


def tcp_roundtrip(server: NetnsPod, client: NetnsPod, port: int = 8471) -> str:
    """Send 6000 bytes from ``client`` to an echo server on ``server``; the reply line."""
    process = server.popen("python3", "-c", ECHO_SERVER, str(port))
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        return client.exec("python3", "-c", ECHO_CLIENT, server.ip, str(port),
                           timeout_s=15).strip()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.communicate(timeout=5)


def assert_pods_talk(central: OvnCentral, node_a: OvsNode, node_b: OvsNode) -> None:
    """Two pods on one switch (on ``node_a`` and ``node_b``): ping and TCP work."""
    switch, ident = f"ls-{token()}", token()
    a, b = f"a-{ident}.default", f"b-{ident}.default"
    central.nbctl("ls-add", switch)
    try:
        switch_with_ports(central, switch, (a, "0a:58:0a:fb:00:0b", "10.251.0.11"),
                          (b, "0a:58:0a:fb:00:0c", "10.251.0.12"))
        with netns_pod(node_a, a, "10.251.0.11/24", "0a:58:0a:fb:00:0b", "10.251.0.1") as pa, \
                netns_pod(node_b, b, "10.251.0.12/24", "0a:58:0a:fb:00:0c", "10.251.0.1") as pb:
            for pod in (pa, pb):
                pod.node.wait_port_installed(pod.host_dev)
                external_ids = pod.node.vsctl("get", "Interface", pod.host_dev, "external_ids")
                assert 'ovn-installed="true"' in external_ids
            pa.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", pb.ip)
            assert tcp_roundtrip(pb, pa) == "6000 tendop"
    finally:
        central.nbctl("--if-exists", "ls-del", switch)


# --- central ----------------------------------------------------------------------------


def test_central_serves_both_databases_and_northd_translates(
    ovn_central: OvnCentral, logical_switch: str
) -> None:
    assert set(ovn_central.pids()) == {"ovnnb_db", "ovnsb_db", "ovn-northd"}
    assert logical_switch in ovn_central.nbctl("--bare", "--columns=name", "list",
                                               "Logical_Switch")

    def bound() -> bool:
        found = ovn_central.sbctl("--bare", "--columns=_uuid", "find", "Datapath_Binding",
                                  f"external_ids:name={logical_switch}")
        return bool(found.strip())

    wait_for(bound, 10, "Datapath_Binding", lambda: "")
    assert "Status: active" in ovn_central.appctl("northd", "status")


def test_central_listens_on_tcp(ovn_central: OvnCentral) -> None:
    assert ovn_central.nb_tcp.startswith("tcp:127.0.0.1:")
    assert "OVN_Northbound" in _run_client("ovsdb-client", "list-dbs", ovn_central.nb_tcp)
    assert "OVN_Southbound" in _run_client("ovsdb-client", "list-dbs", ovn_central.sb_tcp)


def _run_client(*argv: str) -> str:
    return run(["timeout", "5", *argv])


def test_a_broken_database_fails_start_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "ovnnb_db.db").write_text("not an ovsdb file\n")
    central = OvnCentral(tmp_path)
    try:
        with pytest.raises(OvnError, match="ovnnb_db failed to start") as failure:
            central.start()
        assert "ovnnb_db.db" in str(failure.value)
    finally:
        central.stop()
    assert central.pids() == {}


def test_restart_nb_keeps_data_and_clients_reconnect(tmp_path: Path) -> None:
    with OvnCentral(tmp_path) as central:
        central.nbctl("ls-add", "before")
        api = nb_api(central.nb_tcp)
        try:
            old_pid = central.nb.pid()
            central.restart_nb()
            assert central.nb.pid() not in (None, old_pid)
            assert "before" in central.nbctl("--bare", "--columns=name", "list",
                                             "Logical_Switch")
            api.ls_add("after").execute(check_error=True)
            wait_for(lambda: "name=after" in central.sbctl(
                "--bare", "--columns=external_ids", "list", "Datapath_Binding"),
                10, "northd after the restart", lambda: log_tail(central.northd.logfile))
        finally:
            close_api(api)


def test_a_fresh_view_of_the_directory_finds_and_stops_the_daemons(tmp_path: Path) -> None:
    started = OvnCentral(tmp_path).start()
    started.nbctl("ls-add", "kept")
    view = OvnCentral(tmp_path, nb_port=None, sb_port=None)
    assert view.pids() == started.pids()
    assert len(view.pids()) == 3
    view.start()
    assert view.pids() == started.pids()
    view.stop()
    assert started.pids() == {}
    with OvnCentral(tmp_path) as again:
        assert "kept" in again.nbctl("ls-list")


def test_nb_api_writes_a_switch_and_port_in_one_transaction(ovn_central: OvnCentral) -> None:
    switch = f"ls-{token()}"
    api = nb_api(ovn_central.nb_remote)
    try:
        with api.transaction(check_error=True) as txn:
            txn.add(api.ls_add(switch, external_ids={"podnet": "test"}))
            txn.add(api.lsp_add(switch, f"{switch}-port"))
        assert switch in ovn_central.nbctl("--bare", "--columns=name", "list",
                                           "Logical_Switch")
        assert ovn_central.nbctl("lsp-list", switch).split()[-1] == f"({switch}-port)"
        assert api.ls_get(switch).execute(check_error=True).external_ids == {"podnet": "test"}
    finally:
        close_api(api)
        ovn_central.nbctl("--if-exists", "ls-del", switch)


# --- nodes ------------------------------------------------------------------------------


def test_node_registers_its_chassis(ovn_central: OvnCentral, ovs_node: OvsNode) -> None:
    assert set(ovs_node.pids()) == {"ovsdb-server", "ovs-vswitchd", "ovn-controller"}
    assert ovs_node.chassis_registered()
    encap = ovn_central.sbctl("--bare", "--columns=ip", "find", "Encap",
                              f"chassis_name={ovs_node.system_id}")
    assert encap.strip() == ovs_node.encap_ip
    assert ovs_node.vsctl("get", "Bridge", "br-int", "datapath_type").strip() == "netdev"
    assert "connected" in ovs_node.appctl("ovn-controller", "connection-status")


@pytest.mark.slow
def test_pods_on_one_node_ping_and_talk_tcp(ovn_central: OvnCentral, ovs_node: OvsNode) -> None:
    assert_pods_talk(ovn_central, ovs_node, ovs_node)


def test_make_pod_plugs_a_pod_into_br_int(ovs_node: OvsNode, make_pod: PodFactory) -> None:
    pod = make_pod(ovs_node, f"p-{token()}.default", "10.251.2.2/24", "0a:58:0a:fb:02:02",
                   "10.251.2.1")
    iface_id = ovs_node.vsctl("get", "Interface", pod.host_dev, "external_ids:iface-id")
    assert iface_id.strip().strip('"') == pod.port
    assert "default via 10.251.2.1" in pod.exec("ip", "route")
    assert "0a:58:0a:fb:02:02" in pod.exec("ip", "link", "show", "eth0")
    offload = pod.exec("ethtool", "-k", "eth0")
    assert "tx-checksumming: off" in offload


@pytest.mark.slow
def test_node_in_the_current_namespace(ovn_central: OvnCentral, tmp_path: Path) -> None:
    node = OvsNode(tmp_path, "here", f"here-{token()}", ovn_central.sb_remote,
                   encap_ip=unique_encap_ip())
    with current_namespace_lock():
        with running_node(node):
            assert_pods_talk(ovn_central, node, node)
        assert not link_exists("ovs-netdev") and not link_exists("br-int")


@pytest.mark.slow
def test_pods_on_two_nodes_talk_over_geneve(ovn_central: OvnCentral, tmp_path: Path) -> None:
    underlay = Underlay(f"pnul{token()[:6]}").create()
    try:
        with running_node(netns_node(tmp_path / "n1", ovn_central, "n1")) as n1, \
                running_node(netns_node(tmp_path / "n2", ovn_central, "n2")) as n2:
            for node, ip in ((n1, "172.31.250.1"), (n2, "172.31.250.2")):
                node.vsctl("set", "Open_vSwitch", ".", f"external_ids:ovn-encap-ip={ip}")
                underlay.attach(node, f"{ip}/24")
            assert_pods_talk(ovn_central, n1, n2)
    finally:
        underlay.delete()
    assert not link_exists(underlay.bridge)


# --- cleanup ----------------------------------------------------------------------------


@pytest.fixture
def own_central(tmp_path: Path) -> Iterator[OvnCentral]:
    with OvnCentral(tmp_path / "central") as central:
        yield central


def test_stop_and_cleanup_leave_nothing(own_central: OvnCentral, tmp_path: Path) -> None:
    node = netns_node(tmp_path / "node", own_central)
    node.start()
    try:
        assert node.netns is not None and netns_exists(node.netns)
        with netns_pod(node, "p.default", "10.251.1.2/24", "0a:58:0a:fb:01:02") as pod:
            assert node.vsctl("list-ports", "br-int").split() == [pod.host_dev]
            assert netns_exists(pod.netns) and link_exists(pod.host_dev, node.netns)
        assert not netns_exists(pod.netns)
        assert not link_exists(pod.host_dev, node.netns)
        assert node.vsctl("list-ports", "br-int").split() == []
    finally:
        pids = {**node.pids(), **own_central.pids()}
        node.stop()
        own_central.stop()
    assert len(pids) == 6
    assert [name for name, pid in pids.items() if running(pid)] == []
    assert not netns_exists(node.netns)
    assert node.pids() == {} and own_central.pids() == {}
