"""The webhook's exception hierarchy: one root, one subclass per way a request can end.

The HTTP adapter maps them: ``MalformedReview`` and ``MalformedArgs`` are an HTTP 400
(the caller did not send an AdmissionReview, or ExtenderArgs, at all), ``Denial`` is an
ordinary admission answer with ``allowed: false`` and a message the user reads at
``kubectl apply``, and ``ConfigError`` stops the process before it serves anything.
Errors raised from a lower layer (the IPAM, YAML, ssl) are chained with ``from`` so the
cause survives.
"""

from __future__ import annotations

DENIED_BAD_REQUEST = 400
DENIED_FORBIDDEN = 403


class WebhookError(Exception):
    """Root of every error the webhook raises."""


class MalformedReview(WebhookError):
    """The body is not an ``admission.k8s.io/v1`` AdmissionReview request."""


class MalformedArgs(WebhookError):
    """The body is not the scheduler extender's ExtenderArgs."""


class Denial(WebhookError):
    """The object is refused; ``message`` names the field, the value and the reason."""

    def __init__(self, message: str, code: int = DENIED_FORBIDDEN) -> None:
        self.message = message
        self.code = code
        super().__init__(message)


class ConfigError(WebhookError):
    """The webhook's own settings are unusable (listen address, TLS files, manifests)."""
