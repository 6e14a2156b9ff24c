"""Typed views of the Kubernetes objects the sync worker mirrors, parsed from API JSON.

The worker watches plain JSON (exactly what the API server sends); these functions
pick out what OVN needs, so the desired-state code never digs through nested dicts and
a malformed object is skipped with a reason instead of breaking the whole reconcile.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from ipam import annotations as keys
from ipam import names
from ipam.addresses import IPAddress

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class Unusable(ValueError):
    """An object the sync worker cannot mirror; the message says why."""


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    value = _metadata(obj).get("annotations")
    return value if isinstance(value, Mapping) else {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    value = _metadata(obj).get("labels")
    return value if isinstance(value, Mapping) else {}


def _ips(text: str) -> tuple[IPAddress, ...]:
    try:
        return tuple(ipaddress.ip_address(part.strip()) for part in text.split(",") if part)
    except ValueError as exc:
        raise Unusable(f"{keys.IP_ADDRESS} {text!r} is not a list of IPs") from exc


@dataclass(frozen=True)
class ContainerPort:
    """A port a pod's container declares: what a NetworkPolicy's named port resolves to."""

    name: str
    number: int
    protocol: str


@dataclass(frozen=True)
class PodView:
    """A pod as OVN sees it: its port's addresses, subnet and node."""

    namespace: str
    name: str
    uid: str
    subnet: str
    ips: tuple[IPAddress, ...]
    mac: str
    node: str
    reservation: str
    terminal: bool
    host_network: bool
    routed: bool
    deleting: bool
    statefulset: str = ""
    ordinal: int = -1
    wanted_subnet: str = ""
    """The ``logical_switch`` the pod asks for, allocated or not (for adoption)."""
    wanted_ips: tuple[IPAddress, ...] = ()
    """The ``ip_address`` the pod asks for, allocated or not (for adoption)."""
    statefulset_uid: str = ""
    """The UID of the StatefulSet that owns the pod (a re-created set is another)."""
    deletion_deadline_s: float = 0.0
    """Unix time its grace period ends (``deletionTimestamp``); 0 when not deleting."""
    labels: tuple[tuple[str, str], ...] = ()
    """The pod's labels, sorted (what NetworkPolicy selectors match)."""
    container_ports: tuple[ContainerPort, ...] = ()
    """Every container's declared ports (NetworkPolicy named ports)."""

    @property
    def allocated(self) -> bool:
        return bool(self.subnet and self.ips)

    @cached_property
    def port_name(self) -> str:
        """Worked out once per view: policy compiles ask it for every pod they pick."""
        return names.pod_port(self.name, self.namespace)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_pod(obj: Mapping[str, Any]) -> PodView:
    metadata = _metadata(obj)
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    assert isinstance(spec, Mapping) and isinstance(status, Mapping)
    annotations = _annotations(obj)
    namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
    if not namespace or not name:
        raise Unusable("pod without namespace or name")
    sts, ordinal = statefulset_of(metadata)
    sts_uid = next((str(o.get("uid") or "") for o in metadata.get("ownerReferences") or []
                    if isinstance(o, Mapping) and o.get("kind") == "StatefulSet"
                    and o.get("name") == sts), "") if sts else ""
    allocated = annotations.get(keys.ALLOCATED) == "true"
    return PodView(
        namespace=namespace,
        name=name,
        uid=str(metadata.get("uid", "")),
        subnet=annotations.get(keys.LOGICAL_SWITCH, "") if allocated else "",
        ips=_ips(annotations.get(keys.IP_ADDRESS, "")) if allocated else (),
        mac=annotations.get(keys.MAC_ADDRESS, "") if allocated else "",
        node=str(spec.get("nodeName") or ""),
        reservation=annotations.get(keys.RESERVATION, ""),
        terminal=status.get("phase") in TERMINAL_PHASES,
        host_network=bool(spec.get("hostNetwork")),
        routed=annotations.get(keys.ROUTED) == "true",
        deleting=bool(metadata.get("deletionTimestamp")),
        statefulset=sts,
        ordinal=ordinal,
        wanted_subnet=str(annotations.get(keys.LOGICAL_SWITCH, "")).strip(),
        deletion_deadline_s=_seconds(metadata.get("deletionTimestamp")),
        statefulset_uid=sts_uid,
        wanted_ips=() if allocated else _wanted_ips(annotations.get(keys.IP_ADDRESS, "")),
        labels=tuple(sorted((str(k), str(v)) for k, v in _labels(obj).items())),
        container_ports=_container_ports(spec),
    )


def _container_ports(spec: Mapping[str, Any]) -> tuple[ContainerPort, ...]:
    """The named and numbered ports of the pod's containers (malformed entries left out)."""
    found: list[ContainerPort] = []
    for container in spec.get("containers") or []:
        if not isinstance(container, Mapping):
            continue
        for port in container.get("ports") or []:
            if not isinstance(port, Mapping):
                continue
            number = port.get("containerPort")
            if isinstance(number, int) and not isinstance(number, bool):
                found.append(ContainerPort(str(port.get("name") or ""), number,
                                           str(port.get("protocol") or "TCP").upper()))
    return tuple(found)


def _seconds(timestamp: Any) -> float:
    """An RFC 3339 timestamp as Unix seconds; 0 for none or a malformed one."""
    if not isinstance(timestamp, str) or not timestamp:
        return 0.0
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def node_ready(obj: Mapping[str, Any] | None) -> bool:
    """Whether a Node object reports ``Ready=True``."""
    status = (obj or {}).get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    return any(isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
               for c in conditions or [])


