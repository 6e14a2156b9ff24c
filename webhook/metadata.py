"""What kube-apiserver's validation would refuse in a pod's labels and annotations.

Mutating admission runs before that validation, so a pod it refuses would otherwise
leave a reservation behind (freed by the sync worker's orphan sweep, but it held an
address meanwhile). These are the API server's own rules (apimachinery's
ValidateAnnotations and ValidateLabels), checked before anything is reserved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ipam.names import object_name_problem

TOTAL_ANNOTATION_BYTES = 256 * 1024
"""kube-apiserver's limit on all of one object's annotation keys and values together."""
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", re.ASCII)


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a qualified name (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or object_name_problem(prefix)):
        return "has a prefix that is not a DNS subdomain"
    if len(name) > 63 or not _NAME_PART.fullmatch(name):
        return ("is not a qualified name: at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit, after an optional DNS prefix/")
    return None


def label_value_problem(value: str) -> str | None:
    if value and (len(value) > 63 or not _NAME_PART.fullmatch(value)):
        return ("is not a label value: at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    return None


def metadata_problem(labels: Mapping[str, str], annotations: Mapping[str, str]) -> str | None:
    """The first thing the API server would refuse in these labels and annotations."""
    for key, value in labels.items():
        problem = qualified_name_problem(key)
        if problem:
            return f"metadata.labels {key[:64]!r}: {problem}"
        problem = label_value_problem(value)
        if problem:
            return f"metadata.labels {key[:64]}={value[:64]!r}: {problem}"
    size = 0
    for key, value in annotations.items():
        problem = qualified_name_problem(key)
        if problem:
            return f"metadata.annotations {key[:64]!r}: {problem}"
        size += len(key.encode()) + len(value.encode())
    if size > TOTAL_ANNOTATION_BYTES:
        return (f"metadata.annotations: {size} bytes in all, over the API server's limit "
                f"of {TOTAL_ANNOTATION_BYTES}")
    return None
