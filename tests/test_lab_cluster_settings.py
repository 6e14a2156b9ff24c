"""How ``podnet up --clusters N`` derives each cluster's settings from the first's: the
first is left exactly as a plain ``up`` has it, and no name, port, directory or pod
address is shared between clusters."""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

import pytest

from ipam.subnet import DEFAULT_CIDR, JOIN_CIDR
from podnet.lab import LabSettings
from podnet.lab.checks import ACROSS, PING_ACROSS, Host, Outcome, judge, plan_cross_checks
from podnet.lab.interconnect import config_map, ic_databases
from podnet.lab.nodes import lab_nodes
from podnet.lab.settings import MAX_CLUSTERS, MAX_IFNAME, cluster_prefix
from podnet.lab.up import default_subnet_object

PORTS = ("redis_port", "ipam_listen", "apiserver_listen", "webhook_listen", "sync_listen")


def link_names(settings: LabSettings) -> list[str]:
    """Every interface name the lab makes for a cluster in the host's namespace."""
    return [settings.underlay_bridge, settings.external_link, settings.interconnect_link,
            settings.interconnect_bridge,
            *(settings.underlay_link(index) for index in range(1, settings.nodes + 1))]


def ports(settings: LabSettings) -> list[int]:
    found = []
    for name in PORTS:
        value = getattr(settings, name)
        found.append(value if isinstance(value, int) else int(str(value).rsplit(":", 1)[1]))
    found += [settings.redis_port + offset for offset in (1, 2, 10, 11, 12)]  # --ha
    return found


PREFIXES = ("podnet", "pl1a2b3c", "averyveryverylongprefix", "abcdefgc2", "p")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_cluster_has_its_own_names_within_the_kernel_limit(prefix: str) -> None:
    first = LabSettings(prefix=prefix, clusters=2, nodes=3)
    clusters = first.all_clusters()
    names = [link_names(each) for each in clusters]
    assert all(len(name) <= MAX_IFNAME for group in names for name in group)
    own = [set(group) - {first.interconnect_bridge} for group in names]
    for one, other in itertools.combinations(own, 2):
        assert not one & other
    netns = [{each.external_netns, *(node.netns for node in lab_nodes(each))}
             for each in clusters]
    assert not netns[0] & netns[1]
    assert clusters[1].prefix != clusters[0].prefix[:9]
    assert cluster_prefix(prefix, 1) == prefix


def test_the_first_cluster_is_the_lab_of_a_plain_up() -> None:
    plain = LabSettings(state_dir=Path("/tmp/lab"))
    first = LabSettings(state_dir=Path("/tmp/lab"), clusters=2).for_cluster(1)
    differing = {name for name in vars(plain) if getattr(plain, name) != getattr(first, name)}
    assert differing == {"clusters"}
    assert first.node_names() == ["node-1", "node-2"]
    assert first.default_cidr == DEFAULT_CIDR
    assert plain.all_clusters() == [plain]


def test_later_clusters_take_other_ports_dirs_nodes_underlays_and_default_subnets() -> None:
    first = LabSettings(state_dir=Path("/tmp/lab"), clusters=2)
    second = first.for_cluster(2)
    assert second.cluster == 2 and second.az_name == "az2" and first.az_name == "az1"
    assert second.state_dir == Path("/tmp/lab/cluster-2")
    assert not set(ports(first)) & set(ports(second))
    assert second.node_names() == ["c2-node-1", "c2-node-2"]
    assert not set(first.node_names()) & set(second.node_names())
    assert (second.underlay_cidr, second.default_cidr) == ("172.30.1.0/24", "10.18.0.0/16")
    assert second.outside_address != first.outside_address
    assert second.service_cidr == first.service_cidr  # ClusterIPs stay in their cluster
    assert first.interconnect_address() != second.interconnect_address()
    networks = [ipaddress.ip_network(cidr) for cidr in (
        first.underlay_cidr, second.underlay_cidr, first.default_cidr, second.default_cidr,
        first.service_cidr, JOIN_CIDR, first.interconnect_cidr)]
    for one, other in itertools.combinations(networks, 2):
        assert not one.overlaps(other), (one, other)
    assert second.manifests != first.manifests and all(p.is_dir() for p in second.manifests)


def test_the_peer_manifests_pin_no_address_of_the_first_clusters_subnets() -> None:
    second = LabSettings(clusters=2).for_cluster(2)
    text = "\n".join(path.read_text() for folder in second.manifests
                     for path in sorted(folder.glob("*.yaml")))
    assert "cidrBlock" not in text and "ip_address" not in text and "ip_pool" not in text


