"""Kubernetes selector semantics the lab's API server and controllers need, in one place.

Label selectors (``matchLabels`` and ``matchExpressions``) decide which webhooks see a
request and which pods a ReplicaSet owns; node selector terms decide where a pod may
run. They follow the API's rules exactly, because podnet's webhook writes node affinity
that only works if the scheduler reads it as kube-scheduler does:

- a label selector's requirements are ANDed; an absent or empty selector matches
  everything (webhook ``namespaceSelector``/``objectSelector``, Deployment selectors);
- node selector terms are ORed, the requirements inside one term ANDed; a term with no
  requirement at all matches no node;
- ``NotIn`` and ``DoesNotExist`` hold for a missing label; ``Gt``/``Lt`` compare one
  integer; ``matchFields`` supports ``metadata.name`` (what DaemonSet pods use).

Pure functions over plain mappings: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def labels_of(obj: Mapping[str, Any] | None) -> dict[str, str]:
    metadata = (obj or {}).get("metadata") or {}
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


def expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """One ``matchExpressions`` entry (label selector or node selector operators)."""
    key = str(expression.get("key") or "")
    operator = str(expression.get("operator") or "")
    values = [str(v) for v in expression.get("values") or []]
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A ``LabelSelector``; absent or empty matches everything."""
    if not selector:
        return True
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(str(k)) != str(v) for k, v in wanted.items()):
        return False
    return all(expression_holds(e, labels) for e in selector.get("matchExpressions") or [])


def equality_selector_matches(selector: Mapping[str, Any] | None,
                              labels: Mapping[str, str]) -> bool:
    """A Service's (or nodeSelector's) plain map: every pair must be present."""
    return all(labels.get(str(k)) == str(v) for k, v in (selector or {}).items())


def term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """One ``nodeSelectorTerm``: all its requirements hold (and it has at least one)."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = labels_of(node)
    name = str((node.get("metadata") or {}).get("name") or "")
    field_values = {"metadata.name": name}
    return all(expression_holds(e, labels) for e in expressions) and all(
        str(f.get("key")) in field_values and expression_holds(f, field_values)
        for f in fields
    )


def required_terms(pod: Mapping[str, Any]) -> Sequence[Mapping[str, Any]] | None:
    """The pod's required node affinity terms; None when it has none."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get(REQUIRED)
    if not isinstance(required, Mapping):
        return None
    terms = required.get("nodeSelectorTerms")
    return terms if isinstance(terms, list) else None


def misfit(pod: Mapping[str, Any], node: Mapping[str, Any]) -> str | None:
    """Why ``pod`` may not run on ``node`` (kube-scheduler's wording), or None if it may."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return "node(s) were unschedulable"
    if not node_ready(node):
        return "node(s) were not ready"
    taint = untolerated_taint(pod, node)
    if taint is not None:
        return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    node_selector = (pod.get("spec") or {}).get("nodeSelector")
    if not equality_selector_matches(node_selector, labels_of(node)):
        return "node(s) didn't match Pod's node affinity/selector"
    terms = required_terms(pod)
    if terms is not None and not any(term_matches(t, node) for t in terms):
        return "node(s) didn't match Pod's node affinity/selector"
    return None


def untolerated_taint(pod: Mapping[str, Any], node: Mapping[str, Any]
                      ) -> Mapping[str, Any] | None:
    """The first NoSchedule or NoExecute taint of ``node`` that no toleration of ``pod``
    tolerates (kube-scheduler's TaintToleration filter), or None."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue  # PreferNoSchedule only scores
        if not any(tolerates(toleration, taint) for toleration in tolerations):
            return dict(taint)
    return None


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Whether one toleration tolerates one taint, as the core API defines it."""
    if toleration.get("effect") not in (None, "", taint.get("effect")):
        return False
    operator = toleration.get("operator") or "Equal"
    if not toleration.get("key"):
        return operator == "Exists"  # an empty key with Exists tolerates everything
    if toleration.get("key") != taint.get("key"):
        return False
    return operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or "")


def node_ready(node: Mapping[str, Any]) -> bool:
    """The node's ``Ready`` condition is ``True`` (a node with no conditions is not ready)."""
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
