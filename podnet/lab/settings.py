"""Where ``podnet up`` keeps its state, what it listens on, and what it names things.

Everything the lab makes is derived from these settings: pidfiles and data under
``state_dir``; network namespaces, bridges and veths named from ``prefix``, so two labs
(or a lab and the tests) never touch each other's. ``up`` records them in
``<state_dir>/lab.json`` first thing, so ``status`` and ``down`` find exactly what it
made, even after an ``up`` that stopped halfway.

``up --clusters N`` runs N clusters side by side (``cluster_settings``): the first is
exactly the lab of a plain ``up``; every other one is derived from it with its own state
directory (``<state_dir>/cluster-<k>``), ports, name prefix, node names, underlay and
default subnet, so no name, port or pod address is shared. The clusters' external hosts
are joined by one more bridge (``interconnect_bridge``), over which each routes to the
others' underlays: the path Geneve takes between the AZs' gateway nodes.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ipam.settings import RedisSettings
from ipam.subnet import DEFAULT_CIDR
from podnet.daemons import RedisServer
from podnet.lab.redis_group import RedisGroup
from podnet.ovn import Central, OvnCentral
from podnet.ovn_raft import RaftCentral

DEFAULT_STATE_DIR = Path("/var/lib/podnet")
DEFAULT_MANIFESTS = Path(__file__).resolve().parent.parent.parent / "examples"
DEFAULT_PEER_MANIFESTS = DEFAULT_MANIFESTS / "peer-cluster"
"""What clusters after the first get: the examples pin addresses of their own subnets,
which a second cluster must not reuse (its pods would be unreachable across clusters)."""
RECORD = "lab.json"
MAX_IFNAME = 15
MAX_CLUSTERS = 2
CLUSTER_PORT_STEP = 100
"""Cluster k listens on every port of the first plus ``(k - 1) * CLUSTER_PORT_STEP``
(above the ten Redis ports of ``--ha``)."""
PREFIX_ROOM = 9
"""The characters of a prefix that link names keep (``<prefix[:9]>-ul12``)."""
INTERCONNECT_DEVICE = "ic0"
"""The external host's end of its link to the bridge between the clusters."""


