"""The hub-run CA that issues agent client certificates from CSRs.

Files (``<state>/enrollment/``): ``ca.crt`` and ``ca.key`` (ECDSA P-256,
PKCS#8 PEM, 0600), made on first use. They are the hub's keys: back them up
like the bundle signing key. The hub serves mutual TLS trusting this CA (for
agents) next to the operator-supplied ``--tls-ca``; the sealer must trust it
too (add ``ca.crt`` to its CA bundle).

An issued certificate is ``O=skerry:agent, CN=<cluster>``, URI SAN
``spiffe://skerry/agent/<cluster>``, client-auth only, valid from
``now - CLOCK_SKEW`` for ``lifetime``. The public key comes from the agent's
CSR; the private key never leaves the agent. The CSR's CN must equal the
cluster the credential (token or current certificate) names: the cluster is
decided by the hub, the CSR only proves possession of the key.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import pathlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from skerry.core import documents
from skerry.core.errors import ConfigError, InvalidInput, PermissionDenied
from skerry.core.files import finish_pending, write_together
from skerry.core.revocation import CLOCK_SKEW as _CLOCK_SKEW
from skerry.core.tls import AGENT_CA_NAME, ROLE_AGENT, CertificateAuthority

# Agents renew at 2/3 of this; a stolen certificate is useful for a day at most
# even if nobody revokes it (revocation reaches the hub and the sealers within a second).
DEFAULT_CERT_LIFETIME = _dt.timedelta(hours=24)
# Upper bound an operator may configure: "short-lived" stays short.
MAX_CERT_LIFETIME = _dt.timedelta(days=7)
# Tolerated clock difference between hub and agents: certificates start this early (defined with
# the revocation reader, whose cluster-wide revocations must allow for the same backdating).
CLOCK_SKEW = _CLOCK_SKEW
# A P-256 CSR is ~400 bytes; refuse anything that could make parsing expensive.
MAX_CSR_BYTES = 8 * 1024
CA_NAME = AGENT_CA_NAME
CA_LIFETIME_DAYS = 3650


@dataclasses.dataclass(frozen=True)
class IssuedCert:
    cluster: str
    cert_pem: bytes
    fingerprint: str
    not_before: _dt.datetime
    not_after: _dt.datetime


def cert_times(cert_pem: bytes) -> tuple[_dt.datetime, _dt.datetime]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def csr_public_key(csr_pem: bytes, name: str, what: str):
    """The public key of a PKCS#10 CSR that proves its key and names ``name`` as CN; else a refusal.

    ``what`` names the credential's subject in the refusal ("cluster", "operator").
    """
    if not csr_pem or len(csr_pem) > MAX_CSR_BYTES:
        raise InvalidInput(f"CSR must be 1..{MAX_CSR_BYTES} bytes of PEM, got {len(csr_pem or b'')}")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except (ValueError, x509.InvalidVersion) as e:
        raise InvalidInput(f"CSR is not a PEM PKCS#10 request: {documents.clip(str(e))}") from e
    try:
        if not csr.is_signature_valid:
            raise InvalidInput("CSR signature does not verify (no proof of the private key)")
        public_key = csr.public_key()
    except (InvalidSignature, ValueError, UnsupportedAlgorithm) as e:
        # cryptography parses the key lazily: a malformed or unknown key surfaces only here
        raise InvalidInput(f"CSR key or signature is unusable: {documents.clip(str(e) or type(e).__name__)}") from e
    if not (
        isinstance(public_key, ed25519.Ed25519PublicKey)
        or (isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1))
    ):
        raise InvalidInput("CSR key must be ECDSA P-256 or Ed25519")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or cns[0].value != name:
        got = cns[0].value if cns else ""
        raise PermissionDenied(f"CSR names {what} {got!r} but the credential is for {what} {name!r}")
    return public_key


class AgentAuthority:
    def __init__(self, ca: CertificateAuthority, *, lifetime: _dt.timedelta = DEFAULT_CERT_LIFETIME):
        if not _dt.timedelta(minutes=10) <= lifetime <= MAX_CERT_LIFETIME:
            raise InvalidInput(f"agent certificate lifetime must be 10 min .. {MAX_CERT_LIFETIME}, got {lifetime}")
        self.ca = ca
        self.lifetime = lifetime

    @classmethod
    def load_or_create(cls, directory: pathlib.Path, **kw) -> AgentAuthority:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        crt, key = directory / "ca.crt", directory / "ca.key"
        finish_pending([key, crt])
        if not crt.exists() and not key.exists():  # the first start: a new agent CA, both files as one
            ca = CertificateAuthority.create(CA_NAME, days=CA_LIFETIME_DAYS)
            write_together([(key, ca.key_pem, 0o600), (crt, ca.cert_pem, 0o644)])
        elif not crt.exists() or not key.exists():
            # Never mint a new CA over one half of the old: every enrolled agent would be locked out.
            missing, kept = (crt, key) if not crt.exists() else (key, crt)
            raise ConfigError(f"the agent CA is incomplete: {missing} is missing beside {kept}; restore it from "
                              "a backup (a new CA would lock out every enrolled agent)", reason="StateCorrupt")
        try:
            return cls(CertificateAuthority.load(crt.read_bytes(), key.read_bytes()), **kw)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"the agent CA in {directory} is unreadable ({documents.clip(str(e))}); restore "
                              "ca.crt and ca.key from a backup", reason="StateCorrupt") from None

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem

    def sign_csr(self, csr_pem: bytes, cluster: str, *, now: _dt.datetime | None = None) -> IssuedCert:
        public_key = csr_public_key(csr_pem, cluster, "cluster")
        now = now or _dt.datetime.now(_dt.UTC)
        days = self.lifetime.total_seconds() / 86400
        pair = self.ca.issue(cluster, role=ROLE_AGENT, client=True, days=days, public_key=public_key)
        cert = x509.load_pem_x509_certificate(pair.cert_pem)
        return IssuedCert(
            cluster=cluster,
            cert_pem=pair.cert_pem,
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )

