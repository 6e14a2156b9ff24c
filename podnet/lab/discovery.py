"""What kube-apiserver answers about itself, for the resources the lab serves: the
discovery documents (``/api``, ``/api/v1``, ``/apis``, ``/apis/{group}[/{version}]``,
``/version``) and server-side Tables for ``kubectl get``.

kubectl and client-go find every resource through discovery before they touch it (a
RESTMapper from kinds to paths, short names such as ``po`` and ``sts``, the ``all``
category); without it ``kubectl get pods`` fails before it sends a request. A Table is
what ``kubectl get`` asks for first; the lab's has the columns kubectl users know.
Pure functions of the resources and objects: the HTTP side is ``podnet.lab.apiserver``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from podnet.lab.objects import Resource, metadata, pod_ips, spec_of, timestamp_seconds

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "binding": ["create"],
                     "scale": ["get", "patch", "update"]}
SUBRESOURCE_KINDS = {"binding": ("", "", "Binding"), "scale": ("autoscaling", "v1", "Scale")}
"""Subresources whose kind is not the resource's: (group, version, kind; a group of its
own only where named)."""
SHORT_NAMES = {
    "pods": ["po"], "services": ["svc"], "deployments": ["deploy"], "statefulsets": ["sts"],
    "replicasets": ["rs"], "namespaces": ["ns"], "nodes": ["no"], "events": ["ev"],
    "resourcequotas": ["quota"], "configmaps": ["cm"], "endpointslices": [], "leases": [],
    "subnets": ["subnet"], "ippools": ["ippool"], "networkpolicies": ["netpol"],
    "adminnetworkpolicies": ["anp"], "baselineadminnetworkpolicies": ["banp"],
}
IN_ALL = frozenset({"pods", "services", "deployments", "statefulsets", "replicasets"})
"""The resources ``kubectl get all`` lists (their ``all`` category)."""
VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-podnet-lab",
           "platform": "linux/amd64"}


def document(resources: Sequence[Resource], path: str) -> dict[str, Any] | None:
    """The discovery document at ``path``, or None if ``path`` is not a discovery path."""
    parts = [part for part in path.split("/") if part]
    if parts == ["version"]:
        return dict(VERSION)
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}
    if parts == ["api", "v1"]:
        return resource_list(resources, "", "v1")
    if parts == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [group(name, versions) for name, versions in groups(resources)]}
    if len(parts) == 2 and parts[0] == "apis":
        found = dict(groups(resources)).get(parts[1])
        return None if found is None else {"apiVersion": "v1", **group(parts[1], found)}
    if len(parts) == 3 and parts[0] == "apis":
        return resource_list(resources, parts[1], parts[2])
    return None


def groups(resources: Iterable[Resource]) -> list[tuple[str, list[str]]]:
    """Every named group and its versions, in the order the resources list them."""
    found: dict[str, list[str]] = {}
    for resource in resources:
        if resource.group and resource.version not in found.setdefault(resource.group, []):
            found[resource.group].append(resource.version)
    return list(found.items())


def group(name: str, versions: Sequence[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{version}", "version": version} for version in versions]
    return {"kind": "APIGroup", "name": name, "versions": listed, "preferredVersion": listed[0]}


def resource_list(resources: Iterable[Resource], group_name: str, version: str
                  ) -> dict[str, Any] | None:
    served = [r for r in resources if (r.group, r.version) == (group_name, version)]
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for resource in served:
        entry: dict[str, Any] = {
            "name": resource.plural, "singularName": resource.kind.lower(),
            "namespaced": resource.namespaced, "kind": resource.kind, "verbs": VERBS,
            "shortNames": SHORT_NAMES.get(resource.plural, []),
        }
        if resource.plural in IN_ALL:
            entry["categories"] = ["all"]
        entries.append(entry)
        entries += [subresource_entry(resource, sub) for sub in resource.subresources]
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group_name}/{version}" if group_name else version,
            "resources": entries}


def subresource_entry(resource: Resource, sub: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": f"{resource.plural}/{sub}", "singularName": "",
                             "namespaced": resource.namespaced, "kind": resource.kind,
                             "verbs": SUBRESOURCE_VERBS.get(sub, ["get"])}
    if sub in SUBRESOURCE_KINDS:
        group_name, version, kind = SUBRESOURCE_KINDS[sub]
        entry["kind"] = kind
        if group_name:
            entry.update(group=group_name, version=version)
    return entry


# ------------------------------------------------------------------ tables


def wants_table(accept: str) -> bool:
    """Whether the client asked for a ``meta.k8s.io/v1`` Table (as ``kubectl get`` does)."""
    return any("as=Table" in part and "v=v1" in part and "g=meta.k8s.io" in part
               for part in accept.split(","))


def table(resource: Resource, items: Sequence[Mapping[str, Any]], revision: int,
          now: float | None = None,
          printer: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The Table ``kubectl get`` prints: the columns of the kind (``-o wide`` adds the
    ones of priority 1), a row per object with its partial metadata. A kind without
    columns of its own here takes its CRD's ``additionalPrinterColumns`` (``printer``)."""
    now = datetime.now(UTC).timestamp() if now is None else now
    columns, cells = COLUMNS.get(resource.kind) or (
        crd_columns(printer) if printer else (GENERIC_COLUMNS, _generic_cells))
    definitions = [{"name": name, "type": kind, "format": "name" if name == "Name" else "",
                    "description": description, "priority": priority}
                   for name, kind, priority, description in columns]
    rows = [{"cells": cells(obj, now),
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": dict(metadata(obj))}}
            for obj in items]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(revision)},
            "columnDefinitions": definitions, "rows": rows}


