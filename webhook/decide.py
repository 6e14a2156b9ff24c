"""What a pod asks for, decided from the pod, its namespace and the known subnets/pools.

Pure: plain mappings and IPAM specs in, a ``Plan`` (or ``Skip``) out, and a ``Denial``
or a typed IPAM error naming the annotation when the request cannot work. The same
decision serves a real admission and a dry run, so a dry run refuses exactly what a
real one would.

Annotations podnet does not honour (``webhook.compat``) are refused by name before
anything else is decided.

Subnet choice, first match wins: the pod's ``ovn.kubernetes.io/logical_switch``; the
subnet of the IPPool its ``ip_pool`` names; the namespace's binding
(``Subnet.spec.namespaces``, then the namespace annotation); the default subnet. A pod
that names no address or pool, in a namespace that IPPools bind (``IPPool.spec
.namespaces``), takes its address from those pools, as in Kube-OVN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ipam import annotations as keys
from ipam import names
from ipam.addresses import IPAddress
from ipam.pool import IPPoolSpec, Pool, Span, looks_like_pool_name, parse_pool_annotation
from ipam.rates import rate_problem
from ipam.requests import ReserveRequest, parse_static_ips, static_mac, static_request
from ipam.subnet import DEFAULT_SUBNET, SubnetSpec
from webhook.compat import annotations_problem
from webhook.errors import DENIED_BAD_REQUEST, DENIED_FORBIDDEN, Denial
from webhook.metadata import metadata_problem
from webhook.patch import affinity_problem
from webhook.settings import WebhookSettings


@dataclass(frozen=True)
class NamespaceInfo:
    """A namespace's labels and annotations (empty when podnet has not seen it)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    """The subnets and IPPools the IPAM knows, as one snapshot."""

    subnets: tuple[SubnetSpec, ...]
    pools: tuple[IPPoolSpec, ...] = ()

    def subnet(self, name: str) -> SubnetSpec | None:
        return next((s for s in self.subnets if s.name == name), None)

    def pool(self, name: str) -> IPPoolSpec | None:
        return next((p for p in self.pools if p.name == name), None)

    @property
    def default_name(self) -> str:
        marked = next((s for s in self.subnets if s.default), None)
        return marked.name if marked else DEFAULT_SUBNET


@dataclass(frozen=True)
class Workload:
    """What created the pod, in the words of a message: ``Deployment default/web``."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Skip:
    """The pod is admitted unchanged, and why."""

    reason: str


@dataclass(frozen=True)
class Plan:
    """The reservation to make for one pod."""

    namespace: str
    name: str
    workload: Workload
    subnet: SubnetSpec
    request: ReserveRequest
    node_selector: Mapping[str, str]
    reservation: str = ""
    """The token the pod already carries (a re-invocation), or empty."""
    pool_label: str = "ip_pool"
    """How a message names the pool: ``ip_pool`` or ``ip_pool <IPPool name>``."""


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def metadata_of(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = pod.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def annotations_of(pod: Mapping[str, Any]) -> dict[str, str]:
    return _strings(metadata_of(pod).get("annotations"))


def labels_of(pod: Mapping[str, Any]) -> dict[str, str]:
    return _strings(metadata_of(pod).get("labels"))


def controller_of(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (kind, name) of the pod's controlling owner (else its first owner), if any."""
    owners = metadata_of(pod).get("ownerReferences")
    if not isinstance(owners, list):
        return None
    first: Mapping[str, Any] | None = None
    for owner in owners:
        if isinstance(owner, Mapping) and owner.get("kind") and owner.get("name"):
            if owner.get("controller") is True:
                return str(owner["kind"]), str(owner["name"])
            first = first or owner
    return (str(first["kind"]), str(first["name"])) if first else None


def _label(pod: Mapping[str, Any], key: str) -> str:
    """``labels_of(pod).get(key, "")``, without copying every label."""
    labels = metadata_of(pod).get("labels")
    value = labels.get(key) if isinstance(labels, Mapping) else None
    return "" if value is None else str(value)


def _workload(
    pod: Mapping[str, Any], namespace: str, name: str, owner: tuple[str, str] | None
) -> Workload:
    """The workload a pod belongs to, from its ``controller_of`` (worked out once by
    ``decide``, which needs it twice)."""
    if owner is None:
        generate = str(metadata_of(pod).get("generateName") or "")
        return Workload("pod", namespace, name or f"{generate}*")
    kind, owner_name = owner
    template_hash = _label(pod, "pod-template-hash")
    if kind == "ReplicaSet" and template_hash and owner_name.endswith(f"-{template_hash}"):
        return Workload("Deployment", namespace, owner_name[: -len(template_hash) - 1])
    return Workload(kind, namespace, owner_name)


def _ordinal(owner: tuple[str, str] | None, name: str) -> tuple[str, int] | None:
    if owner is None or owner[0] != "StatefulSet":
        return None
    ordinal = names.statefulset_ordinal(name, owner[1])
    return None if ordinal is None else (owner[1], ordinal)


def _check_names(pod: Mapping[str, Any], name: str) -> None:
    """Refuse, before anything is reserved, a name the API server would refuse after
    admission (its reservation would outlive the refusal)."""
    generate = str(metadata_of(pod).get("generateName") or "")
    problem = names.object_name_problem(name) if name else None
    if problem:
        raise Denial(f"metadata.name {name[:64]!r} {problem}", DENIED_BAD_REQUEST)
    problem = names.generate_name_problem(generate) if generate and not name else None
    if problem:
        raise Denial(f"metadata.generateName {generate[:64]!r} {problem}", DENIED_BAD_REQUEST)


def skip_reason(
    pod: Mapping[str, Any], namespace: str, settings: WebhookSettings
) -> str | None:
    spec = pod.get("spec")
    if isinstance(spec, Mapping) and spec.get("hostNetwork") is True:
        return "hostNetwork pod"
    if namespace in settings.excluded_namespaces:
        return f"namespace {namespace} is excluded"
    selector = settings.excluded_selector
    if selector is not None and selector.matches(labels_of(pod)):
        return "pod labels match the excluded selector"
    return None


