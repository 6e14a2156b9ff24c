"""``podnet exec NAMESPACE/POD -- CMD...``: run a command in a lab pod's network.

The lab's pods have no containers, only a sandbox: the network namespace the lab's
kubelet made and ``podnet-cni`` plumbed. ``kubectl exec`` therefore has nothing to enter;
this command enters the sandbox instead, so a user can ``ping``, ``curl`` or ``nc`` from
a pod exactly as its traffic would leave it. The pod is named as kubectl names it and
looked up in the API server; its sandbox's name is derived from its UID, never from a
string the user typed, so the argument cannot point ``ip netns exec`` anywhere else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from podnet.lab.kubelet import sandbox_name
from podnet.lab.objects import spec_of, terminating
from podnet.lab.rest import Rest
from podnet.lab.settings import LabSettings
from podnet.ovn import netns_exists
from podnet_plumbing import kube

# A DNS-1123 label, as Kubernetes requires of namespaces, and of pod names a subdomain.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_POD = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class ExecError(RuntimeError):
    """The command cannot be run in that pod; the message says why."""


def parse_pod(text: str) -> tuple[str, str]:
    """``NAMESPACE/POD`` (or ``POD``, in ``default``) as (namespace, name)."""
    namespace, _, name = text.rpartition("/")
    namespace = namespace or "default"
    if not _NAMESPACE.fullmatch(namespace):
        raise ExecError(f"pod {text!r}: namespace {namespace!r} is not a valid namespace name")
    if not _POD.fullmatch(name):
        raise ExecError(f"pod {text!r}: {name!r} is not a valid pod name")
    return namespace, name


def sandbox_of(settings: LabSettings, rest: Rest, namespace: str, name: str) -> str:
    """The network namespace of a running lab pod, or an ``ExecError`` saying why not."""
    pod = rest.get("Pod", name, namespace)
    if pod is None:
        raise ExecError(f'pod "{name}" not found in namespace "{namespace}"')
    if terminating(pod):
        raise ExecError(f"pod {namespace}/{name} is terminating")
    if not spec_of(pod).get("nodeName"):
        raise ExecError(f"pod {namespace}/{name} is not scheduled to a node yet")
    sandbox = sandbox_name(settings.prefix, pod)
    if not netns_exists(sandbox):
        raise ExecError(f"pod {namespace}/{name} has no network yet (see "
                        f"`kubectl describe pod -n {namespace} {name}`)")
    return sandbox


def exec_in_pod(settings: LabSettings, pod: str, command: Sequence[str]) -> None:
    """Replace this process by ``command`` run in the pod's network namespace."""
    if not command:
        raise ExecError("no command given: podnet exec NAMESPACE/POD -- CMD [ARG...]")
    namespace, name = parse_pod(pod)
    kubeconfig = settings.kubeconfig("admin")
    if not kubeconfig.exists():
        raise ExecError(f"no lab is running here ({kubeconfig} is missing): run podnet up")
    sandbox = sandbox_of(settings, Rest(kube.kube_client(kubeconfig)), namespace, name)
    os.execvp("ip", ["ip", "netns", "exec", sandbox, *command])
