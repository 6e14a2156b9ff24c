"""The kubelet's network half, for the lab: a pod sandbox is a network namespace, attached
by calling ``podnet-cni`` exactly as a container runtime calls a CNI plugin.

The lab's controllers place pods on simulated nodes (``podnet.lab.controllers``); what a
kubelet then does for networking is this module's job, behind the ``Kubelet`` protocol:

- ``attach(pod, node)``: make the sandbox (network namespace ``<prefix>-p-<hash>``),
  run ``podnet-cni`` with ``CNI_COMMAND=ADD``, the pod's ``CNI_ARGS``
  (``K8S_POD_NAMESPACE``, ``K8S_POD_NAME``, ``K8S_POD_INFRA_CONTAINER_ID``,
  ``K8S_POD_UID``) and the network configuration on stdin, inside the node's network
  namespace (where a runtime would run it), and return the addresses of the CNI result;
- ``detach(pod, node)``: ``CNI_COMMAND=DEL`` (idempotent, as the spec requires), then
  remove the sandbox.

The CNI side needs the node agent (``podnet agent``) listening on the socket the
network configuration names; ``podnet up`` hands a node to ``CniKubelet`` only once its
agent runs. Every sandbox is written to the lab's ledger before it is made, so
``podnet down`` removes it even if this process dies.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from podnet.lab.ledger import Ledger
from podnet.ovn import netns_add, netns_delete, netns_exists

CNI_VERSION = "1.0.0"
POD_INTERFACE = "eth0"


@dataclass(frozen=True)
class Attachment:
    """What attaching a pod gave: its addresses, and when its network was ready."""

    ips: tuple[str, ...]
    ready_at: float
    """``time.time()`` when the attach returned."""
    add_s: float = 0.0
    """How long the CNI ADD call took (the plugin's exec until its result)."""


class AttachError(RuntimeError):
    """A pod's network could not be set up; the message says why (a CNI error, say)."""


class Kubelet(Protocol):
    """The network side of a kubelet, for the nodes it serves."""

    def serves(self, node: str) -> bool: ...

    async def attach(self, pod: Mapping[str, Any], node: Mapping[str, Any]) -> Attachment:
        """Give ``pod`` its network on ``node``; raise ``AttachError`` when it cannot."""
        ...

    async def detach(self, pod: Mapping[str, Any], node: str) -> None:
        """Take the pod's network down; succeeds when it is already gone."""
        ...

    def leftovers(self, live_uids: set[str]) -> list[tuple[dict[str, Any], str]]:
        """Sandboxes whose pod is no longer live (deleted while this kubelet was away):
        each as (the pod as it was known, its node), to detach."""
        ...


@dataclass(frozen=True)
class NodeRuntime:
    """How pods are attached on one simulated node."""

    name: str
    netns: str
    """The node's network namespace: the plugin runs there, as on a real node."""
    network: Mapping[str, Any]
    """The CNI network configuration (``type`` names the plugin; ``socket`` the agent's)."""
    plugin: str = "podnet-cni"
    plugin_dirs: tuple[str, ...] = ()


def sandbox_name(prefix: str, pod: Mapping[str, Any]) -> str:
    """A network namespace name for the pod's sandbox, stable for its uid."""
    uid = str((pod.get("metadata") or {}).get("uid") or "")
    return f"{prefix}-p-{hashlib.sha256(uid.encode()).hexdigest()[:10]}"


def container_id(pod: Mapping[str, Any]) -> str:
    """The sandbox's container id: 64 hex digits, stable for the pod's uid."""
    uid = str((pod.get("metadata") or {}).get("uid") or "")
    return hashlib.sha256(f"sandbox:{uid}".encode()).hexdigest()


def cni_environment(command: str, pod: Mapping[str, Any], netns_path: str,
                    plugin_dirs: Sequence[str]) -> dict[str, str]:
    """The ``CNI_*`` variables a runtime sets (kubelet's ``CNI_ARGS`` included)."""
    metadata = pod.get("metadata") or {}
    args = ";".join([
        "IgnoreUnknown=1",
        f"K8S_POD_NAMESPACE={metadata.get('namespace', '')}",
        f"K8S_POD_NAME={metadata.get('name', '')}",
        f"K8S_POD_INFRA_CONTAINER_ID={container_id(pod)}",
        f"K8S_POD_UID={metadata.get('uid', '')}",
    ])
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id(pod),
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": POD_INTERFACE,
        "CNI_ARGS": args,
        "CNI_PATH": ":".join(plugin_dirs),
    }


def result_ips(result: Mapping[str, Any]) -> tuple[str, ...]:
    """The addresses of a CNI result, without their prefix length."""
    return tuple(str(entry.get("address", "")).split("/")[0]
                 for entry in result.get("ips") or [] if entry.get("address"))


