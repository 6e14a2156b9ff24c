"""``kube-system/ovn-ic-config``: Kube-OVN's OVN-IC settings, parsed and checked (pure).

The webhook validates the ConfigMap with :func:`parse_ic_config` at admission, and the
IC controller (``podnet_ic``) acts on the same parse, so the two cannot disagree on what
a value means. Every value is data: the AZ name becomes part of OVN row names
(``<az>-ts``, ``ts-<az>``) and the hosts part of database remotes, so each is checked
against a strict shape here, and an error names the key, the value and the reason.

Keys (Kube-OVN's, unchanged): ``enable-ic``, ``az-name``, ``ic-db-host`` (one address
or a comma-separated raft cluster), ``ic-nb-port`` (default 6645), ``ic-sb-port``
(default 6646), ``gw-nodes`` (comma-separated node names), ``auto-route``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

IC_CONFIG_NAMESPACE = "kube-system"
IC_CONFIG_NAME = "ovn-ic-config"
DEFAULT_NB_PORT = 6645
DEFAULT_SB_PORT = 6646
KEYS = ("enable-ic", "az-name", "ic-db-host", "ic-nb-port", "ic-sb-port", "gw-nodes",
        "auto-route")
MAX_AZ_NAME = 32
"""OVN row names ``<az>-ts`` and ``ts-<az>`` stay short and readable."""
MAX_HOSTS = 7
"""A raft cluster of IC databases has 3 or 5 members; 7 is a generous bound."""
MAX_GW_NODES = 32
MAX_NODE_NAME = 253
MAX_VALUE = 4096

_AZ_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
"""Letters (lower case), digits, ``-`` and ``_``, starting and ending alphanumeric: safe
inside OVN row names, logical flow names and file names."""
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TRUE = ("true",)
_FALSE = ("false", "")


class IcConfigError(ValueError):
    """A value of ovn-ic-config is unusable; the message names the key, value and reason."""


@dataclass(frozen=True)
class IcConfig:
    """The settings of ``kube-system/ovn-ic-config``."""

    enabled: bool
    az_name: str = ""
    db_hosts: tuple[str, ...] = ()
    nb_port: int = DEFAULT_NB_PORT
    sb_port: int = DEFAULT_SB_PORT
    gw_nodes: tuple[str, ...] = ()
    auto_route: bool = False

    def remotes(self) -> tuple[str, str]:
        """The IC NB and IC SB remotes: ``tcp:H1:6645,tcp:H2:6645`` and the SB's."""
        return (_remote_list(self.db_hosts, self.nb_port),
                _remote_list(self.db_hosts, self.sb_port))

    @property
    def nb_remote(self) -> str:
        return self.remotes()[0]

    @property
    def sb_remote(self) -> str:
        return self.remotes()[1]


DISABLED = IcConfig(enabled=False)


def _remote_list(hosts: tuple[str, ...], port: int) -> str:
    return ",".join(f"tcp:[{h}]:{port}" if ":" in h else f"tcp:{h}:{port}" for h in hosts)


def _where(key: str, value: str) -> str:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return f"ovn-ic-config data.{key} {shown!r}"


