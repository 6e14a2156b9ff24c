"""The tests' local Kubernetes API. It is a test fixture: tests start it, drive it, stop it.

These machines have no kube-apiserver, yet podnet's Kubernetes-facing code must be tested
with the official ``kubernetes`` client exactly as it runs against a cluster. The server
is the lab's own (``podnet.lab.apiserver``, which ``podnet up`` runs as a process), here
run in a thread with its own event loop, with no admission and no defaulting unless a
test asks for them. See that module for what it serves and how it simplifies.
"""

from __future__ import annotations

from podnet.lab.apiserver import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    ApiError,
    ApiServer,
    ApiState,
    json_patch,
    merge_patch,
    selector,
)
from podnet.lab.objects import RESOURCES, KubeObject, Resource

KubeApi = ApiServer
"""The fixture: start it, point the official client at ``url``, drive it from tests."""

__all__ = [
    "JSON_PATCH", "MERGE_PATCH", "RESOURCES", "STRATEGIC_MERGE_PATCH", "ApiError", "ApiState",
    "KubeApi", "KubeObject", "Resource", "json_patch", "merge_patch", "selector",
]
