"""The one exception hierarchy of the node agent, each class carrying its CNI error code.

A runtime reads only the error JSON a plugin prints (``code``, ``msg``, ``details``), so
every failure, wherever it happens (the shim, the agent, netlink, OVSDB, the Kubernetes
API), is raised as or chained into a :class:`CniError` at the boundary. Codes 1-99 are
the spec's (1.0: 1-7 and 11; 1.1 adds 50 and 51 for STATUS); 100 and up are podnet's own.

Stdlib only and tiny: the ``podnet-cni`` shim imports it and must start fast.
"""

from __future__ import annotations

CNI_VERSION = "1.1.0"


class CniError(Exception):
    """A CNI call failed; ``str(error)`` is the message, ``details`` says more."""

    code = 999

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str = CNI_VERSION) -> dict[str, object]:
        body: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            body["details"] = self.details
        return body


# --- the spec's codes ----------------------------------------------------------------------


class IncompatibleVersion(CniError):
    code = 1


class UnsupportedField(CniError):
    code = 2


class UnknownContainer(CniError):
    code = 3


class InvalidEnvironment(CniError):
    """A CNI_* variable is missing or malformed, or the command is unknown."""

    code = 4


class IoFailure(CniError):
    code = 5


class DecodingFailure(CniError):
    """The network configuration on stdin (or a message on the socket) is not JSON."""

    code = 6


class InvalidConfig(CniError):
    code = 7


class TryAgainLater(CniError):
    """A transient condition: the runtime should retry the call later."""

    code = 11


class AgentUnreachable(TryAgainLater):
    """The node agent's socket is missing or refuses the connection."""


class PodNotReady(TryAgainLater):
    """The pod has no address yet, or its OVN port is not there yet."""


class PluginNotAvailable(CniError):
    """STATUS: the agent cannot serve ADD yet (node not bootstrapped)."""

    code = 50


# --- podnet's own codes --------------------------------------------------------------------


class PodNotFound(CniError):
    """Neither the Kubernetes API nor the IPAM knows the pod."""

    code = 100


class BadPodAnnotations(CniError):
    """The pod's podnet annotations cannot be used (malformed address, unknown subnet)."""

    code = 101


class PlumbingFailed(CniError):
    """A netlink operation (veth, address, route, qdisc) failed."""

    code = 102


class OvsFailed(CniError):
    """An Open_vSwitch database transaction failed."""

    code = 103


class PortNotInstalled(CniError):
    """ovn-controller did not report the pod's port installed in time."""

    code = 104


class CheckFailed(CniError):
    """CHECK found the attachment different from what it should be."""

    code = 105


class ProtocolError(CniError):
    """The shim and the agent could not understand each other."""

    code = 106


class InternalError(CniError):
    """A bug: an unexpected exception in the agent (logged there with its traceback)."""

    code = 199
