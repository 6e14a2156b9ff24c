"""Subnets, IPPools and Namespaces followed in the Kubernetes API, for the webhook.

In a cluster the webhook's configuration is the cluster's own objects, not a folder.
``KubeSource`` keeps the promise ``ManifestSource`` keeps (``namespace(name)``,
``refresh(ipam)``, ``problems``, ``loaded``), so the server treats both alike:

- three watchers (``podnet_plumbing.kube``) keep local copies of Namespaces, Subnets and IPPools;
  ``namespace(name)`` answers from memory, with no API call on the admission path;
- ``refresh(ipam)`` registers Subnets and IPPools into the IPAM the same way the
  manifests folder does (``webhook.manifests.register``: one bad object is reported and
  skipped, ``ovn-default`` is ensured when no subnet is the default), but only once all
  three lists have arrived and only when something changed, so calling it every second
  costs nothing; ``changed`` is set when there is work, for a server that would rather
  wait on it than poll;
- a Subnet or IPPool deleted in the API (seen as a DELETED event, or missing from a
  relist after the watch lost its place) is removed from the IPAM. While its addresses
  are in use that is refused, reported in ``problems`` and retried every ``retry_s``;
  the validating webhook normally refuses such a delete before it happens. Subnets the
  API never showed (``ovn-default`` ensured by podnet, anything loaded by other means)
  are never removed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Protocol

from kubernetes import client

from ipam import errors
from ipam.store import Ipam
from podnet_plumbing.kube import EventHandler, Snapshot, Watcher, WatchEvent, WatchSettings, lister
from podnet_plumbing.manifests import Manifest
from webhook.decide import NamespaceInfo
from webhook.extender import node_from_object
from webhook.manifests import ManifestSet, register

SOURCE = "kube-apiserver"


class ConfigSource(Protocol):
    """Where the webhook learns Subnets, IPPools, Namespaces and the nodes' addresses."""

    problems: list[str]
    loaded: bool

    def namespace(self, name: str) -> NamespaceInfo: ...

    def node_addresses(self) -> dict[str, tuple[str, ...]]: ...

    async def refresh(self, ipam: Ipam) -> bool: ...


def namespace_info(obj: Mapping[str, Any]) -> NamespaceInfo:
    metadata = obj.get("metadata") or {}

    def strings(value: object) -> dict[str, str]:
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}

    return NamespaceInfo(str(metadata.get("name") or ""), strings(metadata.get("labels")),
                         strings(metadata.get("annotations")))


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


class KubeSource:
    """Namespaces, Subnets and IPPools as the API has them, registered into the IPAM."""

    def __init__(
        self, api: client.ApiClient, settings: WatchSettings | None = None,
        retry_s: float = 30.0,
    ) -> None:
        """``retry_s``: how often a refused removal (addresses still in use) is retried."""
        self.problems: list[str] = []
        self.loaded = False
        self.changed = asyncio.Event()
        self.retry_s = retry_s
        self._dirty = True
        self._gone: dict[str, set[str]] = {"IPPool": set(), "Subnet": set()}
        self._registered: list[str] = []
        self._refusals: list[str] = []
        self._retry_at = 0.0
        self.namespaces = Watcher(lister(api, "Namespace"), "Namespace", settings=settings)
        self.subnets = Watcher(
            lister(api, "Subnet"), "Subnet", self._noter("Subnet"), settings=settings)
        self.pools = Watcher(
            lister(api, "IPPool"), "IPPool", self._noter("IPPool"), settings=settings)
        self.nodes = Watcher(lister(api, "Node"), "Node", settings=settings)

    @property
    def watchers(self) -> tuple[Watcher, ...]:
        """The Namespace, Subnet, IPPool and Node watchers (their ``store`` is what was
        seen)."""
        return (self.namespaces, self.subnets, self.pools, self.nodes)

    async def start(self) -> None:
        for watcher in self.watchers:
            watcher.start()

    async def close(self) -> None:
        await asyncio.gather(*(watcher.stop() for watcher in self.watchers))

    async def __aenter__(self) -> KubeSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def synced(self) -> bool:
        return all(watcher.store.synced for watcher in self.watchers)

    async def wait_synced(self, timeout_s: float | None = None) -> None:
        """Wait until every list arrived; ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            for watcher in self.watchers:
                await watcher.store.wait_synced()

    def node_addresses(self) -> dict[str, tuple[str, ...]]:
        """Each node's InternalIP and ExternalIP addresses: no Subnet may cover them."""
        return {node.name: node.addresses
                for node in map(node_from_object, self.nodes.store.objects())}

    def namespace(self, name: str) -> NamespaceInfo:
        found = self.namespaces.store.get(name)
        return namespace_info(found) if found is not None else NamespaceInfo(name)

    def _noter(self, kind: str) -> EventHandler:
        gone = self._gone[kind]

        async def noted(event: WatchEvent) -> None:
            if isinstance(event, Snapshot):
                gone.update(_name(obj) for obj in event.removed)
                gone.difference_update(_name(obj) for obj in event.objects)
            elif event.type == "DELETED":
                gone.add(_name(event.obj))
            else:
                gone.discard(_name(event.obj))
            self._dirty = True
            self._retry_at = 0.0
            self.changed.set()

        return noted

    async def refresh(self, ipam: Ipam) -> bool:
        """Register what changed since the last call; True if the IPAM may have changed."""
        if not self.synced:
            self.problems = [f"{SOURCE}: cannot list {w.kind}: {w.stats.last_error}"
                             for w in self.watchers if w.stats.last_error]
            return False
        self.changed.clear()
        removed = False
        if time.monotonic() >= self._retry_at:
            removed, self._refusals = await self._remove_gone(ipam)
            self._retry_at = time.monotonic() + self.retry_s if self._refusals else 0.0
        registered = False
        if self._dirty or not self.loaded:
            self._dirty = False
            try:
                self._registered = await register(ipam, self._manifests())
            except BaseException:
                self._dirty = True
                raise
            self.loaded = registered = True
        self.problems = self._registered + self._refusals
        return registered or removed

    def _manifests(self) -> ManifestSet:
        objects = self.subnets.store.list() + self.pools.store.list()
        return ManifestSet(tuple(Manifest(SOURCE, obj) for obj in objects))

    async def _remove_gone(self, ipam: Ipam) -> tuple[bool, list[str]]:
        """Remove deleted pools, then deleted subnets: (any removed, what was refused)."""
        removed, refusals = False, []
        for kind, remove in (("IPPool", ipam.delete_pool), ("Subnet", ipam.delete_subnet)):
            for name in sorted(self._gone[kind]):
                try:
                    await remove(name)
                    removed = True
                except (errors.UnknownPool, errors.UnknownSubnet):
                    pass
                except errors.StoreUnavailable:
                    raise
                except errors.IpamError as exc:
                    refusals.append(f"{SOURCE}: {kind} {name} was deleted but is kept: {exc}")
                    continue
                self._gone[kind].discard(name)
        return removed, refusals
