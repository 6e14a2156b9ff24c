"""Where ``podnet up`` keeps its state, what it listens on, and what it names things.

Everything the lab makes is derived from these settings: pidfiles and data under
``state_dir``; network namespaces, bridges and veths named from ``prefix``, so two labs
(or a lab and the tests) never touch each other's. ``up`` records them in
``<state_dir>/lab.json`` first thing, so ``status`` and ``down`` find exactly what it
made, even after an ``up`` that stopped halfway.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ipam.settings import RedisSettings
from podnet.daemons import RedisServer
from podnet.lab.redis_group import RedisGroup
from podnet.ovn import Central, OvnCentral
from podnet.ovn_raft import RaftCentral

DEFAULT_STATE_DIR = Path("/var/lib/podnet")
DEFAULT_MANIFESTS = Path(__file__).resolve().parent.parent.parent / "examples"
RECORD = "lab.json"
MAX_IFNAME = 15


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
    replicated under Sentinel (a primary, two replicas, three sentinels)."""

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
        return [f"node-{index}" for index in range(1, self.nodes + 1)]

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
