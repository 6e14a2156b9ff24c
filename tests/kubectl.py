"""Running the real ``kubectl`` against a lab API server, as a user would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

KUBECTL = shutil.which("kubectl")


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
