"""Signed agent reports: the byte format both sides agree on.

A report is canonical JSON (``skerry.core.canonical``) with the fields
``cluster, nonce, counter, applied_digest, release, revision, ready,
health, drift, observed_unix_ms``. The agent signs exactly those bytes
with the private key of its mTLS identity (ECDSA P-256, SHA-256, DER
signature) and sends the certificate along. The hub accepts it only if the
certificate chains to the fleet CA and names the cluster as an agent, the
signature verifies, and ``nonce``/``counter`` are the single-use pair it
issued to that cluster. A replayed report (used nonce) or one signed by
anyone else is refused, so a promotion gate that reads attested reports
cannot be satisfied by either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from skerry.core import documents
from skerry.core.canonical import canonical_json
from skerry.core.errors import InvalidInput, VerificationError

MAX_REPORT_BYTES = 256 * 1024  # a status with a drift summary of a few thousand objects
FIELDS = ("cluster", "nonce", "counter", "applied_digest", "release", "revision", "ready", "health", "drift",
          "observed_unix_ms")


def encode(report: Mapping[str, Any]) -> bytes:
    missing = [f for f in FIELDS if f not in report]
    if missing:
        raise InvalidInput(f"report lacks {', '.join(missing)}")
    return canonical_json({f: report[f] for f in FIELDS})


def sign(report: Mapping[str, Any], key_pem: bytes) -> tuple[bytes, bytes]:
    """``(report bytes, signature)`` signed with the PEM private key of the agent's identity."""
    data = encode(report)
    key = serialization.load_pem_private_key(key_pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput("the agent identity key must be an EC key")
    return data, key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify(data: bytes, signature: bytes, cert_pem: bytes) -> dict[str, Any]:
    """The report if ``signature`` by ``cert_pem``'s key verifies over ``data`` (chain checked by the caller)."""
    if len(data) > MAX_REPORT_BYTES:
        raise VerificationError(f"report is {len(data)} bytes, over {MAX_REPORT_BYTES}", reason="EndlessData")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise ValueError("not an EC key")
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError) as e:
        raise VerificationError(f"report signature does not verify: {e or 'bad signature'}",
                                reason="ForgedReport") from e
    try:
        doc = documents.load_json(data, max_bytes=MAX_REPORT_BYTES)
    except documents.BadDocument as e:
        # signed, so not forged: refused for what is wrong with it (NotJson for NaN, BadEncoding, TooDeep, ...)
        raise VerificationError(f"report is not JSON: {e}", reason=e.reason) from e
    if not isinstance(doc, dict) or any(f not in doc for f in FIELDS) or canonical_json(doc) != data:
        raise VerificationError("report is not in the canonical report format", reason="ForgedReport")
    return doc