def without_podnet_annotations(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``pod`` without what podnet wrote (except the chosen subnet)."""
    metadata = dict(metadata_of(pod))
    kept = {
        key: value for key, value in annotations_of(pod).items()
        if key == keys.LOGICAL_SWITCH or key not in keys.WRITTEN
    }
    metadata["annotations"] = kept
    return {**pod, "metadata": metadata}


def decide(
    pod: Mapping[str, Any],
    namespace: NamespaceInfo,
    catalog: Catalog,
    settings: WebhookSettings,
    name: str = "",
) -> Skip | Plan:
    """Decide the subnet and the reservation request for ``pod`` (or that it skips)."""
    reason = skip_reason(pod, namespace.name, settings)
    if reason is not None:
        return Skip(reason)
    name = str(metadata_of(pod).get("name") or name or "")
    _check_names(pod, name)
    annotations = annotations_of(pod)
    problem = metadata_problem(labels_of(pod), annotations) or affinity_problem(pod.get("spec"))
    if problem is not None:
        raise Denial(problem, DENIED_BAD_REQUEST)
    problem = annotations_problem(annotations)
    if problem is not None:
        raise Denial(problem, DENIED_BAD_REQUEST)
    for key in (keys.INGRESS_RATE, keys.EGRESS_RATE):
        rate = rate_problem(str(annotations.get(key) or ""))
        if rate:
            raise Denial(f"{key} {str(annotations[key])[:64]!r} {rate}", DENIED_BAD_REQUEST)
    owner = controller_of(pod)
    workload = _workload(pod, namespace.name, name, owner)
    named_pool = _named_pool(annotations, catalog, namespace.name)
    subnet = choose_subnet(annotations, named_pool, namespace, catalog)
    bound = None
    if keys.IP_ADDRESS not in annotations and not annotations.get(keys.IP_POOL, "").strip():
        bound = namespace_pool(
            catalog, namespace.name, subnet, explicit=bool(annotations.get(keys.LOGICAL_SWITCH))
        )
    sts = _ordinal(owner, name)
    sticky_key = names.sticky_key(namespace.name, *sts) if sts else ""
    mac = static_mac(annotations.get(keys.MAC_ADDRESS))
    request, pool_label = _request(
        annotations, subnet=subnet, named_pool=named_pool or bound, sts=sts,
        sticky_key=sticky_key, mac=mac,
    )
    if bound is not None:
        pool_label = f"IPPool {bound.name} (bound to namespace {namespace.name})"
    _check_foreign_pools(request, annotations, subnet, catalog, namespace.name)
    named_pool = named_pool or bound
    selector = node_selector_for(subnet, named_pool)
    return Plan(
        namespace=namespace.name,
        name=name,
        workload=workload,
        subnet=subnet,
        request=request,
        node_selector=selector,
        reservation=annotations.get(keys.RESERVATION, ""),
        pool_label=pool_label,
    )


def _named_pool(
    annotations: Mapping[str, str], catalog: Catalog, namespace: str
) -> IPPoolSpec | None:
    value = annotations.get(keys.IP_POOL, "").strip()
    if keys.IP_ADDRESS in annotations or not value or not looks_like_pool_name(value):
        return None
    pool = catalog.pool(value)
    if pool is None:
        raise Denial(f"{keys.IP_POOL} {value}: IPPool {value} does not exist",
                     DENIED_BAD_REQUEST)
    if pool.namespaces and namespace not in pool.namespaces:
        raise Denial(
            f"{keys.IP_POOL} {value}: IPPool {value} is not open to namespace {namespace} "
            f"(spec.namespaces: {', '.join(pool.namespaces)})", DENIED_BAD_REQUEST,
        )
    return pool


def choose_subnet(
    annotations: Mapping[str, str],
    named_pool: IPPoolSpec | None,
    namespace: NamespaceInfo,
    catalog: Catalog,
) -> SubnetSpec:
    """The pod's subnet, by the order in the module docstring."""
    requested = annotations.get(keys.LOGICAL_SWITCH, "").strip()
    if requested:
        if named_pool is not None and named_pool.subnet != requested:
            raise Denial(
                f"{keys.IP_POOL} {named_pool.name}: IPPool {named_pool.name} belongs to "
                f"subnet {named_pool.subnet}, but {keys.LOGICAL_SWITCH} asks for {requested}",
                DENIED_BAD_REQUEST,
            )
        chosen = _known(catalog, requested, f"{keys.LOGICAL_SWITCH} {requested}")
        _check_subnet_open(chosen, namespace, f"{keys.LOGICAL_SWITCH} {requested}")
        return chosen
    if named_pool is not None:
        chosen = _known(catalog, named_pool.subnet, f"IPPool {named_pool.name} spec.subnet")
        _check_subnet_open(chosen, namespace, f"{keys.IP_POOL} {named_pool.name}")
        return chosen
    bound = next((s for s in catalog.subnets if namespace.name in s.namespaces), None)
    if bound is not None:
        return bound
    by_annotation = namespace.annotations.get(keys.LOGICAL_SWITCH, "").strip()
    if by_annotation:
        return _known(
            catalog, by_annotation,
            f"namespace {namespace.name} annotation {keys.LOGICAL_SWITCH} {by_annotation}",
        )
    return _known(catalog, catalog.default_name, "the default subnet")


def namespace_pool(
    catalog: Catalog, namespace: str, subnet: SubnetSpec, *, explicit: bool = False
) -> IPPoolSpec | None:
    """The IPPools whose ``spec.namespaces`` bind ``namespace``, as one pool, if any.

    As in Kube-OVN, a pod of a bound namespace that asks for no address or pool takes
    its address only from the bound pools of its subnet, first pool (by name) first.
    When every bound pool belongs to another subnet the pod is denied, unless it chose
    its subnet with ``logical_switch``: that choice then wins.
    """
    bound = sorted(
        (pool for pool in catalog.pools if namespace in pool.namespaces), key=lambda p: p.name
    )
    usable = [pool for pool in bound if pool.subnet == subnet.name]
    if not usable:
        if bound and not explicit:
            names = ", ".join(f"{pool.name} (subnet {pool.subnet})" for pool in bound)
            raise Denial(
                f"namespace {namespace} is bound to IPPool {names} by spec.namespaces, but "
                f"its pods get subnet {subnet.name}; set {keys.LOGICAL_SWITCH} or "
                f"{keys.IP_POOL} on the pod to choose",
                DENIED_BAD_REQUEST,
            )
        return None
    selector: dict[str, str] = {}
    for pool in usable:
        for key, value in pool.node_selector.items():
            if selector.get(key, value) != value:
                raise Denial(
                    f"IPPool {pool.name} spec.nodeSelector {key}={value}: conflicts with "
                    f"another IPPool bound to namespace {namespace} ({key}={selector[key]})",
                    DENIED_BAD_REQUEST,
                )
            selector[key] = value
    return IPPoolSpec(
        name=",".join(pool.name for pool in usable),
        subnet=subnet.name,
        ips=tuple(ip for pool in usable for ip in pool.ips),
        namespaces=(namespace,),
        node_selector=selector,
    )


def _check_subnet_open(subnet: SubnetSpec, namespace: NamespaceInfo, source: str) -> None:
    """A ``private`` subnet admits only the namespaces an administrator gave it (its
    ``spec.namespaces``, or the Namespace's own annotation): a pod's annotation never
    joins one from outside, or ``private``/``allowSubnets`` would isolate nothing.

    Any other subnet may be chosen from any namespace, as in Kube-OVN, where
    ``spec.namespaces`` says which subnet a namespace's pods get by default."""
    if not subnet.private or namespace.name in subnet.namespaces:
        return
    given = namespace.annotations.get(keys.LOGICAL_SWITCH, "").strip() == subnet.name
    if not given:
        raise Denial(
            f"{source}: subnet {subnet.name} is private and namespace {namespace.name} is "
            "not one of its spec.namespaces", DENIED_FORBIDDEN,
        )


def _check_foreign_pools(request: ReserveRequest, annotations: Mapping[str, str],
                         subnet: SubnetSpec, catalog: Catalog, namespace: str) -> None:
    """Addresses inside an IPPool bound to other namespaces are theirs: a static
    ``ip_address`` or an inline ``ip_pool`` may not take them (Kube-OVN keeps a bound
    pool's range to its namespaces). A request for any address costs nothing here: the
    allocator holds every pool's addresses back from it."""
    wanted = _requested_spans(request)
    if not wanted:
        return
    for pool in catalog.pools:
        if pool.subnet != subnet.name or not pool.namespaces or namespace in pool.namespaces:
            continue
        if _overlaps(wanted, pool.resolve(subnet)):
            key = request.field if request.static_ips else keys.IP_POOL
            raise Denial(
                f"{key} {str(annotations.get(key, ''))[:64]}: takes addresses of IPPool "
                f"{pool.name}, which is bound to namespace {', '.join(pool.namespaces)}",
                DENIED_FORBIDDEN,
            )


def _requested_spans(request: ReserveRequest) -> list[Span]:
    if request.offsets:
        return [Span(4 if family == "4" else 6, int(offset), int(offset))
                for family, offset in request.offsets.items()]
    if request.pool is not None:
        return [span for entry in request.pool.entries for span in entry.spans]
    return []


def _overlaps(wanted: Sequence[Span], pool: Pool) -> bool:
    return any(want.family == span.family and want.low <= span.high and span.low <= want.high
               for entry in pool.entries for span in entry.spans for want in wanted)


def _known(catalog: Catalog, name: str, source: str) -> SubnetSpec:
    subnet = catalog.subnet(name)
    if subnet is None:
        raise Denial(f"{source}: subnet {name} does not exist", DENIED_BAD_REQUEST)
    return subnet


def _request(
    annotations: Mapping[str, str],
    *,
    subnet: SubnetSpec,
    named_pool: IPPoolSpec | None,
    sts: tuple[str, int] | None,
    sticky_key: str,
    mac: str | None,
) -> tuple[ReserveRequest, str]:
    static = annotations.get(keys.IP_ADDRESS)
    if static is not None:
        return static_request(subnet, parse_static_ips(static), mac=mac), "ip_pool"
    pool_text = annotations.get(keys.IP_POOL, "").strip()
    if not pool_text and named_pool is None:
        return ReserveRequest(mac=mac, sticky_key=sticky_key), "ip_pool"
    pool = named_pool.resolve(subnet) if named_pool else parse_pool_annotation(pool_text, subnet)
    label = f"ip_pool {named_pool.name}" if named_pool else "ip_pool"
    if sts is None:
        return ReserveRequest(pool=pool, mac=mac), label
    return _pool_position(
        pool, subnet, sts[1], sticky_key=sticky_key, mac=mac, label=label
    ), label


def _pool_position(
    pool: Pool, subnet: SubnetSpec, ordinal: int, *, sticky_key: str, mac: str | None, label: str
) -> ReserveRequest:
    offsets = pool.position(ordinal)
    if offsets is None:
        raise Denial(
            f"StatefulSet ordinal {ordinal} is past the end of {label} ({pool.size} entries)",
            DENIED_BAD_REQUEST,
        )
    addresses: list[IPAddress] = []
    for family, offset in sorted(offsets.items()):
        layout = subnet.layout(family)
        if layout is not None:
            addresses.append(layout.address_at(offset))
    return static_request(
        subnet, tuple(addresses), mac=mac, sticky_key=sticky_key, field=keys.IP_POOL
    )


def node_selector_for(subnet: SubnetSpec, pool: IPPoolSpec | None) -> dict[str, str]:
    """The node labels a pod of ``subnet`` (and ``pool``) needs: both selectors merged."""
    merged = dict(subnet.node_selector)
    for key, value in (pool.node_selector if pool else {}).items():
        if merged.get(key, value) != value:
            raise Denial(
                f"IPPool {pool.name if pool else ''} spec.nodeSelector {key}={value}: "
                f"conflicts with subnet {subnet.name} nodeSelector {key}={merged[key]}",
                DENIED_BAD_REQUEST,
            )
        merged[key] = value
    return merged