@dataclass
class CniKubelet:
    """Sandboxes as network namespaces, attached by the CNI plugin on each node."""

    nodes: Mapping[str, NodeRuntime]
    prefix: str
    ledger: Ledger
    timeout_s: float = 180.0
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def serves(self, node: str) -> bool:
        return node in self.nodes

    @property
    def records(self) -> Path:
        """One file per sandbox, naming its pod and node: what survives a restart."""
        return self.ledger.path.parent / "sandboxes"

    def leftovers(self, live_uids: set[str]) -> list[tuple[dict[str, Any], str]]:
        found = []
        for path in sorted(self.records.glob("*.json")) if self.records.is_dir() else []:
            try:
                record = json.loads(path.read_text())
                pod, node = dict(record["pod"]), str(record["node"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if str((pod.get("metadata") or {}).get("uid") or "") not in live_uids:
                found.append((pod, node))
        return found

    def _remember(self, sandbox: str, pod: Mapping[str, Any], node: str) -> None:
        metadata = pod.get("metadata") or {}
        known = {"metadata": {key: metadata.get(key) for key in ("namespace", "name", "uid")}}
        self.records.mkdir(parents=True, exist_ok=True)
        temporary = self.records / f".{sandbox}.tmp"
        temporary.write_text(json.dumps({"pod": known, "node": node}))
        os.replace(temporary, self.records / f"{sandbox}.json")

    async def attach(self, pod: Mapping[str, Any], node: Mapping[str, Any]) -> Attachment:
        runtime = self.nodes[str((node.get("metadata") or {}).get("name"))]
        sandbox = sandbox_name(self.prefix, pod)
        async with self._lock(sandbox):
            self.ledger.record("netns", sandbox)
            self._remember(sandbox, pod, runtime.name)
            if not netns_exists(sandbox):
                await asyncio.to_thread(netns_add, sandbox)
            began = time.perf_counter()
            result = await self._plugin("ADD", runtime, pod, sandbox)
            took = time.perf_counter() - began
        ips = result_ips(result or {})
        if not ips:
            raise AttachError(f"{runtime.plugin} ADD returned no address: {result}")
        return Attachment(ips, time.time(), took)

    async def detach(self, pod: Mapping[str, Any], node: str) -> None:
        runtime = self.nodes.get(node)
        sandbox = sandbox_name(self.prefix, pod)
        async with self._lock(sandbox):
            if runtime is not None:
                await self._plugin("DEL", runtime, pod, sandbox)
            await asyncio.to_thread(netns_delete, sandbox)
            self.ledger.forget("netns", sandbox)
            (self.records / f"{sandbox}.json").unlink(missing_ok=True)

    def _lock(self, sandbox: str) -> asyncio.Lock:
        return self._locks.setdefault(sandbox, asyncio.Lock())

    async def _plugin(self, command: str, runtime: NodeRuntime, pod: Mapping[str, Any],
                      sandbox: str) -> dict[str, Any] | None:
        env = {**os.environ, **cni_environment(command, pod, f"/run/netns/{sandbox}",
                                               runtime.plugin_dirs)}
        process = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", runtime.netns, runtime.plugin,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env,
        )
        config = json.dumps({"cniVersion": CNI_VERSION, **runtime.network}).encode()
        try:
            out, err = await asyncio.wait_for(process.communicate(config), self.timeout_s)
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise AttachError(f"{runtime.plugin} {command} did not answer in "
                              f"{self.timeout_s}s") from exc
        return _answer(command, runtime.plugin, process.returncode or 0, out, err)


def _answer(command: str, plugin: str, code: int, out: bytes, err: bytes) -> dict[str, Any] | None:
    text = out.decode(errors="replace").strip()
    if code != 0:
        try:
            error = json.loads(text)
            why = f"{error.get('msg')} ({error.get('details', '')})".replace(" ()", "")
        except ValueError:
            why = text or err.decode(errors="replace").strip() or f"exit {code}"
        raise AttachError(f"{plugin} {command}: {why}")
    if not text:
        return None
    try:
        answer: dict[str, Any] = json.loads(text)
    except ValueError as exc:
        raise AttachError(f"{plugin} {command} printed no JSON result: {text[:200]}") from exc
    return answer


def kubelet_config(path: Path) -> dict[str, Any]:
    """The kubelet part of the controllers' configuration file, as ``podnet up`` wrote it."""
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def cni_kubelet(config: Mapping[str, Any], ledger: Ledger) -> CniKubelet | None:
    """A ``CniKubelet`` for the nodes ``config`` lists (None when it lists none)."""
    nodes = {
        str(entry["name"]): NodeRuntime(
            str(entry["name"]), str(entry["netns"]), dict(entry["network"]),
            str(entry.get("plugin") or "podnet-cni"), tuple(entry.get("pluginDirs") or ()),
        )
        for entry in config.get("nodes") or []
    }
    if not nodes:
        return None
    return CniKubelet(nodes, str(config.get("prefix") or "podnet"), ledger)