def _wanted_ips(text: str) -> tuple[IPAddress, ...]:
    """A static address asked for; a malformed one is no request (adoption gives any)."""
    try:
        return _ips(str(text))
    except Unusable:
        return ()


def statefulset_of(metadata: Mapping[str, Any]) -> tuple[str, int]:
    """(StatefulSet name, ordinal) when the pod is ``<sts>-<N>`` owned by one."""
    owners = metadata.get("ownerReferences") or []
    name = str(metadata.get("name", ""))
    for owner in owners if isinstance(owners, list) else []:
        if isinstance(owner, Mapping) and owner.get("kind") == "StatefulSet":
            sts = str(owner.get("name", ""))
            ordinal = names.statefulset_ordinal(name, sts)
            if ordinal is not None:
                return sts, ordinal
    return "", -1


@dataclass(frozen=True)
class NodeView:
    name: str
    uid: str
    internal_ips: tuple[IPAddress, ...]
    labels: Mapping[str, str] = field(default_factory=dict)


def parse_node(obj: Mapping[str, Any]) -> NodeView:
    metadata = _metadata(obj)
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    assert isinstance(status, Mapping)
    addresses = status.get("addresses") or []
    internal: list[IPAddress] = []
    for address in addresses if isinstance(addresses, list) else []:
        if isinstance(address, Mapping) and address.get("type") == "InternalIP":
            try:
                internal.append(ipaddress.ip_address(str(address.get("address"))))
            except ValueError:
                continue
    name = str(metadata.get("name", ""))
    if not name:
        raise Unusable("node without a name")
    return NodeView(name, str(metadata.get("uid", "")), tuple(internal), dict(_labels(obj)))


@dataclass(frozen=True)
class ServicePort:
    name: str
    protocol: str
    port: int
    node_port: int
    target_port: int | str


@dataclass(frozen=True)
class ServiceView:
    namespace: str
    name: str
    cluster_ips: tuple[IPAddress, ...]
    external_ips: tuple[IPAddress, ...]
    ports: tuple[ServicePort, ...]
    affinity_timeout_s: int
    """0 without ``sessionAffinity: ClientIP``."""
    headless: bool

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


DEFAULT_AFFINITY_TIMEOUT_S = 10800


def parse_service(obj: Mapping[str, Any]) -> ServiceView:
    metadata = _metadata(obj)
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    cluster_ip_texts = spec.get("clusterIPs") or [spec.get("clusterIP")]
    headless = "None" in cluster_ip_texts or spec.get("clusterIP") == "None"
    cluster_ips = () if headless else _ip_list(cluster_ip_texts)
    ports = tuple(
        ServicePort(
            name=str(port.get("name", "")),
            protocol=str(port.get("protocol", "TCP")).upper(),
            port=int(port.get("port", 0)),
            node_port=int(port.get("nodePort", 0) or 0),
            target_port=port.get("targetPort", port.get("port", 0)),
        )
        for port in spec.get("ports") or []
        if isinstance(port, Mapping)
    )
    timeout = 0
    if spec.get("sessionAffinity") == "ClientIP":
        config = spec.get("sessionAffinityConfig") or {}
        client_ip = config.get("clientIP") or {} if isinstance(config, Mapping) else {}
        timeout = int(client_ip.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT_S)
    return ServiceView(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        cluster_ips=cluster_ips,
        external_ips=_ip_list(spec.get("externalIPs") or []),
        ports=ports,
        affinity_timeout_s=timeout,
        headless=headless,
    )


def _ip_list(values: object) -> tuple[IPAddress, ...]:
    found: list[IPAddress] = []
    for value in values if isinstance(values, list) else []:
        try:
            found.append(ipaddress.ip_address(str(value)))
        except ValueError:
            continue
    return tuple(found)


@dataclass(frozen=True)
class Endpoint:
    ips: tuple[IPAddress, ...]
    ready: bool
    serving: bool
    terminating: bool


@dataclass(frozen=True)
class EndpointPort:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True)
class EndpointSliceView:
    namespace: str
    name: str
    service: str
    endpoints: tuple[Endpoint, ...]
    ports: tuple[EndpointPort, ...]

    @property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.service}"


def parse_endpoint_slice(obj: Mapping[str, Any]) -> EndpointSliceView:
    metadata = _metadata(obj)
    service = _labels(obj).get(SERVICE_NAME_LABEL, "")
    if not service:
        raise Unusable(f"EndpointSlice without the {SERVICE_NAME_LABEL} label")
    endpoints = []
    for endpoint in obj.get("endpoints") or []:
        if not isinstance(endpoint, Mapping):
            continue
        conditions = endpoint.get("conditions") or {}
        ready = conditions.get("ready")
        endpoints.append(Endpoint(
            ips=_ip_list(endpoint.get("addresses") or []),
            ready=ready is None or bool(ready),  # nil means ready, per the API
            serving=bool(conditions.get("serving", ready is None or ready)),
            terminating=bool(conditions.get("terminating", False)),
        ))
    ports = tuple(
        EndpointPort(str(p.get("name") or ""), str(p.get("protocol", "TCP")).upper(),
                     int(p.get("port") or 0))
        for p in obj.get("ports") or [] if isinstance(p, Mapping)
    )
    return EndpointSliceView(
        str(metadata.get("namespace", "")), str(metadata.get("name", "")), service,
        tuple(endpoints), ports,
    )
