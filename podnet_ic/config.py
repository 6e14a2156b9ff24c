"""The IC controller's configuration: ``kube-system/ovn-ic-config`` (pure).

The parser lives in ``ipam.interconnect``, the library floor the webhook shares, so
that admission and the controller read the ConfigMap alike; this module names it for
the controller and takes the ConfigMap object as the API gives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ipam.interconnect import (
    DEFAULT_NB_PORT,
    DEFAULT_SB_PORT,
    DISABLED,
    IC_CONFIG_NAME,
    IC_CONFIG_NAMESPACE,
    IcConfig,
    IcConfigError,
    parse_ic_config,
)

__all__ = [
    "DEFAULT_NB_PORT", "DEFAULT_SB_PORT", "DISABLED", "IC_CONFIG_NAME",
    "IC_CONFIG_NAMESPACE", "IcConfig", "IcConfigError", "config_of", "parse_ic_config",
]


def config_of(config_map: Mapping[str, Any] | None) -> IcConfig:
    """The settings of the ConfigMap object (``None`` when it does not exist: disabled)."""
    if config_map is None:
        return DISABLED
    data = config_map.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise IcConfigError("ovn-ic-config data: must be a map of strings")
    return parse_ic_config(data)
