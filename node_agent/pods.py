"""Where the agent learns a pod's network: the Kubernetes API, or the IPAM standalone.

With a cluster, an informer (``podnet_plumbing.kube.Watcher``) keeps this node's pods in a
``Store``; an ADD waits, bounded, until its pod is allocated (the webhook's annotations)
and routed (the sync worker's ``ovn.kubernetes.io/routed=true``, meaning the OVN port
exists). It waits on the informer's change notifications, not by polling the API, and
the same notifications tell the agent when a rate annotation changes on a running pod.

Standalone (``podnet up`` without a cluster, or a runtime like podman alone), there is
no pod object: the allocation the IPAM holds for ``namespace/name`` is the pod's
network, and the OVN port's existence shows later as ``ovn-installed``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ipam import errors as ipam_errors
from ipam.store import Ipam
from node_agent import errors
from node_agent.netconf import PodRef
from node_agent.network import (
    InvalidPodNetwork,
    PodNetwork,
    allocated,
    from_allocation,
    from_annotations,
    routed,
)
from podnet_plumbing import kube

log = logging.getLogger(__name__)

PodChanged = Callable[[str, str], Awaitable[None]]
"""Called with (namespace, name) when a pod of this node changed."""
STANDALONE_POLL_S = 0.05


class PodSource(Protocol):
    on_change: PodChanged | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def network(self, pod: PodRef, timeout_s: float) -> PodNetwork:
        """The pod's network once it can be plumbed; waits at most ``timeout_s``."""
        ...

    async def current(self, pod: PodRef) -> PodNetwork | None:
        """The pod's network as known now (None when unknown or not allocated)."""
        ...

    async def present(self, pod: PodRef) -> bool | None:
        """Whether the pod still exists (None: cannot tell right now)."""
        ...

    def uid(self, pod: PodRef) -> str:
        """The pod's UID as known now, without I/O ('' when unknown)."""
        ...


def _bad(pod: PodRef, exc: InvalidPodNetwork) -> errors.BadPodAnnotations:
    return errors.BadPodAnnotations(f"podnet: pod {pod.key}: {exc}")


class KubePods:
    """This node's pods from the Kubernetes API, through one informer."""

    def __init__(self, api: Any, node: str, settings: kube.WatchSettings | None = None,
                 sync_timeout_s: float = 60.0) -> None:
        from kubernetes import client

        core = client.CoreV1Api(api)
        list_fn = functools.partial(core.list_pod_for_all_namespaces,
                                    field_selector=f"spec.nodeName={node}")
        self.watcher = kube.Watcher(list_fn, "Pod", self._on_event, settings=settings)
        self.store = self.watcher.store
        self.changed = asyncio.Condition()
        self.on_change: PodChanged | None = None
        self.sync_timeout_s = sync_timeout_s

    async def start(self) -> None:
        self.watcher.start()
        try:
            await self.store.wait_synced(self.sync_timeout_s)
        except TimeoutError as exc:
            await self.watcher.stop()
            raise errors.TryAgainLater(
                f"podnet: the pods of this node were not listed in {self.sync_timeout_s}s"
            ) from exc

    async def stop(self) -> None:
        await self.watcher.stop()

    async def _on_event(self, event: kube.WatchEvent) -> None:
        async with self.changed:
            self.changed.notify_all()
        if self.on_change is None:
            return
        objects = event.objects if isinstance(event, kube.Snapshot) else (event.obj,)
        for obj in objects:
            namespace, name = kube.object_key(obj)
            await self.on_change(namespace, name)

    def _object(self, pod: PodRef) -> dict[str, Any] | None:
        obj = self.store.get(pod.name, pod.namespace)
        if obj is None:
            return None
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        return obj if not pod.uid or not uid or uid == pod.uid else None

    def _state(self, pod: PodRef) -> tuple[PodNetwork | None, str]:
        """The network when ready, else None and what is still missing."""
        obj = self._object(pod)
        if obj is None:
            return None, f"pod {pod.key} is not on this node in the Kubernetes API"
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not allocated(annotations):
            return None, f"pod {pod.key} has no address yet (not allocated by the webhook)"
        if not routed(annotations):
            return None, f"pod {pod.key} is not routed yet (its OVN port is not there)"
        try:
            return from_annotations(pod.namespace, pod.name, annotations), ""
        except InvalidPodNetwork as exc:
            raise _bad(pod, exc) from exc

    async def network(self, pod: PodRef, timeout_s: float) -> PodNetwork:
        deadline = time.monotonic() + timeout_s
        async with self.changed:
            while True:
                network, missing = self._state(pod)
                if network is not None:
                    return network
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    async with asyncio.timeout(remaining):
                        await self.changed.wait()
                except TimeoutError:
                    raise errors.PodNotReady(f"podnet: {missing}",
                                             f"waited {timeout_s:.0f}s") from None

    async def current(self, pod: PodRef) -> PodNetwork | None:
        obj = self._object(pod)
        annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
        if not allocated(annotations):
            return None
        try:
            return from_annotations(pod.namespace, pod.name, annotations)
        except InvalidPodNetwork as exc:
            log.warning("pod %s: %s", pod.key, exc)
            return None

    def uid(self, pod: PodRef) -> str:
        stored = self.store.get(pod.name, pod.namespace)
        return str(((stored or {}).get("metadata") or {}).get("uid") or pod.uid)

    async def present(self, pod: PodRef) -> bool | None:
        if not self.store.synced:
            return None
        stored = self.store.get(pod.name, pod.namespace)
        if stored is None:
            return False
        uid = str((stored.get("metadata") or {}).get("uid") or "")
        return not pod.uid or not uid or uid == pod.uid  # same name, new pod: gone


class IpamPods:
    """Pods known only to the IPAM (no Kubernetes API): the allocation is the network."""

    def __init__(self, ipam: Ipam, poll_s: float = STANDALONE_POLL_S) -> None:
        self.ipam = ipam
        self.poll_s = poll_s
        self.on_change: PodChanged | None = None

    async def start(self) -> None:
        await self.ipam.ping()

    async def stop(self) -> None:
        return None

    async def current(self, pod: PodRef) -> PodNetwork | None:
        allocation = await self.ipam.lookup_pod(pod.namespace, pod.name)
        if allocation is None:
            return None
        subnet = await self.ipam.subnet(allocation.subnet)
        try:
            return from_allocation(pod.namespace, pod.name, allocation.ips, allocation.mac,
                                   subnet)
        except InvalidPodNetwork as exc:
            raise _bad(pod, exc) from exc

    async def network(self, pod: PodRef, timeout_s: float) -> PodNetwork:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                network = await self.current(pod)
            except ipam_errors.IpamError as exc:
                raise errors.TryAgainLater(f"podnet: the IPAM is unavailable: {exc}") from exc
            if network is not None:
                return network
            if time.monotonic() >= deadline:
                raise errors.PodNotFound(
                    f"podnet: the IPAM has no address for pod {pod.key}",
                    f"waited {timeout_s:.0f}s; reserve one (webhook or podnet ipam) first",
                )
            await asyncio.sleep(self.poll_s)

    def uid(self, pod: PodRef) -> str:
        return pod.uid

    async def present(self, pod: PodRef) -> bool | None:
        try:
            allocation = await self.ipam.lookup_pod(pod.namespace, pod.name)
        except ipam_errors.IpamError:
            return None
        if allocation is None:
            return False
        return not pod.uid or not allocation.uid or allocation.uid == pod.uid
