"""A CNI call as typed values: the command, the container, the pod, the configuration.

The runtime hands a plugin strings (``CNI_*`` variables, ``CNI_ARGS`` as ``K=V;K=V``)
and a JSON configuration. Everything the agent does starts from the :class:`CniCall`
parsed here, so malformed input is refused once, with the spec's error code and a
message naming the variable or field, before anything touches the node.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ipam import names
from node_agent import errors
from node_agent.qos import Bandwidth

if TYPE_CHECKING:
    from node_agent.protocol import Request

DEFAULT_NAMESPACE = "default"
CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", re.ASCII)
MAX_IFNAME = 15
VALID_ATTACHMENTS = "cni.dev/valid-attachments"


@dataclass(frozen=True)
class PodRef:
    """The pod a sandbox belongs to, from ``CNI_ARGS``."""

    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def port_name(self) -> str:
        """The pod's OVN logical switch port."""
        return names.pod_port(self.name, self.namespace)


@dataclass(frozen=True)
class NetConf:
    """The fields of the network configuration podnet reads."""

    cni_version: str
    name: str
    type: str
    mtu: int | None = None
    dns: Mapping[str, Any] | None = None
    bandwidth: Bandwidth | None = None
    """``runtimeConfig.bandwidth`` (the runtime's ``bandwidth`` capability), if given."""
    valid_attachments: tuple[tuple[str, str], ...] | None = None
    """GC: the (container id, ifname) pairs still in use."""
    prev_result: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CniCall:
    command: str
    container_id: str
    netns: str
    ifname: str
    pod: PodRef | None
    conf: NetConf


def parse_cni_args(text: str) -> dict[str, str]:
    """``K=V;K=V`` into a dict; a part without ``=`` is a malformed environment."""
    args: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise errors.InvalidEnvironment(f"podnet: CNI_ARGS part {part!r} is not KEY=VALUE")
        args[key.strip()] = value.strip()
    return args


def pod_ref(args: Mapping[str, str]) -> PodRef:
    """The pod of ``CNI_ARGS``: ``K8S_POD_NAME`` is needed, the namespace defaults to
    ``default`` (podman passes only the name)."""
    name = args.get("K8S_POD_NAME", "")
    if not name:
        raise errors.InvalidEnvironment(
            "podnet: CNI_ARGS has no K8S_POD_NAME",
            "podnet attaches pods: the runtime must say which pod the sandbox is for",
        )
    namespace = args.get("K8S_POD_NAMESPACE") or DEFAULT_NAMESPACE
    return PodRef(namespace, name, args.get("K8S_POD_UID", ""))


def check_container_id(value: str) -> str:
    if not value:
        raise errors.InvalidEnvironment("podnet: CNI_CONTAINERID is not set")
    if not CONTAINER_ID.fullmatch(value):
        raise errors.InvalidEnvironment(
            f"podnet: CNI_CONTAINERID {value!r} is not valid",
            "letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return value


def check_ifname(value: str) -> str:
    if not value:
        raise errors.InvalidEnvironment("podnet: CNI_IFNAME is not set")
    bad = len(value) > MAX_IFNAME or value in (".", "..") or any(
        ch in value for ch in "/: \t\n")
    if bad:
        raise errors.InvalidEnvironment(
            f"podnet: CNI_IFNAME {value!r} is not a valid interface name",
            f"at most {MAX_IFNAME} characters, no '/', ':' or spaces",
        )
    return value


MAX_PATH = 4096


def check_netns(value: str, command: str) -> str:
    """An absolute, normalised path of printable characters: the agent opens it to enter
    the namespace, so ``..`` and control characters have no business there."""
    if command in ("ADD", "CHECK") and not value:
        raise errors.InvalidEnvironment("podnet: CNI_NETNS is not set")
    if not value:
        return value
    shown = repr(value[:80])
    if not value.startswith("/") or len(value) > MAX_PATH:
        raise errors.InvalidEnvironment(
            f"podnet: CNI_NETNS {shown} is not an absolute path of at most {MAX_PATH} bytes")
    if not value.isprintable() or posixpath.normpath(value) != value:
        raise errors.InvalidEnvironment(
            f"podnet: CNI_NETNS {shown} is not a normalised path of printable characters",
            "no '..', '//' or control characters")
    return value


def parse_netconf(config: Mapping[str, Any]) -> NetConf:
    version = config.get("cniVersion", "")
    name = config.get("name", "")
    if not isinstance(version, str) or not isinstance(name, str):
        raise errors.InvalidConfig("podnet: cniVersion and name must be strings")
    mtu = config.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool)
                            or not 576 <= mtu <= 65535):
        raise errors.InvalidConfig(f"podnet: mtu {mtu!r} is not an integer in 576..65535")
    dns = config.get("dns")
    if dns is not None and not isinstance(dns, Mapping):
        raise errors.InvalidConfig("podnet: dns must be an object")
    prev = config.get("prevResult")
    return NetConf(
        cni_version=version or errors.CNI_VERSION,
        name=name,
        type=str(config.get("type", "")),
        mtu=mtu,
        dns=dns,
        bandwidth=_runtime_bandwidth(config.get("runtimeConfig")),
        valid_attachments=_valid_attachments(config.get(VALID_ATTACHMENTS)),
        prev_result=prev if isinstance(prev, Mapping) else None,
    )


def _runtime_bandwidth(runtime: object) -> Bandwidth | None:
    """The ``bandwidth`` capability: ``ingressRate``/``egressRate`` in bit/s."""
    if not isinstance(runtime, Mapping):
        return None
    bandwidth = runtime.get("bandwidth")
    if not isinstance(bandwidth, Mapping):
        return None
    rates: dict[str, float | None] = {}
    for key in ("ingressRate", "egressRate"):
        value = bandwidth.get(key)
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise errors.InvalidConfig(f"podnet: runtimeConfig.bandwidth.{key} {value!r} "
                                       "is not a non-negative number of bit/s")
        rates[key] = value / 1e6 if value else None
    return Bandwidth(ingress_mbps=rates["ingressRate"], egress_mbps=rates["egressRate"])


def _valid_attachments(value: object) -> tuple[tuple[str, str], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise errors.InvalidConfig(f"podnet: {VALID_ATTACHMENTS} must be a list")
    pairs = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("containerID"), str):
            raise errors.InvalidConfig(
                f"podnet: every {VALID_ATTACHMENTS} entry needs a containerID")
        pairs.append((item["containerID"], str(item.get("ifname", ""))))
    return tuple(pairs)


def parse_call(message: Request) -> CniCall:
    """The typed call of a request; raises a :class:`errors.CniError` when malformed."""
    command = message["command"]
    conf = parse_netconf(message["config"])
    if command in ("STATUS", "GC"):
        return CniCall(command, "", "", "", None, conf)
    if command not in ("ADD", "DEL", "CHECK"):
        raise errors.InvalidEnvironment(f"podnet: unknown CNI_COMMAND {command!r}")
    container_id = check_container_id(message["containerId"])
    ifname = check_ifname(message["ifname"])
    netns = check_netns(message["netns"], command)
    args = parse_cni_args(message["args"])
    pod = pod_ref(args) if command != "DEL" or args.get("K8S_POD_NAME") else None
    return CniCall(command, container_id, netns, ifname, pod, conf)