def test_cluster_numbers_are_bounded() -> None:
    with pytest.raises(ValueError, match="1 to"):
        LabSettings(clusters=MAX_CLUSTERS + 1)
    with pytest.raises(ValueError, match="1 to"):
        LabSettings(clusters=0)
    first = LabSettings(clusters=2)
    with pytest.raises(ValueError):
        first.for_cluster(3)
    with pytest.raises(ValueError, match="the first does"):
        first.for_cluster(2).for_cluster(2)


def test_a_second_cluster_records_and_reads_back_its_own_settings(tmp_path: Path) -> None:
    second = LabSettings(state_dir=tmp_path, clusters=2, prefix="pt1").for_cluster(2)
    second.record()
    assert LabSettings.recorded(second.state_dir) == second


def test_the_default_subnet_and_the_ovn_ic_config_of_a_cluster(tmp_path: Path) -> None:
    first = LabSettings(state_dir=tmp_path, clusters=2, ic_nb_port=26645, ic_sb_port=26646)
    second = first.for_cluster(2)
    subnet = default_subnet_object(second)
    assert subnet["spec"]["cidrBlock"] == "10.18.0.0/16"
    assert subnet["spec"]["gateway"] == "10.18.0.1" and subnet["spec"]["default"] is True
    data = config_map(second, ic_databases(first))["data"]
    assert data == {"enable-ic": "true", "az-name": "az2", "ic-db-host": "127.0.0.1",
                    "ic-nb-port": "26645", "ic-sb-port": "26646", "gw-nodes": "c2-node-1",
                    "auto-route": "true"}
    ha = LabSettings(state_dir=tmp_path, clusters=2, ha=True)
    assert config_map(ha, ic_databases(ha))["data"]["ic-db-host"] == \
        "127.0.0.1,127.0.0.2,127.0.0.3"


def test_checks_across_clusters_go_both_ways_from_default_subnet_pods() -> None:
    one = [Host("az1:shop/a", "n1", "10.66.0.20", "node-1", "shop"),
           Host("az1:default/r", "n2", "10.16.0.100", "node-2", "ovn-default")]
    two = [Host("az2:default/w", "n3", "10.18.0.2", "c2-node-1", "ovn-default")]
    checks = plan_cross_checks([one, two], "ovn-default")
    assert [(c.kind, c.client.label, c.address) for c in checks] == [
        (PING_ACROSS, "az1:default/r", "10.18.0.2"), (ACROSS, "az1:default/r", "10.18.0.2"),
        (PING_ACROSS, "az2:default/w", "10.16.0.100"),
        (ACROSS, "az2:default/w", "10.16.0.100")]
    assert all(c.routers == 2 for c in checks if c.ping)
    assert all(c.expect_source == c.client.ip for c in checks if not c.ping)
    assert plan_cross_checks([one, []], "ovn-default") == []


def test_a_check_across_clusters_fails_when_the_source_or_the_ttl_changed() -> None:
    client = Host("az1:default/r", "n2", "10.16.0.100", "node-2", "ovn-default")
    server = Host("az2:default/w", "n3", "10.18.0.2", "c2-node-1", "ovn-default")
    ping, tcp = plan_cross_checks([[client], [server]], "ovn-default")[:2]
    assert judge(ping, Outcome(("62",) * 3, (0.4, 0.5, 0.6))).ok
    assert judge(ping, Outcome(("62",) * 3, (0.4, 0.5, 0.6))).latency_ms == 0.5
    assert not judge(ping, Outcome(("61",) * 3, (0.4, 0.5, 0.6))).ok
    seen = judge(tcp, Outcome(("az2:default/w\t10.16.0.100",) * 3, (1.0, 1.0, 1.0)))
    assert seen.ok and "own 10.16.0.100" in seen.detail
    natted = judge(tcp, Outcome(("az2:default/w\t172.30.0.11",) * 3, (1.0, 1.0, 1.0)))
    assert not natted.ok and "172.30.0.11" in natted.detail


def test_the_command_line_bounds_the_number_of_clusters() -> None:
    from podnet.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["up", "--clusters", "2"]).clusters == 2
    assert parser.parse_args(["up"]).clusters == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["up", "--clusters", str(MAX_CLUSTERS + 1)])
