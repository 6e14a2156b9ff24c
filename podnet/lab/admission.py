"""Admission webhooks called as kube-apiserver calls them, for the lab's API server.

podnet's promise is that a pod's address is decided at admission and a bad request is
refused at ``kubectl apply``. In the lab that must be the real thing: the stored
``MutatingWebhookConfiguration`` and ``ValidatingWebhookConfiguration`` objects are read
and honoured the way kube-apiserver's admission plugins honour them:

- a webhook is called when one of its ``rules`` matches (operations, apiGroups,
  apiVersions, resources, scope) and its ``namespaceSelector`` and ``objectSelector``
  match. Requests to subresources (``pods/status``, ``pods/binding``) are not sent:
  podnet's rules name none;
- the request is an ``admission.k8s.io/v1`` AdmissionReview over HTTPS to
  ``clientConfig.url``, trusting ``clientConfig.caBundle``: a fresh uid, kind, resource,
  requestKind, requestResource, name and namespace when known (a Pod created with
  ``generateName`` has no name yet), operation, userInfo, object, oldObject, dryRun and
  the operation's options;
- mutating webhooks run first, in order, each seeing the previous one's result; the
  returned base64 JSONPatch is applied. Validating webhooks then run in parallel;
- a denial becomes the API error kube-apiserver returns: ``admission webhook "<name>"
  denied the request: <message>``, with the webhook's code (at least 400). A webhook
  that cannot be reached, times out (``timeoutSeconds``, default 10) or answers nonsense
  fails the request when ``failurePolicy`` is ``Fail`` (the default) and is skipped when
  it is ``Ignore``;
- a dry run is refused by webhooks whose ``sideEffects`` are not ``None`` or
  ``NoneOnDryRun``.

Webhook configurations are not themselves sent to webhooks, as in Kubernetes. Only
``clientConfig.url`` is supported: the lab has no Service network to reach
``clientConfig.service`` through, and saying so beats a silent skip.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from podnet.lab.apiserver import Attributes
from podnet.lab.apistore import (
    NAMESPACE_NAME_LABEL,
    ApiError,
    ApiState,
    Filter,
    json_patch,
    reason_for,
)
from podnet.lab.objects import KubeObject
from podnet.lab.selectors import labels_of, selector_matches

log = logging.getLogger(__name__)

REVIEW_VERSION = "admission.k8s.io/v1"
MUTATING = "MutatingWebhookConfiguration"
VALIDATING = "ValidatingWebhookConfiguration"
DEFAULT_TIMEOUT_S = 10.0
OPTIONS = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions",
           "CONNECT": "ConnectOptions"}


@dataclass(frozen=True)
class Webhook:
    """One entry of a webhook configuration's ``webhooks`` list."""

    name: str
    spec: Mapping[str, Any]

    @property
    def failure_policy(self) -> str:
        return str(self.spec.get("failurePolicy") or "Fail")

    @property
    def reinvoked_if_needed(self) -> bool:
        return self.spec.get("reinvocationPolicy") == "IfNeeded"

    @property
    def timeout_s(self) -> float:
        return float(self.spec.get("timeoutSeconds") or DEFAULT_TIMEOUT_S)

    @property
    def side_effects_on_dry_run(self) -> bool:
        return self.spec.get("sideEffects") not in ("None", "NoneOnDryRun")

    @property
    def client_config(self) -> Mapping[str, Any]:
        config = self.spec.get("clientConfig")
        return config if isinstance(config, Mapping) else {}


def rule_matches(rule: Mapping[str, Any], attributes: Attributes) -> bool:
    """One ``rules`` entry: operation, group, version, resource and scope all match."""
    resource = attributes.resource

    def among(key: str, value: str) -> bool:
        listed = [str(v) for v in rule.get(key) or []]
        return "*" in listed or value in listed

    resources = [str(r) for r in rule.get("resources") or []]
    resource_ok = resource.plural in resources or "*" in resources or "*/*" in resources
    scope = str(rule.get("scope") or "*")
    scope_ok = scope == "*" or (scope == "Namespaced") == resource.namespaced
    return (among("operations", attributes.operation) and among("apiGroups", resource.group)
            and among("apiVersions", resource.version) and resource_ok and scope_ok)


