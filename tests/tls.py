"""Test certificates made with the ``openssl`` CLI: a self-signed server certificate for
127.0.0.1 and localhost, and a client context that trusts exactly that certificate; or a
CA and certificates it signed (what OVS's TLS wants at both ends)."""

from __future__ import annotations

import ssl
import subprocess
import uuid
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


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _ec_key_args(key: Path) -> list[str | Path]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key]


def make_ca(folder: Path, name: str = "ca") -> tuple[Path, Path]:
    """Write a CA's ``<name>.crt`` and ``<name>.key`` (may sign others, valid one day)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl("req", "-x509", *_ec_key_args(key), "-out", cert, "-days", "1",
             "-subj", f"/CN=podnet-{name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_signed(folder: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """Write ``<name>.crt`` and ``<name>.key``, signed by ``ca`` (its cert and key), for
    127.0.0.1 and localhost: OVS wants CA-signed certificates at both ends of TLS."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key, request = (folder / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
    extensions = folder / f"{name}.ext"
    extensions.write_text("basicConstraints=CA:FALSE\n"
                          "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-new", *_ec_key_args(key), "-out", request, "-subj", f"/CN=podnet-{name}")
    _openssl("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1],
             "-set_serial", str(uuid.uuid4().int >> 64), "-days", "1",
             "-extfile", extensions, "-out", cert)
    return cert, key