def _boolean(data: Mapping[str, str], key: str) -> bool:
    value = data.get(key, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise IcConfigError(f"{_where(key, data[key])}: must be \"true\" or \"false\"")


def _port(data: Mapping[str, str], key: str, default: int) -> int:
    raw = data.get(key, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or len(raw) > 5 or not 1 <= int(raw) <= 65535:
        raise IcConfigError(f"{_where(key, raw)}: must be a TCP port, 1 to 65535")
    return int(raw)


def _host(key: str, raw: str, host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if (not name or len(name) > 253 or not all(_DNS_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):
        raise IcConfigError(
            f"{_where(key, raw)}: {host!r} is neither an IP address nor a DNS name")
    return name


def _members(data: Mapping[str, str], key: str, most: int, member: str,
             plural: str) -> list[str]:
    """A required comma-separated list: its members, each non-empty, at most ``most``
    (``member`` and ``plural`` name them in the errors)."""
    raw = data.get(key, "").strip()
    if not raw:
        raise IcConfigError(f"{_where(key, raw)}: is required when enable-ic is true")
    parts = [part.strip() for part in raw.split(",")]
    if any(not part for part in parts):
        raise IcConfigError(f"{_where(key, raw)}: has an empty {member}")
    if len(parts) > most:
        raise IcConfigError(f"{_where(key, raw)}: {len(parts)} {plural}, at most {most}")
    return parts


def _hosts(data: Mapping[str, str]) -> tuple[str, ...]:
    raw = data.get("ic-db-host", "").strip()
    parts = _members(data, "ic-db-host", MAX_HOSTS, "member", "hosts")
    hosts = tuple(_host("ic-db-host", raw, part) for part in parts)
    if len(set(hosts)) != len(hosts):
        raise IcConfigError(f"{_where('ic-db-host', raw)}: lists a host twice")
    return hosts


def _az_name(data: Mapping[str, str]) -> str:
    raw = data.get("az-name", "")
    name = raw.strip()
    if not name:
        raise IcConfigError(f"{_where('az-name', raw)}: is required when enable-ic is true")
    if len(name) > MAX_AZ_NAME:
        raise IcConfigError(f"{_where('az-name', raw)}: longer than {MAX_AZ_NAME} characters")
    if not _AZ_NAME.match(name):
        raise IcConfigError(
            f"{_where('az-name', raw)}: must be lower-case letters, digits, '-' and '_', "
            "starting and ending with a letter or digit")
    return name


def _gw_nodes(data: Mapping[str, str]) -> tuple[str, ...]:
    raw = data.get("gw-nodes", "").strip()
    parts = _members(data, "gw-nodes", MAX_GW_NODES, "node name", "nodes")
    for part in parts:
        labels = part.split(".")
        if len(part) > MAX_NODE_NAME or not all(_DNS_LABEL.match(label) for label in labels):
            raise IcConfigError(
                f"{_where('gw-nodes', raw)}: {part!r} is not a node name (DNS-1123 "
                "subdomain: lower-case letters, digits, '-' and '.')")
    if len(set(parts)) != len(parts):
        raise IcConfigError(f"{_where('gw-nodes', raw)}: lists a node twice")
    return tuple(parts)


def parse_ic_config(data: Mapping[str, object] | None) -> IcConfig:
    """The ConfigMap's ``data`` as an :class:`IcConfig`; :class:`IcConfigError` if bad.

    With ``enable-ic`` other than ``"true"`` nothing else is required, and the result
    is :data:`DISABLED`; the other values are still checked when given, so a typo does
    not wait for the day the user turns it on.
    """
    raw = dict(data or {})
    strings: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise IcConfigError(f"ovn-ic-config data.{key}: must be a string")
        if len(value) > MAX_VALUE:
            raise IcConfigError(f"ovn-ic-config data.{key}: longer than {MAX_VALUE} characters")
        strings[str(key)] = value
    enabled = _boolean(strings, "enable-ic")
    auto_route = _boolean(strings, "auto-route")
    nb_port = _port(strings, "ic-nb-port", DEFAULT_NB_PORT)
    sb_port = _port(strings, "ic-sb-port", DEFAULT_SB_PORT)
    if nb_port == sb_port:
        raise IcConfigError(f"{_where('ic-sb-port', str(sb_port))}: the same port as "
                            "ic-nb-port; the IC NB and IC SB need a port each")
    if not enabled:
        for key, check in (("az-name", _az_name), ("ic-db-host", _hosts),
                           ("gw-nodes", _gw_nodes)):
            if strings.get(key, "").strip():
                check(strings)
        return DISABLED
    return IcConfig(True, _az_name(strings), _hosts(strings), nb_port, sb_port,
                    _gw_nodes(strings), auto_route)