class WebhookAdmission:
    """The API server's admission: the stored webhook configurations, honoured."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def admit(self, attributes: Attributes) -> KubeObject | None:
        """Mutating, then validating admission, for requests that change nothing else in
        between (updates, deletes). Creates run the two apart: see ``mutate``."""
        obj = await self.mutate(attributes)
        await self.validate(replace(attributes, obj=obj))
        return obj

    async def mutate(self, attributes: Attributes) -> KubeObject | None:
        """The mutating webhooks in order, each seeing the previous one's result. As
        kube-apiserver does for ``reinvocationPolicy: IfNeeded``, a webhook that ran
        before a later one changed the object is called once more."""
        if attributes.resource.group == "admissionregistration.k8s.io":
            return attributes.obj
        obj = attributes.obj
        hooks = self.webhooks(MUTATING, attributes)
        changed_after: dict[str, bool] = {}
        for webhook in hooks:
            before = obj
            obj = await self._mutate(webhook, replace(attributes, obj=obj))
            if obj != before:
                changed_after = {name: True for name in changed_after}
            changed_after[webhook.name] = False
        for webhook in hooks:
            if changed_after.get(webhook.name) and webhook.reinvoked_if_needed:
                obj = await self._mutate(webhook, replace(attributes, obj=obj))
        return obj

    async def validate(self, attributes: Attributes) -> None:
        """The validating webhooks, in parallel; any denial refuses the request."""
        if attributes.resource.group == "admissionregistration.k8s.io":
            return
        await asyncio.gather(*(self._validate(webhook, attributes)
                               for webhook in self.webhooks(VALIDATING, attributes)))

    def webhooks(self, kind: str, attributes: Attributes) -> list[Webhook]:
        """The webhooks of every stored configuration of ``kind`` that match, in order."""
        configurations, _ = self.state.select(self.state.resource(kind), Filter())
        found = []
        for configuration in configurations:
            for spec in configuration.get("webhooks") or []:
                webhook = Webhook(str(spec.get("name") or ""), spec)
                if self._matches(webhook, attributes):
                    found.append(webhook)
        return found

    def _matches(self, webhook: Webhook, attributes: Attributes) -> bool:
        if not any(rule_matches(rule, attributes) for rule in webhook.spec.get("rules") or []):
            return False
        objects = [o for o in (attributes.obj, attributes.old) if o is not None]
        object_selector = webhook.spec.get("objectSelector")
        if not any(selector_matches(object_selector, labels_of(o)) for o in objects):
            return False
        return selector_matches(webhook.spec.get("namespaceSelector"),
                                self._namespace_labels(attributes))

    def _namespace_labels(self, attributes: Attributes) -> dict[str, str]:
        if attributes.resource.kind == "Namespace":
            return labels_of(attributes.obj or attributes.old)
        if not attributes.resource.namespaced:
            return {}
        namespace = self.state.find(self.state.resource("Namespace"), "", attributes.namespace)
        return labels_of(namespace) or {NAMESPACE_NAME_LABEL: attributes.namespace}

    async def _mutate(self, webhook: Webhook, attributes: Attributes) -> KubeObject | None:
        response = await self._call(webhook, attributes)
        if response is None or attributes.obj is None:
            return attributes.obj
        patch = response.get("patch")
        if not patch:
            return attributes.obj
        if response.get("patchType") != "JSONPatch":
            raise _call_failed(webhook, f"unsupported patchType {response.get('patchType')!r}")
        try:
            ops = json.loads(base64.b64decode(patch, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise _call_failed(webhook, f"the patch is not base64 JSON: {exc}") from exc
        try:
            return json_patch(attributes.obj, ops)
        except ApiError as exc:
            raise _call_failed(webhook, f"the patch does not apply: {exc.message}") from exc

    async def _validate(self, webhook: Webhook, attributes: Attributes) -> None:
        await self._call(webhook, attributes)

    async def _call(self, webhook: Webhook, attributes: Attributes) -> Mapping[str, Any] | None:
        """The webhook's response when it allowed the request; raises on a denial, and on
        a failure unless the webhook's failure policy ignores failures (then None)."""
        if attributes.dry_run and webhook.side_effects_on_dry_run:
            raise ApiError(400, "BadRequest", f'admission webhook "{webhook.name}" does not '
                           "support dry run")
        try:
            response = await self._post(webhook, review_request(attributes))
        except ApiError as exc:
            if webhook.failure_policy == "Ignore":
                log.warning("ignoring webhook %s (failurePolicy Ignore): %s", webhook.name,
                            exc.message)
                return None
            raise
        if not response.get("allowed"):
            raise denial(webhook.name, response.get("status") or {})
        return response

    async def _post(self, webhook: Webhook, review: Mapping[str, Any]) -> Mapping[str, Any]:
        url = webhook.client_config.get("url")
        if not url:
            raise _call_failed(webhook, "clientConfig.service is not reachable from the lab's "
                               "API server (it has no Service network); use clientConfig.url")
        uid = review["request"]["uid"]
        try:
            async with self._client().post(
                str(url), json=review, ssl=self._context(webhook),
                timeout=aiohttp.ClientTimeout(total=webhook.timeout_s),
            ) as answer:
                body = await answer.read()
                if answer.status != 200:
                    raise _call_failed(webhook, f"Post {url}: HTTP {answer.status}: "
                                       f"{body[:200].decode(errors='replace')}")
        except TimeoutError as exc:
            raise _call_failed(webhook, f"Post {url}: context deadline exceeded") from exc
        except aiohttp.ClientError as exc:
            raise _call_failed(webhook, f"Post {url}: {exc}") from exc
        return _response_of(webhook, body, uid)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        return self._session

    def _context(self, webhook: Webhook) -> ssl.SSLContext:
        bundle = str(webhook.client_config.get("caBundle") or "")
        if bundle not in self._contexts:
            if bundle:
                try:
                    pem = base64.b64decode(bundle).decode()
                    context = ssl.create_default_context(cadata=pem)
                except (binascii.Error, UnicodeDecodeError, ssl.SSLError) as exc:
                    raise _call_failed(webhook, f"clientConfig.caBundle: {exc}") from exc
            else:
                context = ssl.create_default_context()
            self._contexts[bundle] = context
        return self._contexts[bundle]


def review_request(attributes: Attributes) -> dict[str, Any]:
    """The AdmissionReview kube-apiserver sends for ``attributes``."""
    resource = attributes.resource
    gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    gvr = {"group": resource.group, "version": resource.version, "resource": resource.plural}
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "operation": attributes.operation,
        "userInfo": dict(attributes.user),
        "object": attributes.obj,
        "oldObject": attributes.old,
        "dryRun": attributes.dry_run,
        "options": {"kind": OPTIONS[attributes.operation], "apiVersion": "meta.k8s.io/v1"},
    }
    if attributes.name:
        request["name"] = attributes.name
    if resource.namespaced and attributes.namespace:
        request["namespace"] = attributes.namespace
    return {"apiVersion": REVIEW_VERSION, "kind": "AdmissionReview", "request": request}


def _response_of(webhook: Webhook, body: bytes, uid: str) -> Mapping[str, Any]:
    try:
        review = json.loads(body)
    except ValueError as exc:
        raise _call_failed(webhook, f"the answer is not JSON: {exc}") from exc
    response = review.get("response") if isinstance(review, dict) else None
    if not isinstance(response, dict):
        raise _call_failed(webhook, "the answer has no response")
    if response.get("uid") != uid:
        raise _call_failed(webhook, f"expected response.uid={uid!r}, "
                           f"got {response.get('uid')!r}")
    return response


def denial(name: str, status: Mapping[str, Any]) -> ApiError:
    """The error kube-apiserver returns for a webhook's denial (``ToStatusErr``)."""
    code = int(status.get("code") or 0)
    code = max(code, 400)
    denied_by = f'admission webhook "{name}" denied the request'
    if status.get("message"):
        message = f"{denied_by}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied_by}: {status['reason']}"
    else:
        message = f"{denied_by} without explanation"
    return ApiError(code, str(status.get("reason") or reason_for(code)), message)


def _call_failed(webhook: Webhook, why: str) -> ApiError:
    return ApiError(500, "InternalError", f'Internal error occurred: failed calling webhook '
                    f'"{webhook.name}": failed to call webhook: {why}')
