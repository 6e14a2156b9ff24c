"""Test certificates made with the ``openssl`` CLI: a self-signed server certificate for
127.0.0.1 and localhost, and a client context that trusts exactly that certificate."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path


def make_certificate(folder: Path, name: str = "webhook") -> tuple[Path, Path]:
    """Write ``<name>.crt`` and ``<name>.key`` (EC P-256, valid one day) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", f"/CN=podnet-{name}",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True, capture_output=True,
    )
    return cert, key


def client_context(*trusted: Path) -> ssl.SSLContext:
    """A client context that trusts only ``trusted`` certificates."""
    return ssl.create_default_context(cadata="".join(path.read_text() for path in trusted))