def age(obj: Mapping[str, Any], now: float) -> str:
    """kubectl's AGE: the largest unit or two (``45s``, ``3m12s``, ``5h``, ``12d``)."""
    created = timestamp_seconds(str(metadata(obj).get("creationTimestamp") or ""))
    if not created:
        return "<unknown>"
    seconds = max(0, int(now - created))
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s"
    if hours < 3:
        return f"{minutes}m"
    if hours < 48:
        return f"{hours}h"
    return f"{days}d"


def crd_columns(printer: Sequence[Mapping[str, Any]]) -> tuple[
        list[tuple[str, str, int, str]], Cells]:
    """A CRD's printer columns (simple ``.a.b`` JSON paths; dates shown as ages)."""
    columns = [("Name", "string", 0, "The object's name.")] + [
        (str(c.get("name")), "string" if c.get("type") == "date" else str(c.get("type")),
         int(c.get("priority") or 0), str(c.get("description") or ""))
        for c in printer]

    def cells(obj: Mapping[str, Any], now: float) -> list[Any]:
        found: list[Any] = [metadata(obj).get("name")]
        for column in printer:
            value = field_at(obj, str(column.get("jsonPath") or ""))
            if column.get("type") == "date":
                value = age({"metadata": {"creationTimestamp": value}}, now)
            found.append("" if value is None else value)
        return found

    return columns, cells


def field_at(obj: Any, path: str) -> Any:
    """The value at a dotted JSON path (``.spec.priority``), or None."""
    for part in path.strip(".").split("."):
        obj = obj.get(part) if isinstance(obj, Mapping) else None
    return obj


GENERIC_COLUMNS = [("Name", "string", 0, "The object's name."),
                   ("Age", "string", 0, "Time since the object was created.")]


def _generic_cells(obj: Mapping[str, Any], now: float) -> list[Any]:
    return [metadata(obj).get("name"), age(obj, now)]


def _pod_cells(pod: Mapping[str, Any], now: float) -> list[Any]:
    status = pod.get("status") or {}
    containers = spec_of(pod).get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    phase = "Terminating" if metadata(pod).get("deletionTimestamp") else str(
        status.get("phase") or "Pending")
    ips = pod_ips(pod)
    return [metadata(pod).get("name"), f"{ready}/{len(containers)}", phase, restarts,
            age(pod, now), ips[0] if ips else "<none>",
            spec_of(pod).get("nodeName") or "<none>"]


POD_COLUMNS = [
    ("Name", "string", 0, "The pod's name."),
    ("Ready", "string", 0, "Ready containers of all containers."),
    ("Status", "string", 0, "The pod's phase, or Terminating."),
    ("Restarts", "integer", 0, "Container restarts."),
    ("Age", "string", 0, "Time since the pod was created."),
    ("IP", "string", 1, "The pod's IP address."),
    ("Node", "string", 1, "The node the pod is bound to."),
]


def _subnet_cells(subnet: Mapping[str, Any], now: float) -> list[Any]:
    spec, status = spec_of(subnet), subnet.get("status") or {}
    cidr = str(spec.get("cidrBlock") or "")
    protocol = spec.get("protocol") or ("Dual" if "," in cidr else
                                        "IPv6" if ":" in cidr else "IPv4")
    counts = [status.get(field) for field in (
        "v4usingIPs", "v4availableIPs", "v6usingIPs", "v6availableIPs")]
    return [metadata(subnet).get("name"), spec.get("provider") or "ovn", protocol, cidr,
            bool(spec.get("private")), bool(spec.get("natOutgoing")),
            bool(spec.get("default")), *counts, age(subnet, now)]


SUBNET_COLUMNS = [
    ("Name", "string", 0, "The subnet's name."),
    ("Provider", "string", 0, "Who serves the subnet (ovn)."),
    ("Protocol", "string", 0, "IPv4, IPv6 or Dual."),
    ("CIDR", "string", 0, "The subnet's cidrBlock."),
    ("Private", "boolean", 0, "Whether only allowSubnets may reach it."),
    ("NAT", "boolean", 0, "Whether traffic out is masqueraded."),
    ("Default", "boolean", 0, "Whether it is the default subnet."),
    ("V4Used", "number", 0, "IPv4 addresses in use (status.v4usingIPs)."),
    ("V4Available", "number", 0, "IPv4 addresses free (status.v4availableIPs)."),
    ("V6Used", "number", 0, "IPv6 addresses in use (status.v6usingIPs)."),
    ("V6Available", "number", 0, "IPv6 addresses free (status.v6availableIPs)."),
    ("Age", "string", 0, "Time since the subnet was created."),
]

