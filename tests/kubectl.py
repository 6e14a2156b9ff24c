"""Running the real ``kubectl`` against a lab API server, as a user would."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

KUBECTL = shutil.which("kubectl")


def client_version() -> tuple[int, int]:
    """kubectl's (major, minor), or (0, 0) without one."""
    if KUBECTL is None:
        return (0, 0)
    shown = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], capture_output=True,
                           text=True, timeout=30, check=False).stdout
    try:
        version = json.loads(shown)["clientVersion"]
        return int(version["major"]), int(re.sub(r"\D.*", "", version["minor"]))
    except (ValueError, KeyError):
        return (0, 0)


MODERN = client_version() >= (1, 27)
"""Whether kubectl reads OpenAPI v3 (validation, ``explain``), as 1.27 and later do;
older ones (Debian 12 ships 1.20) want the protobuf OpenAPI v2 the lab does not serve."""


def run_kubectl(server: str, cache: Path, *args: str, stdin: str | None = None,
                kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """One ``kubectl`` call (with the lab admin's token unless a kubeconfig is given)."""
    assert KUBECTL is not None, "kubectl is not installed"
    who = [f"--kubeconfig={kubeconfig}"] if kubeconfig else [
        f"--server={server}", "--token=podnet-lab:admin"]
    return subprocess.run([KUBECTL, *who, f"--cache-dir={cache}", *args], input=stdin,
                          capture_output=True, text=True, timeout=180, check=False)


def kubectl_ok(server: str, cache: Path, *args: str, stdin: str | None = None,
               kubeconfig: Path | None = None) -> str:
    """A ``kubectl`` call that must succeed: its stdout (with stderr on failure)."""
    result = run_kubectl(server, cache, *args, stdin=stdin, kubeconfig=kubeconfig)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout
