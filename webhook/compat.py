"""Which Kube-OVN inputs podnet honours, and a refusal naming what it does not.

podnet is a drop-in for Kube-OVN's user-facing API, but not for all of Kube-OVN: no
VPCs, no underlay VLANs, no multi-NIC providers, no VIPs. A user
who brings a manifest using one of those must hear so at ``kubectl apply``, with the
field or annotation named. Letting it through would be worse than refusing: the pod
would run, on a network that behaves differently from the one asked for.

``check_object`` gives the verdict for any object, as the examples walk and the
admission webhook use it. Subnets and IPPools go through the IPAM's own parsers, which
refuse unsupported spec fields by name; pods, workload templates, namespaces and
everything else are checked here, by their ``ovn.kubernetes.io/*`` annotations and
Kube-OVN's provider-scoped form ``<provider>.kubernetes.io/<key>``.

Pure: plain mappings in, a ``Verdict`` out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ipam.errors import IpamError
from ipam.interconnect import IC_CONFIG_NAME, IC_CONFIG_NAMESPACE, IcConfigError, parse_ic_config
from ipam.pool import parse_ippool
from ipam.subnet import parse_subnet

OVN_DOMAIN = "ovn.kubernetes.io"
KUBE_OVN_GROUP = "kubeovn.io"

POD_ANNOTATIONS = frozenset({
    "ip_address", "mac_address", "ip_pool", "logical_switch", "ingress_rate", "egress_rate",
    # Written by podnet (or by Kube-OVN, to the same meaning); podnet rewrites them.
    "allocated", "cidr", "gateway", "routed",
})
"""``ovn.kubernetes.io/<key>`` a pod (or a workload's pod template) may carry."""

NAMESPACE_ANNOTATIONS = frozenset({"logical_switch"})

_ONLY_VALUES: Mapping[str, tuple[str, str]] = {
    "port_security": ("true", "podnet always enforces port security"),
    "pod_nic_type": ("veth-pair", "podnet attaches pods with a veth pair"),
}
"""Pod annotations accepted at the one value that describes what podnet always does."""

_WHY: Mapping[str, str] = {
    "routes": "custom routes",
    "ip_family": "per-pod IP family",
    "vip": "VIPs",
    "aaps": "allowed address pairs (VIPs)",
    "snat": "EIP/SNAT",
    "eip": "EIP/SNAT",
    "fip": "floating IPs",
    "mirror": "port mirroring",
    "port_security": "port security switching",
    "security_groups": "security groups",
    "dhcp-v4-options": "DHCP options",
    "dhcp-v6-options": "DHCP options",
    "logical_router": "VPCs",
    "vpc": "VPCs",
    "pod_nic_type": "NIC types",
    "ingress_burst": "burst limits",
    "egress_burst": "burst limits",
    "latency": "netem QoS",
    "jitter": "netem QoS",
    "limit": "netem QoS",
    "loss": "netem QoS",
    "default_route": "default route selection",
    "vlan_id": "VLAN underlay",
    "provider_network": "VLAN underlay",
    "north_gateway": "north gateways",
    "layer2_forward": "layer-2 forwarding",
    "bgp": "BGP",
    "virtualmachine": "KubeVirt VM addresses",
    "activation_strategy": "KubeVirt live migration",
    "exclude_ips": "namespace excludeIps",
}

KUBE_OVN_KEYS = frozenset(
    POD_ANNOTATIONS | set(_WHY) | {
        "port_vips", "vf", "vf_representor", "network_policy_for", "generate-hash",
    }
)
"""Every key Kube-OVN reads per provider (``pkg/util/const.go``): the provider-scoped
form ``<provider>.kubernetes.io/<key>[.<interface>]`` is recognised by these."""

_KINDS: Mapping[str, str] = {
    "Vip": "VIPs",
    "Vpc": "VPCs",
    "VpcNatGateway": "VPC NAT gateways",
    "VpcEgressGateway": "VPC egress gateways",
    "VpcDns": "VPC DNS",
    "OvnEip": "EIPs", "OvnFip": "floating IPs", "OvnSnatRule": "SNAT rules",
    "OvnDnatRule": "DNAT rules", "IptablesEIP": "EIPs", "IptablesFIPRule": "floating IPs",
    "IptablesSnatRule": "SNAT rules", "IptablesDnatRule": "DNAT rules",
    "ProviderNetwork": "VLAN underlay", "Vlan": "VLAN underlay",
    "SecurityGroup": "security groups", "QoSPolicy": "QoS policies",
    "SwitchLBRule": "switch load-balancer rules", "RouterLBRule": "router load-balancer rules",
    "IP": "Kube-OVN IP objects (podnet keeps addresses in the pod)",
    "BgpConf": "BGP", "EvpnConf": "EVPN", "DNSNameResolver": "DNS name resolvers",
}

WORKLOAD_TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
"""Where each workload kind keeps the pod template whose annotations its pods get."""

IC_CONFIG = (IC_CONFIG_NAMESPACE, IC_CONFIG_NAME)
MULTUS_DEFAULT_NETWORK = "v1.multus-cni.io/default-network"


@dataclass(frozen=True)
class Verdict:
    """Accepted, or refused with a reason naming the field or annotation."""

    accepted: bool
    reason: str = ""


ACCEPTED = Verdict(True)


def refused(reason: str) -> Verdict:
    return Verdict(False, reason)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(value).items() if v is not None}


def provider_of(key: str) -> tuple[str, str] | None:
    """``(provider, key)`` for Kube-OVN's ``<provider>.kubernetes.io/<key>[.<iface>]``."""
    domain, slash, name = key.partition("/")
    if not slash or domain == OVN_DOMAIN or not domain.endswith(".kubernetes.io"):
        return None
    base = name.split(".", 1)[0]
    if base not in KUBE_OVN_KEYS:
        return None
    return domain[: -len(".kubernetes.io")], name


def annotation_problem(key: str, value: str, supported: frozenset[str]) -> str | None:
    """Why podnet refuses the annotation ``key``, or None when it honours it."""
    if key == MULTUS_DEFAULT_NETWORK:
        return (f"annotation {key} is not supported by podnet (it replaces the pod's "
                "network; podnet is the pod's network)")
    scoped = provider_of(key)
    if scoped is not None:
        provider, _ = scoped
        return (f"annotation {key} is not supported by podnet (multi-NIC provider "
                f"{provider}: podnet gives a pod one interface, configured by "
                f"{OVN_DOMAIN}/* annotations)")
    domain, _, name = key.partition("/")
    if domain != OVN_DOMAIN or name in supported:
        return None
    only = _ONLY_VALUES.get(name)
    if only is not None and value.strip().lower() == only[0]:
        return None
    why = _WHY.get(name)
    detail = f"{why}" if why else "unknown to podnet"
    if only is not None:
        detail = f"{detail}; only {only[0]!r} is accepted: {only[1]}"
    return f"annotation {key} is not supported by podnet ({detail})"


def annotations_problem(
    annotations: Mapping[str, str], supported: frozenset[str] = POD_ANNOTATIONS,
    where: str = "",
) -> str | None:
    """Every refused annotation of one object, in one message (None if all are fine)."""
    problems = [
        problem for key in sorted(annotations)
        if (problem := annotation_problem(key, annotations[key], supported)) is not None
    ]
    if not problems:
        return None
    prefix = f"{where}: " if where else ""
    return prefix + "; ".join(problems)


def template_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod template of a workload object, if it is one."""
    path = WORKLOAD_TEMPLATES.get(str(obj.get("kind", "")))
    if path is None:
        return None
    current: Any = obj
    for step in path:
        current = _mapping(current).get(step)
    return _mapping(current)


def check_pod(pod: Mapping[str, Any]) -> Verdict:
    metadata = _mapping(pod.get("metadata"))
    problem = annotations_problem(_strings(metadata.get("annotations")))
    return refused(problem) if problem else ACCEPTED


def check_workload(obj: Mapping[str, Any]) -> Verdict:
    """A workload's pod template, checked as its pods would be at admission."""
    template = template_of(obj) or {}
    where = ".".join(WORKLOAD_TEMPLATES[str(obj.get("kind"))]) + ".metadata.annotations"
    own = _strings(_mapping(obj.get("metadata")).get("annotations"))
    problem = annotations_problem(
        _strings(_mapping(template.get("metadata")).get("annotations")), where=where
    ) or annotations_problem(own, frozenset(), "metadata.annotations")
    return refused(problem) if problem else ACCEPTED


def check_kube_ovn(obj: Mapping[str, Any]) -> Verdict:
    kind = str(obj.get("kind", ""))
    if kind in ("Subnet", "IPPool"):
        try:
            parse_subnet(obj) if kind == "Subnet" else parse_ippool(obj)
        except IpamError as exc:
            return refused(f"{kind} {_name(obj)}: {exc}")
        return ACCEPTED
    what = _KINDS.get(kind, "this kind")
    return refused(
        f"kind {kind} ({obj.get('apiVersion')}) is not supported by podnet ({what}); "
        "podnet implements Subnet and IPPool"
    )


def check_config_map(obj: Mapping[str, Any]) -> Verdict:
    metadata = _mapping(obj.get("metadata"))
    place = (str(metadata.get("namespace") or "kube-system"), str(metadata.get("name") or ""))
    if place != IC_CONFIG:
        return _generic(obj)
    data = obj.get("data")
    try:
        if data is not None and not isinstance(data, Mapping):
            raise IcConfigError("ovn-ic-config data: must be a map of strings")
        parse_ic_config(data)  # podnet ic acts on the same parse (podnet_ic.config)
    except IcConfigError as exc:
        return refused(f"ConfigMap kube-system/{exc}")
    return _generic(obj)


def check_attachment(obj: Mapping[str, Any]) -> Verdict:
    """A Multus NetworkAttachmentDefinition is podnet's business only if it asks Kube-OVN."""
    text = str(_mapping(obj.get("spec")).get("config") or "")
    try:
        config = _mapping(json.loads(text))
        kinds = {str(config.get("type")), str(_mapping(config.get("ipam")).get("type"))}
        uses_kube_ovn = "kube-ovn" in kinds
    except json.JSONDecodeError:
        uses_kube_ovn = "kube-ovn" in text
    if not uses_kube_ovn:
        return _generic(obj)
    return refused(
        f"NetworkAttachmentDefinition {_name(obj)} spec.config: type kube-ovn is not "
        "supported by podnet (multi-NIC providers)"
    )


def check_namespace(obj: Mapping[str, Any]) -> Verdict:
    annotations = _strings(_mapping(obj.get("metadata")).get("annotations"))
    problem = annotations_problem(annotations, NAMESPACE_ANNOTATIONS, "metadata.annotations")
    return refused(problem) if problem else ACCEPTED


def _generic(obj: Mapping[str, Any]) -> Verdict:
    """Any other kind: podnet reads no ``ovn.kubernetes.io`` annotation of it."""
    annotations = _strings(_mapping(obj.get("metadata")).get("annotations"))
    problem = annotations_problem(annotations, frozenset(), "metadata.annotations")
    return refused(f"{obj.get('kind')} {_name(obj)}: {problem}") if problem else ACCEPTED


def _name(obj: Mapping[str, Any]) -> str:
    metadata = _mapping(obj.get("metadata"))
    name = str(metadata.get("name") or metadata.get("generateName") or "(unnamed)")
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def check_object(obj: Mapping[str, Any]) -> Verdict:
    """Whether podnet honours ``obj`` as Kube-OVN would, or why it refuses it."""
    kind = str(obj.get("kind", ""))
    group = str(obj.get("apiVersion", "")).partition("/")[0]
    if group == KUBE_OVN_GROUP:
        return check_kube_ovn(obj)
    if kind == "Pod":
        return check_pod(obj)
    if kind in WORKLOAD_TEMPLATES:
        return check_workload(obj)
    if kind == "Namespace":
        return check_namespace(obj)
    if kind == "ConfigMap":
        return check_config_map(obj)
    if kind == "NetworkAttachmentDefinition":
        return check_attachment(obj)
    return _generic(obj)