def _event_cells(event: Mapping[str, Any], now: float) -> list[Any]:
    involved = event.get("involvedObject") or {}
    seen = {"metadata": {"creationTimestamp": event.get("lastTimestamp")
                         or event.get("eventTime") or metadata(event).get("creationTimestamp")}}
    return [age(seen, now), event.get("type") or "", event.get("reason") or "",
            f"{str(involved.get('kind') or '').lower()}/{involved.get('name') or ''}",
            event.get("message") or "", metadata(event).get("name")]


EVENT_COLUMNS = [
    ("Last Seen", "string", 0, "When the event was last seen."),
    ("Type", "string", 0, "Normal or Warning."),
    ("Reason", "string", 0, "Why, in one word."),
    ("Object", "string", 0, "What it is about."),
    ("Message", "string", 0, "What happened."),
    ("Name", "string", 1, "The event's name."),
]


def _workload_cells(workload: Mapping[str, Any], now: float) -> list[Any]:
    spec, status = spec_of(workload), workload.get("status") or {}
    wanted = spec.get("replicas", 1)
    return [metadata(workload).get("name"), f"{status.get('readyReplicas', 0)}/{wanted}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0),
            age(workload, now)]


WORKLOAD_COLUMNS = [
    ("Name", "string", 0, "The workload's name."),
    ("Ready", "string", 0, "Ready replicas of those wanted."),
    ("Up-to-date", "integer", 0, "Replicas of the current template."),
    ("Available", "integer", 0, "Replicas available."),
    ("Age", "string", 0, "Time since it was created."),
]


def _statefulset_cells(workload: Mapping[str, Any], now: float) -> list[Any]:
    name, ready, _, _, created = _workload_cells(workload, now)
    return [name, ready, created]


STATEFULSET_COLUMNS = [WORKLOAD_COLUMNS[0], WORKLOAD_COLUMNS[1], WORKLOAD_COLUMNS[-1]]


def _service_cells(service: Mapping[str, Any], now: float) -> list[Any]:
    spec = spec_of(service)
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}"
                     for p in spec.get("ports") or [])
    return [metadata(service).get("name"), spec.get("type") or "ClusterIP",
            spec.get("clusterIP") or "<none>", "<none>", ports or "<none>", age(service, now)]


SERVICE_COLUMNS = [
    ("Name", "string", 0, "The service's name."),
    ("Type", "string", 0, "ClusterIP, NodePort, LoadBalancer or ExternalName."),
    ("Cluster-IP", "string", 0, "Its virtual IP."),
    ("External-IP", "string", 0, "Addresses outside the cluster."),
    ("Port(s)", "string", 0, "Its ports."),
    ("Age", "string", 0, "Time since it was created."),
]


def _node_cells(node: Mapping[str, Any], now: float) -> list[Any]:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    roles = ",".join(sorted(key.removeprefix("node-role.kubernetes.io/") for key in
                            metadata(node).get("labels") or {}
                            if key.startswith("node-role.kubernetes.io/"))) or "<none>"
    version = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
    return [metadata(node).get("name"), "Ready" if ready else "NotReady", roles,
            age(node, now), version]


NODE_COLUMNS = [
    ("Name", "string", 0, "The node's name."),
    ("Status", "string", 0, "Ready or NotReady."),
    ("Roles", "string", 0, "Its node-role labels."),
    ("Age", "string", 0, "Time since it was registered."),
    ("Version", "string", 0, "Its kubelet's version."),
]

def _lease_cells(lease: Mapping[str, Any], now: float) -> list[Any]:
    return [metadata(lease).get("name"), spec_of(lease).get("holderIdentity") or "",
            age(lease, now)]


LEASE_COLUMNS = [
    ("Name", "string", 0, "The lease's name."),
    ("Holder", "string", 0, "Who holds it (spec.holderIdentity)."),
    ("Age", "string", 0, "Time since it was created."),
]

Cells = Callable[[Mapping[str, Any], float], list[Any]]
COLUMNS: dict[str, tuple[list[tuple[str, str, int, str]], Cells]] = {
    "Pod": (POD_COLUMNS, _pod_cells),
    "Subnet": (SUBNET_COLUMNS, _subnet_cells),
    "Event": (EVENT_COLUMNS, _event_cells),
    "Deployment": (WORKLOAD_COLUMNS, _workload_cells),
    "StatefulSet": (STATEFULSET_COLUMNS, _statefulset_cells),
    "Service": (SERVICE_COLUMNS, _service_cells),
    "Node": (NODE_COLUMNS, _node_cells),
    "Lease": (LEASE_COLUMNS, _lease_cells),
}
