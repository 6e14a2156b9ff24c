"""Any served kind through the official client, by apiVersion and kind, as ``kubectl`` does.

``podnet up`` applies whatever a manifests folder holds (Namespaces, Subnets, Services,
Deployments, webhook configurations, ...) and the lab's controllers write pods, bindings,
statuses and EndpointSlices. The generated client has one method per kind and verb;
this is the one generic path over the same ``ApiClient`` (its configuration, its
credentials, its connection pool), addressed by the resource table of the lab's API
server. Calls are blocking; async callers run them in a thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from podnet.lab.objects import RESOURCES, KubeObject, Resource
from podnet_plumbing.kube import MERGE_PATCH, KubeError, NotFound

TIMEOUT_S = 30.0


class RestError(KubeError):
    """The API server refused a request; ``detail`` is its own message (what ``kubectl``
    prints after ``Error from server``)."""

    def __init__(self, message: str, status: int | None, detail: str) -> None:
        super().__init__(message, status)
        self.detail = detail


class RestNotFound(RestError, NotFound):
    """The object does not exist (HTTP 404)."""


def refusal(status: int, reason: str, body: str, what: str) -> RestError:
    detail = reason
    try:
        detail = str(json.loads(body)["message"])
    except (ValueError, TypeError, KeyError):
        detail = body.strip() or reason
    error = RestNotFound if status == 404 else RestError
    return error(f"{what}: {detail} (HTTP {status})", status, detail)


class Rest:
    """Create, read, patch and delete objects of any kind the lab serves."""

    def __init__(self, api: client.ApiClient, resources: Iterable[Resource] = RESOURCES) -> None:
        self.api = api
        self.resources = tuple(resources)

    def resource(self, kind: str, api_version: str | None = None) -> Resource:
        for resource in self.resources:
            if resource.kind == kind and api_version in (None, resource.api_version):
                return resource
        version = f" of {api_version}" if api_version else ""
        raise KubeError(f"the lab's API server does not serve {kind}{version}", 404)

    def path(self, resource: Resource, namespace: str = "", name: str = "",
             subresource: str = "") -> str:
        base = f"/apis/{resource.group}/{resource.version}" if resource.group else "/api/v1"
        if resource.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{resource.plural}"
        if name:
            base += f"/{quote(name)}"
        if subresource:
            base += f"/{subresource}"
        return base

    def call(self, method: str, path: str, body: Any = None, *,
             content_type: str = "application/json",
             query: Mapping[str, str] | None = None, what: str = "") -> Any:
        """One request; the decoded JSON answer, or a ``KubeError`` saying what failed."""
        url, headers = self._prepare(method, path, query)
        headers["Content-Type"] = content_type
        try:
            response = self.api.call_api(method, url, header_params=headers, body=body,
                                         _request_timeout=TIMEOUT_S)
            data: bytes = response.response.data
        except ApiException as exc:
            raise refusal(int(exc.status or 0), str(exc.reason or ""), str(exc.body or ""),
                          what or f"{method} {path}") from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise KubeError(f"{what or method + ' ' + path}: {exc}") from exc
        if not 200 <= response.status < 300:
            raise refusal(response.status, str(response.reason or ""),
                          data.decode(errors="replace"), what or f"{method} {path}")
        return json.loads(data) if data else None

    def _prepare(self, method: str, path: str,
                 query: Mapping[str, str] | None) -> tuple[str, dict[str, str]]:
        _, url, headers, _, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()),
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
        )
        return url, dict(headers)

    # --------------------------------------------------------------- verbs

    def create(self, obj: Mapping[str, Any], namespace: str = "") -> KubeObject:
        resource = self.resource(str(obj.get("kind")), str(obj.get("apiVersion")))
        namespace = namespace or str((obj.get("metadata") or {}).get("namespace") or "")
        if resource.namespaced and not namespace:
            namespace = "default"
        created: KubeObject = self.call("POST", self.path(resource, namespace), obj,
                                        what=f"creating {describe(obj)}")
        return created

    def get(self, kind: str, name: str, namespace: str = "") -> KubeObject | None:
        resource = self.resource(kind)
        try:
            found: KubeObject = self.call("GET", self.path(resource, namespace, name),
                                          what=f"reading {kind} {name}")
        except NotFound:
            return None
        return found

    def list(self, kind: str, namespace: str = "", label_selector: str = "") -> list[KubeObject]:
        resource = self.resource(kind)
        query = {"labelSelector": label_selector} if label_selector else None
        answer = self.call("GET", self.path(resource, namespace), query=query,
                           what=f"listing {resource.plural}")
        items: list[KubeObject] = answer.get("items") or []
        for item in items:
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        return items

    def patch(self, kind: str, name: str, patch: Any, namespace: str = "", *,
              subresource: str = "", content_type: str = MERGE_PATCH) -> KubeObject:
        resource = self.resource(kind)
        patched: KubeObject = self.call(
            "PATCH", self.path(resource, namespace, name, subresource), patch,
            content_type=content_type, what=f"patching {kind} {namespace_name(namespace, name)}")
        return patched

    def delete(self, kind: str, name: str, namespace: str = "",
               grace_s: int | None = None) -> KubeObject | None:
        """Delete an object (with its own grace period, or ``grace_s``); the server's
        answer (the object as deleted or now terminating, or a Status), or None when it
        was already gone."""
        resource = self.resource(kind)
        query = {} if grace_s is None else {"gracePeriodSeconds": str(grace_s)}
        try:
            answer: KubeObject = self.call(
                "DELETE", self.path(resource, namespace, name), query=query,
                what=f"deleting {kind} {namespace_name(namespace, name)}")
        except NotFound:
            return None
        return answer or {}

    def bind(self, namespace: str, name: str, node: str) -> None:
        """Place a pod on a node through ``pods/binding``, as kube-scheduler does."""
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": name, "namespace": namespace},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        self.call("POST", self.path(self.resource("Pod"), namespace, name, "binding"), binding,
                  what=f"binding pod {namespace}/{name} to {node}")


def namespace_name(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def describe(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") or f"{metadata.get('generateName') or ''}*"
    return f"{obj.get('kind')} {namespace_name(str(metadata.get('namespace') or ''), name)}"