@dataclass(frozen=True)
class LabSettings:
    """Where ``podnet up`` keeps its state and what it listens on."""

    state_dir: Path = DEFAULT_STATE_DIR
    redis_port: int = 16379
    ipam_listen: str = "127.0.0.1:8080"
    manifests: tuple[Path, ...] = (DEFAULT_MANIFESTS,)
    apiserver_listen: str = "127.0.0.1:18080"
    webhook_listen: str = "127.0.0.1:18443"
    sync_listen: str = "127.0.0.1:9477"
    """The sync worker's ``/metrics``, ``/healthz`` and ``/readyz``."""
    nodes: int = 2
    prefix: str = "podnet"
    """Names of network namespaces (``<prefix>-<node>``), the underlay bridge, veths."""
    underlay_cidr: str = "172.30.0.0/24"
    service_cidr: str = "10.96.0.0/16"
    outside_address: str = "198.51.100.10"
    """The address of the lab's stand-in for the outside world (the external host): in
    no cluster subnet, reached from pods only through their node's gateway."""
    wait_s: float = 60.0
    """How long ``up`` waits for pods to settle before reporting what is not ready."""
    ha: bool = False
    """OVN central on raft (NB and SB on three members each, two ovn-northd), and Redis
    replicated under Sentinel (a primary, two replicas, three sentinels); with
    ``clusters`` > 1 the IC databases on raft too."""
    clusters: int = 1
    """How many clusters ``up`` runs, interconnected over OVN-IC (at most
    ``MAX_CLUSTERS``); the first cluster's settings say."""
    cluster: int = 1
    """Which cluster these settings are of (1 for the first)."""
    node_prefix: str = "node"
    """Nodes are ``<node_prefix>-1`` ...: names are unique across interconnected clusters,
    as OVN-IC names gateway chassis by them."""
    default_cidr: str = DEFAULT_CIDR
    """The CIDR of ``ovn-default`` (``up`` creates it before the sync worker when it is not
    podnet's built-in one)."""
    ic_listen: str = "127.0.0.1:9478"
    """The IC controller's ``/metrics``, ``/healthz`` and ``/readyz`` (with ``clusters`` > 1)."""
    ic_nb_port: int = 16645
    """The IC northbound database's client port (IC southbound: ``ic_sb_port``)."""
    ic_sb_port: int = 16646
    interconnect_cidr: str = "198.18.0.0/24"
    """The network between the clusters' external hosts (cluster k at its k-th address)."""

    def __post_init__(self) -> None:
        if not 1 <= self.clusters <= MAX_CLUSTERS:
            raise ValueError(f"clusters: {self.clusters}, the lab runs 1 to {MAX_CLUSTERS}")

    @property
    def redis(self) -> RedisServer:
        return RedisServer(self.state_dir / "redis", port=self.redis_port)

    @property
    def redis_group(self) -> RedisGroup:
        """With ``ha``: three Redis under three sentinels, from ``redis_port`` on."""
        return RedisGroup(self.state_dir, self.redis_port)

    @property
    def redis_url(self) -> str:
        """What every component is given as ``--redis``: the one Redis, or (``ha``) the
        sentinels, which name the primary."""
        return self.redis_group.url if self.ha else self.redis.url

    @property
    def redis_settings(self) -> RedisSettings:
        return RedisSettings(url=self.redis_url)

    @property
    def apiserver_url(self) -> str:
        return f"http://{self.apiserver_listen}"

    @property
    def webhook_url(self) -> str:
        return f"https://{self.webhook_listen}"

    @property
    def underlay_bridge(self) -> str:
        name = f"{self.prefix}-underlay"
        return name if len(name) <= MAX_IFNAME else f"{self.prefix[:MAX_IFNAME - 3]}-ul"

    def node_names(self) -> list[str]:
        return [f"{self.node_prefix}-{index}" for index in range(1, self.nodes + 1)]

    def node_netns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def underlay_link(self, index: int) -> str:
        """The host end of node ``index``'s underlay veth (at most 15 characters)."""
        return f"{self.prefix[:MAX_IFNAME - 6]}-ul{index}"

    def node_address(self, index: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        """Node ``index``'s underlay address (its InternalIP and Geneve endpoint)."""
        network = ipaddress.ip_network(self.underlay_cidr)
        return ipaddress.ip_interface(f"{network.network_address + 10 + index}/"
                                      f"{network.prefixlen}")

    @property
    def external_netns(self) -> str:
        """The network namespace standing for the world outside the cluster."""
        return f"{self.prefix}-external"

    @property
    def external_link(self) -> str:
        """The host end of the external host's underlay veth (at most 15 characters)."""
        return f"{self.prefix[:MAX_IFNAME - 6]}-ulx"

    def external_underlay_address(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        """The external host's address on the underlay: the nodes' default gateway."""
        network = ipaddress.ip_network(self.underlay_cidr)
        return ipaddress.ip_interface(f"{network.broadcast_address - 1}/{network.prefixlen}")

    @property
    def az_name(self) -> str:
        """The cluster's availability zone in OVN-IC (``NB_Global.name``)."""
        return f"az{self.cluster}"

    @property
    def interconnect_bridge(self) -> str:
        """The bridge joining the clusters' external hosts (named from the first's prefix)."""
        return f"{self.prefix[:PREFIX_ROOM]}-ic"

    @property
    def interconnect_link(self) -> str:
        """The host end of this cluster's external host's link to ``interconnect_bridge``."""
        return f"{self.prefix[:PREFIX_ROOM]}-icx"

    def interconnect_address(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        """The external host's address between the clusters."""
        network = ipaddress.ip_network(self.interconnect_cidr)
        return ipaddress.ip_interface(f"{network.network_address + self.cluster}/"
                                      f"{network.prefixlen}")

    def central(self) -> Central:
        """The lab's OVN central: one NB, one SB and northd, or (``ha``) all on raft."""
        if self.ha:
            return RaftCentral(self.state_dir / "ovn-central-raft")
        return OvnCentral(self.state_dir / "ovn-central", nb_port=None, sb_port=None)

    def kubeconfig(self, component: str) -> Path:
        return self.state_dir / "kubeconfig" / f"{component}.yaml"

    def record(self) -> None:
        """Write the settings to ``lab.json`` (before anything is started)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = asdict(self)
        data["state_dir"] = str(self.state_dir)
        data["manifests"] = [str(path) for path in self.manifests]
        (self.state_dir / RECORD).write_text(json.dumps(data, indent=2) + "\n")

    def for_cluster(self, cluster: int) -> LabSettings:
        """The settings of cluster ``cluster`` (1-based) of a lab whose first cluster these
        are: the first is these very settings; cluster k >= 2 shifts every port by
        ``(k - 1) * CLUSTER_PORT_STEP``, the underlay, the default subnet and the outside
        address by k - 1 of their size, and gets its own state directory, prefix and node
        names. The service CIDR and the join subnet stay: ClusterIPs are local to a
        cluster, and OVN-IC advertises neither."""
        if self.cluster != 1:
            raise ValueError(f"cluster {self.cluster} derives no cluster: the first does")
        if not 1 <= cluster <= self.clusters:
            raise ValueError(f"cluster {cluster} of {self.clusters}")
        if cluster == 1:
            return self
        step = cluster - 1
        return replace(
            self, cluster=cluster,
            state_dir=self.state_dir / f"cluster-{cluster}",
            redis_port=self.redis_port + step * CLUSTER_PORT_STEP,
            ipam_listen=_shift_port(self.ipam_listen, step),
            apiserver_listen=_shift_port(self.apiserver_listen, step),
            webhook_listen=_shift_port(self.webhook_listen, step),
            sync_listen=_shift_port(self.sync_listen, step),
            ic_listen=_shift_port(self.ic_listen, step),
            manifests=(DEFAULT_PEER_MANIFESTS,),
            prefix=cluster_prefix(self.prefix, cluster),
            node_prefix=f"c{cluster}-{self.node_prefix}",
            underlay_cidr=_shift_network(self.underlay_cidr, step),
            default_cidr=_shift_network(self.default_cidr, 2 * step),
            outside_address=str(ipaddress.ip_address(self.outside_address) + 10 * step),
        )

    def all_clusters(self) -> list[LabSettings]:
        """Every cluster's settings, the first (these) first."""
        return [self.for_cluster(k) for k in range(1, self.clusters + 1)]

    @classmethod
    def recorded(cls, state_dir: Path) -> LabSettings | None:
        """The settings ``up`` recorded in ``state_dir``, if it did."""
        try:
            data = json.loads((state_dir / RECORD).read_text())
        except (OSError, ValueError):
            return None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["manifests"] = tuple(Path(p) for p in values.get("manifests") or ())
        values["state_dir"] = state_dir
        return replace(cls(), **values)


def cluster_prefix(prefix: str, cluster: int) -> str:
    """The name prefix of cluster ``cluster``: the first's, then ``<prefix[:7]>c<k>``, short
    enough that link names keep all of it, and never the first's."""
    if cluster == 1:
        return prefix
    derived = f"{prefix[:PREFIX_ROOM - 2]}c{cluster}"
    return derived if derived != prefix[:PREFIX_ROOM] else f"{prefix[:PREFIX_ROOM - 2]}k{cluster}"


def _shift_port(listen: str, step: int) -> str:
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + step * CLUSTER_PORT_STEP}"


def _shift_network(cidr: str, steps: int) -> str:
    """``cidr`` moved on by ``steps`` networks of its size (10.16.0.0/16, 2: 10.18.0.0/16)."""
    network = ipaddress.ip_network(cidr)
    return str(ipaddress.ip_network(
        f"{network.network_address + steps * network.num_addresses}/{network.prefixlen}"))
