"""The sealer's certificate as a client uses it: parsed and checked, read from a file, a URL or the sealer.

Sealing needs only this public certificate, so ``skerry seal`` runs on any workstation or CI job. The
certificate's key id is the SHA-256 of its SubjectPublicKeyInfo (``skerry.sealer.keys``); its OU names
the key domain (region) it seals for.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
from skerry.core.client import secure_channel
from skerry.core.errors import InvalidInput, SealError
from skerry.core.rpc import error_from_rpc
from skerry.sealer import crypto
from skerry.sealer.keys import key_id_of

# A PEM certificate is a few KiB; refuse to read more from a URL.
MAX_CERT_BYTES = 64 * 1024
_DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class SealingCertificate:
    """The sealer's certificate as a client uses it."""

    pem: bytes
    key_id: str
    public_key: Any = dataclasses.field(repr=False)
    domain: str = ""


def _cert_domain(cert) -> str:
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    value = str(ous[0].value) if ous else ""
    return value if _DOMAIN_RE.match(value) else ""


def load_certificate(pem: bytes, source: str, *, now: _dt.datetime | None = None) -> SealingCertificate:
    """Parse and check a sealing certificate (RSA >= 2048 bits, not expired)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SealError(f"{source}: not a PEM X.509 certificate") from None
    try:
        public_key = crypto.check_public_key(cert.public_key())
    except SealError as e:
        raise SealError(f"{source}: {e}") from None
    now = now or _dt.datetime.now(_dt.UTC)
    if now > cert.not_valid_after_utc:
        raise SealError(f"{source}: the sealing certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    return SealingCertificate(
        pem=pem, key_id=key_id_of(public_key), public_key=public_key, domain=_cert_domain(cert)
    )


def fetch_certificate_url(url: str, *, domain: str = "", ca_file=None, timeout: float = 10.0) -> SealingCertificate:
    """``--cert URL``: GET a PEM certificate over HTTP(S), e.g. the sealer's ``/v1/cert.pem``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"--cert URL must be http:// or https://, not {url[:80]!r}")
    if domain:
        query = urllib.parse.parse_qsl(parts.query)
        query = [(k, v) for k, v in query if k != "domain"] + [("domain", domain)]
        url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None) if parts.scheme == "https" else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310 - scheme checked
            pem = resp.read(MAX_CERT_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise SealError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SealError(f"cannot fetch the certificate from {url}: {reason}") from None
    if len(pem) > MAX_CERT_BYTES:
        raise SealError(f"{url}: the certificate is over {MAX_CERT_BYTES} bytes")
    return load_certificate(pem, url)


def fetch_certificate(
    address: str,
    tls_files,
    *,
    domain: str = "",
    server_name: str | None = None,
    timeout: float = 10.0,
) -> SealingCertificate:
    """Ask the sealer at ``address`` for its sealing certificate over mutual TLS."""
    peer = f"sealer {address}"
    with secure_channel(address, tls_files, server_name=server_name) as channel:
        stub = sealer_pb2_grpc.SealerServiceStub(channel)
        try:
            resp = stub.GetCertificate(sealer_pb2.GetCertificateRequest(domain=domain), timeout=timeout)
        except grpc.RpcError as e:
            raise error_from_rpc(e, peer) from None
    cert = load_certificate(resp.certificate_pem, peer)
    if resp.key_id and resp.key_id != cert.key_id:
        raise SealError(f"{peer}: announced key id {resp.key_id} but the certificate's key is {cert.key_id}")
    return dataclasses.replace(cert, domain=resp.domain)
