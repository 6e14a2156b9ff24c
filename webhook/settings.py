"""Settings of the webhook, as dataclasses passed in (no globals, no environment lookups).

``WebhookSettings`` is the admission policy, shared by the pure core and the adapters;
``ServerSettings`` is what the HTTPS process needs on top of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ipam.settings import RedisSettings
from webhook.errors import ConfigError

Operator = Literal["=", "!=", "exists", "!exists"]
DEFAULT_EXCLUDED_NAMESPACES = frozenset({"kube-system", "podnet-system"})
DEFAULT_TRUSTED_USERS = frozenset({
    "system:serviceaccount:podnet-system:podnet-webhook",
    "system:serviceaccount:podnet-system:podnet-sync",
})
MAX_BODY_BYTES = 7 * 1024 * 1024
MAX_EXTENDER_BODY_BYTES = 64 * 1024 * 1024
"""ExtenderArgs carry every candidate Node object: a few KiB each, thousands of nodes."""


@dataclass(frozen=True)
class LabelRequirement:
    """One term of a label selector: ``k=v``, ``k!=v``, ``k`` or ``!k``."""

    key: str
    operator: Operator
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!exists":
            return self.key not in labels
        if self.operator == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


@dataclass(frozen=True)
class LabelSelector:
    """Requirements that must all hold (the ``kubectl -l`` equality syntax)."""

    requirements: tuple[LabelRequirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return bool(self.requirements) and all(r.matches(labels) for r in self.requirements)

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """``app=x,tier!=db,canary,!legacy``; refuses set-based syntax by name."""
        requirements: list[LabelRequirement] = []
        for raw in (item.strip() for item in text.split(",")):
            if not raw:
                continue
            if " in " in raw or "(" in raw:
                raise ConfigError(f"label selector {text!r}: set-based terms are not supported")
            if "!=" in raw:
                key, _, value = raw.partition("!=")
                requirements.append(LabelRequirement(key.strip(), "!=", value.strip()))
            elif "=" in raw:
                key, _, value = raw.partition("=")
                requirements.append(LabelRequirement(key.strip().rstrip("="), "=", value.strip()))
            elif raw.startswith("!"):
                requirements.append(LabelRequirement(raw[1:].strip(), "!exists"))
            else:
                requirements.append(LabelRequirement(raw, "exists"))
        if any(not r.key for r in requirements):
            raise ConfigError(f"label selector {text!r}: a term has no key")
        return cls(tuple(requirements))


DEFAULT_SERVICE_CIDRS = ("10.96.0.0/12",)
"""kube-apiserver's default ``--service-cluster-ip-range``."""


@dataclass(frozen=True)
class WebhookSettings:
    """Admission policy."""

    excluded_namespaces: frozenset[str] = DEFAULT_EXCLUDED_NAMESPACES
    """Pods here are admitted unchanged (the cluster's own plumbing)."""
    excluded_selector: LabelSelector | None = None
    """Pods whose labels match are admitted unchanged."""
    reservation_ttl_s: float = 600.0
    """How long an address reserved at admission waits for its pod to be stored."""
    review_memo_ttl_s: int = 600
    """How long the answer to one AdmissionReview uid is remembered for retries."""
    catalog_cache_s: float = 1.0
    """How long the list of subnets and pools read from the IPAM is reused."""
    service_cidrs: tuple[str, ...] = DEFAULT_SERVICE_CIDRS
    """The cluster's Service CIDRs (kube-apiserver's ``--service-cluster-ip-range``): no
    pod subnet may overlap them."""
    trusted_users: frozenset[str] = DEFAULT_TRUSTED_USERS
    """Who may change podnet's own pod annotations: podnet's service accounts."""
    require_rebuilt: bool = False
    """Give out no new address in a subnet until the sync worker has rebuilt its index on
    the Redis serving it now (after a restart or failover), see ``IpamSettings``. The
    ``podnet webhook`` command turns it on; a webhook without a sync worker turns it off.
    """


@dataclass(frozen=True)
class ServerSettings:
    """The HTTPS process: where it listens, its certificate, its store and its inputs."""

    tls_cert: Path
    tls_key: Path
    host: str = "0.0.0.0"
    port: int = 8443
    redis: RedisSettings = field(default_factory=RedisSettings)
    manifests: Path | None = None
    rescan_s: float = 10.0
    """How often the manifests folder is checked for changes."""
    kubeconfig: Path | None = None
    in_cluster: bool = False
    """With either, Subnets, IPPools and Namespaces are followed in the Kubernetes API."""
    tls_reload_s: float = 5.0
    client_ca: Path | None = None
    """When set, the admission and extender routes and /metrics serve only clients with a
    certificate signed by this CA (kube-apiserver's ``--admission-control-config-file``
    kubeconfig gives it one); /healthz and /readyz stay open for kubelet's probes."""
    """How often the certificate files are checked for rotation."""
    max_body_bytes: int = MAX_BODY_BYTES
    max_extender_body_bytes: int = MAX_EXTENDER_BODY_BYTES
    webhook: WebhookSettings = field(default_factory=WebhookSettings)

    @property
    def from_kube(self) -> bool:
        return self.in_cluster or self.kubeconfig is not None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8443`` for IPv6) into its parts."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"--listen {text}: expected HOST:PORT, e.g. 0.0.0.0:8443")
    return host.strip("[]") or "0.0.0.0", int(port_text)
