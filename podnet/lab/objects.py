"""The Kubernetes vocabulary the lab's modules share: the served resources, object
accessors, readiness, and kubeconfigs.

Kept apart from the API server and the controllers so that ``podnet up`` (and this
package's import) never loads the modules it runs as processes: ``python -m
podnet.lab.apiserver`` must be the first import of that module in its process.
Pure functions over plain mappings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

KubeObject = dict[str, Any]
TOKEN_PREFIX = "podnet-lab:"
TERMINAL_PHASES = ("Succeeded", "Failed")
REPLICA_FAILURE = "ReplicaFailure"
FOREGROUND_DELETION = "foregroundDeletion"
"""The finalizer that holds an owner deleted in the foreground until its dependents go."""


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    custom: bool = False
    """Defined by a CustomResourceDefinition (its schema in ``manifests/crds/``)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def builtin(self) -> bool:
        """Built-in lists omit kind and apiVersion on their items; custom ones do not."""
        return not self.custom

    @property
    def key(self) -> str:
        """``plural.group`` (``pods`` for the core group), as ``kubectl`` names resources."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = (
    Resource("", "v1", "pods", "Pod", True, ("status", "binding")),
    Resource("", "v1", "namespaces", "Namespace", False, ("status",)),
    Resource("", "v1", "services", "Service", True, ("status",)),
    Resource("", "v1", "nodes", "Node", False, ("status",)),
    Resource("", "v1", "events", "Event", True),
    Resource("", "v1", "resourcequotas", "ResourceQuota", True, ("status",)),
    Resource("", "v1", "configmaps", "ConfigMap", True),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    Resource("apps", "v1", "deployments", "Deployment", True, ("status", "scale")),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ("status", "scale")),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, ("status", "scale")),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True),
    Resource("policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies",
             "AdminNetworkPolicy", False, ("status",), custom=True),
    Resource("policy.networking.k8s.io", "v1alpha1", "baselineadminnetworkpolicies",
             "BaselineAdminNetworkPolicy", False, ("status",), custom=True),
    Resource("kubeovn.io", "v1", "subnets", "Subnet", False, ("status",), custom=True),
    Resource("kubeovn.io", "v1", "ippools", "IPPool", False, ("status",), custom=True),
    Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
             "MutatingWebhookConfiguration", False),
    Resource("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
             "ValidatingWebhookConfiguration", False),
)


def now_timestamp(after_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=after_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp_seconds(text: str) -> float:
    """A ``now_timestamp`` as Unix seconds (0 for anything else)."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0



def metadata(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    found = (obj or {}).get("metadata")
    return found if isinstance(found, Mapping) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(metadata(obj).get("name") or "")


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(metadata(obj).get("namespace") or "")


def uid_of(obj: Mapping[str, Any]) -> str:
    return str(metadata(obj).get("uid") or "")


def key_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    return namespace_of(obj), name_of(obj)


def revision_of(obj: Mapping[str, Any]) -> int:
    try:
        return int(metadata(obj).get("resourceVersion") or 0)
    except ValueError:
        return 0


def spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    found = obj.get("spec")
    return found if isinstance(found, Mapping) else {}


def status_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    found = obj.get("status")
    return found if isinstance(found, Mapping) else {}


def replicas_of(obj: Mapping[str, Any]) -> int:
    replicas = spec_of(obj).get("replicas")
    return 1 if replicas is None else int(replicas)


def scale_of(workload: Mapping[str, Any]) -> KubeObject:
    """A workload's ``autoscaling/v1`` Scale (its selector as a label selector string;
    ``matchExpressions`` are not rendered)."""
    meta = metadata(workload)
    labels = (spec_of(workload).get("selector") or {}).get("matchLabels") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {key: meta[key] for key in (
                "name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if key in meta},
            "spec": {"replicas": replicas_of(workload)},
            "status": {"replicas": int(status_of(workload).get("replicas") or 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}


def controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for owner in metadata(obj).get("ownerReferences") or []:
        if isinstance(owner, Mapping) and owner.get("controller"):
            return owner
    return None


def controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == uid_of(owner)


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": owner.get("apiVersion"), "kind": owner.get("kind"),
            "name": name_of(owner), "uid": uid_of(owner), "controller": True,
            "blockOwnerDeletion": True}


def terminal(pod: Mapping[str, Any]) -> bool:
    return status_of(pod).get("phase") in TERMINAL_PHASES


def terminating(obj: Mapping[str, Any]) -> bool:
    """Deleted, but not gone yet: its grace period or finalizers hold it."""
    return bool(metadata(obj).get("deletionTimestamp"))


def pod_ips(pod: Mapping[str, Any]) -> list[str]:
    status = status_of(pod)
    ips = [str(entry.get("ip")) for entry in status.get("podIPs") or [] if entry.get("ip")]
    return ips or ([str(status["podIP"])] if status.get("podIP") else [])


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """The lab's readiness: phase ``Running`` with an IP."""
    return status_of(pod).get("phase") == "Running" and bool(pod_ips(pod))


def kubeconfig(server: str, username: str) -> dict[str, Any]:
    """A kubeconfig for ``server`` that names the caller ``username`` by its token."""
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "podnet-lab", "cluster": {"server": server}}],
        "users": [{"name": username, "user": {"token": f"{TOKEN_PREFIX}{username}"}}],
        "contexts": [{"name": "podnet-lab",
                      "context": {"cluster": "podnet-lab", "user": username}}],
        "current-context": "podnet-lab",
    }


def write_kubeconfig(path: Path, server: str, username: str) -> Path:
    """Write a kubeconfig (mode 0600: it carries the caller's token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig(server, username), sort_keys=False))
    return path
