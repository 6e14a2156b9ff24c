"""A real three-shard Redis Cluster on loopback: three primaries and a replica of each,
every server a process of its own in its own directory, stopped by the PID we started.

A node is declared failed after one second (the shipped default is fifteen), so a
replica takes over a killed primary within a few seconds of test time. The tests move
slots and fail shards over with Redis's own commands, as an operator would.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from podnet.daemons import free_port, require_binary
from podnet.redis_ha import DataServer
from tests.sentinel_fixtures import admin

NODE_TIMEOUT_MS = 1000
SHARDS = 3


def distinct_ports(count: int) -> list[int]:
    """``count`` free loopback ports, no two the same."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def cluster_server(directory: Path, port: int, bus_port: int) -> DataServer:
    """A cluster-enabled server whose cluster bus listens on a port of its own."""
    return DataServer(directory, port=port, options=(
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(directory / "nodes.conf"),
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        "--cluster-port", str(bus_port),
    ))


@dataclass
class ShardedCluster:
    directory: Path
    servers: list[DataServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.url_of("redis+cluster")

    def url_of(self, scheme: str) -> str:
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.servers[:2])
        return f"{scheme}://{nodes}/"

    def start(self) -> ShardedCluster:
        # Each is listed before it starts, so a failed start still stops what ran.
        ports = distinct_ports(4 * SHARDS)
        self.servers = [cluster_server(self.directory / f"redis-{n}", ports[2 * n],
                                       ports[2 * n + 1]) for n in range(2 * SHARDS)]
        for server in self.servers:
            server.start()
        subprocess.run(
            [require_binary("redis-cli"), "--cluster", "create",
             *(f"127.0.0.1:{s.port}" for s in self.servers),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60)
        self.waithealthy()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def server_on(self, port: int) -> DataServer:
        return next(s for s in self.servers if s.port == port)

    def running(self) -> list[DataServer]:
        return [s for s in self.servers if s.process is not None]

    def nodes(self) -> list[dict[str, str]]:
        """``CLUSTER NODES`` as one running server sees it: id, port, role, primary id."""
        for server in self.running():
            try:
                with admin(server.port) as client:
                    known = client.execute_command("CLUSTER NODES")
            except redis.exceptions.RedisError:
                continue
            return [_node(address, node) for address, node in known.items()]
        raise AssertionError("no cluster node answers")

    def primary_of_slot(self, slot: int) -> int:
        """The port of the primary serving ``slot``, as a running server says."""
        for server in self.running():
            try:
                with admin(server.port) as client:
                    shards = client.execute_command("CLUSTER SLOTS")
            except redis.exceptions.RedisError:
                continue
            for low, high, primary, *_ in shards:
                if int(low) <= slot <= int(high):
                    return int(primary[1])
        raise AssertionError(f"no running server names the primary of slot {slot}")

    def replica_of(self, primary_port: int) -> int:
        nodes = self.nodes()
        primary_id = next(n["id"] for n in nodes if int(n["port"]) == primary_port)
        return next(int(n["port"]) for n in nodes
                    if n["primary"] == primary_id and "fail" not in n["flags"])

    def primaries(self) -> list[int]:
        return sorted(int(n["port"]) for n in self.nodes()
                      if "master" in n["flags"] and "fail" not in n["flags"])

    def waithealthy(self, timeout_s: float = 30.0) -> None:
        """Until every running server says the cluster is ok and every shard's primary
        has its replica online."""
        deadline = time.monotonic() + timeout_s
        while not self.replicated():
            if time.monotonic() > deadline:
                raise AssertionError("the cluster did not become healthy")
            time.sleep(0.1)

    def healthy(self) -> bool:
        """Every running server says the cluster is ok, and each shard has a primary
        with its replica online (a killed primary's shard counts once its replica took
        over, replicated or not)."""
        return self._cluster_ok() and len(self.primaries()) == SHARDS

    def replicated(self) -> bool:
        return self.healthy() and all(map(_replicated, self.primaries()))

    def _cluster_ok(self) -> bool:
        try:
            for server in self.running():
                with admin(server.port) as client:
                    info = client.execute_command("CLUSTER INFO")
                if info.get("cluster_state") != "ok":
                    return False
            return True
        except redis.exceptions.RedisError:
            return False


def _node(address: str, node: dict[str, str]) -> dict[str, str]:
    return {"id": node["node_id"], "port": address.partition("@")[0].rsplit(":", 1)[1],
            "flags": node["flags"], "primary": node["master_id"]}


def _replicated(port: int) -> bool:
    with admin(port) as client:
        info = client.info("replication")
    return any(isinstance(v, dict) and v.get("state") == "online"
               for k, v in info.items() if k.startswith("slave"))
