"""The sync worker's typed views of the watched objects, indexed the way steps read them.

An event step must cost what the event touches, not what the cluster holds: at 10,000
pods, re-reading every pod to find the few that share a node's gateway address set
costs more than the whole NB transaction. So the views are kept here, replaced one by
one as events arrive, and indexed by what a step asks for: the pods of a (subnet, node)
pair, the EndpointSlices of a service. A full step rebuilds everything from scratch,
which also repairs an index that a missed event left wrong.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from podnet_sync.cluster import EndpointSliceView, PodView, ServiceView

ObjectKey = tuple[str, str]
"""(namespace, name)."""

Pair = tuple[str, str]
"""(subnet, node): the pods that share a distributed gateway's address set."""


class ClusterIndex:
    """Pods, Services and EndpointSlices as views, with the lookups a step needs."""

    def __init__(self) -> None:
        self.pods: dict[ObjectKey, PodView] = {}
        self.services: dict[str, ServiceView] = {}
        self.slices: dict[ObjectKey, EndpointSliceView] = {}
        self._pairs: dict[Pair, dict[ObjectKey, PodView]] = defaultdict(dict)
        self._service_slices: dict[str, set[ObjectKey]] = defaultdict(set)

    @classmethod
    def of(cls, pods: Iterable[PodView], services: Iterable[ServiceView],
           slices: Iterable[EndpointSliceView]) -> ClusterIndex:
        """An index of exactly these views (a full step's)."""
        index = cls()
        for pod in pods:
            index.put_pod((pod.namespace, pod.name), pod)
        for service in services:
            index.put_service(service.key, service)
        for endpoint_slice in slices:
            index.put_slice((endpoint_slice.namespace, endpoint_slice.name), endpoint_slice)
        return index

    # --------------------------------------------------------------------- pods

    def put_pod(self, key: ObjectKey, pod: PodView | None) -> PodView | None:
        """Replace (or with ``None`` drop) a pod's view; returns the one held before."""
        old = self.pods.pop(key, None)
        if old is not None:
            self._pairs[pair_of(old)].pop(key, None)
        if pod is not None:
            self.pods[key] = pod
            self._pairs[pair_of(pod)][key] = pod
        return old

    def stored_pods_in(self, pairs: Iterable[Pair]) -> list[PodView]:
        """The stored pods of these (subnet, node) pairs, those being deleted included:
        a pod keeps its port through its grace period."""
        return [pod for pair in pairs for pod in self._pairs.get(pair, {}).values()]

    # ----------------------------------------------------------------- services

    def put_service(self, key: str, service: ServiceView | None) -> None:
        if service is None:
            self.services.pop(key, None)
        else:
            self.services[key] = service

    def put_slice(self, key: ObjectKey,
                  endpoint_slice: EndpointSliceView | None) -> EndpointSliceView | None:
        """Replace (or drop) a slice's view; returns the one held before, whose service
        also changed if the slice moved to another one."""
        old = self.slices.pop(key, None)
        if old is not None:
            self._service_slices[old.service_key].discard(key)
        if endpoint_slice is not None:
            self.slices[key] = endpoint_slice
            self._service_slices[endpoint_slice.service_key].add(key)
        return old

    def slices_of(self, services: Iterable[str]) -> list[EndpointSliceView]:
        return [self.slices[key] for service in services
                for key in sorted(self._service_slices.get(service, ()))]


def pair_of(pod: PodView) -> Pair:
    return pod.subnet, pod.node
