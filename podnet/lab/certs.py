"""The lab's own certificate authority and the webhook's serving certificate.

kube-apiserver only calls webhooks over TLS, trusting the ``caBundle`` of the webhook
configuration; the lab's API server does the same. ``podnet up`` therefore makes a CA
and a certificate for the webhook's loopback address with the ``openssl`` command
(EC P-256; the CA signs, the leaf serves ``127.0.0.1`` and ``localhost``). Existing
files are kept while they are valid for another day, so a second ``up`` changes
nothing and the running webhook keeps its certificate.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from podnet.daemons import DaemonError, require_binary

VALID_DAYS = 365
RENEW_BEFORE_S = 24 * 3600
CURVE = "ec_paramgen_curve:prime256v1"


@dataclass(frozen=True)
class Certificates:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def cert(self) -> Path:
        return self.directory / "webhook.crt"

    @property
    def key(self) -> Path:
        return self.directory / "webhook.key"

    def ensure(self) -> Certificates:
        """Make the CA and the serving certificate unless valid ones exist."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (_valid(self.ca) and self.ca_key.exists()):
            self._make_ca()
            self.cert.unlink(missing_ok=True)
        if not (_valid(self.cert) and self.key.exists() and self._signed_by_ca()):
            self._make_serving()
        return self

    def _make_ca(self) -> None:
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", CURVE, "-nodes",
                 "-keyout", str(self.ca_key), "-out", str(self.ca), "-days", str(VALID_DAYS),
                 "-subj", "/CN=podnet-lab-ca",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _make_serving(self) -> None:
        request = self.directory / "webhook.csr"
        extensions = self.directory / "webhook.ext"
        extensions.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "extendedKeyUsage=serverAuth\n"
            "keyUsage=critical,digitalSignature\n"
            "basicConstraints=CA:FALSE\n"
        )
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", CURVE, "-nodes",
                 "-keyout", str(self.key), "-out", str(request), "-subj", "/CN=podnet-webhook")
        _openssl("x509", "-req", "-in", str(request), "-CA", str(self.ca),
                 "-CAkey", str(self.ca_key), "-CAcreateserial", "-out", str(self.cert),
                 "-days", str(VALID_DAYS), "-extfile", str(extensions))
        request.unlink(missing_ok=True)

    def _signed_by_ca(self) -> bool:
        try:
            _openssl("verify", "-CAfile", str(self.ca), str(self.cert))
        except DaemonError:
            return False
        return True


def _valid(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        _openssl("x509", "-in", str(path), "-noout", "-checkend", str(RENEW_BEFORE_S))
    except DaemonError:
        return False
    return True


def _openssl(*args: str) -> str:
    done = subprocess.run([require_binary("openssl"), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False, timeout=60)
    if done.returncode != 0:
        raise DaemonError(f"openssl {args[0]} failed: {done.stderr.strip()}")
    return done.stdout
