"""What a sealing key is: its domain, its id, the RSA pair and the certificate that carries it.

A key's id is the SHA-256 hex fingerprint of its DER SubjectPublicKeyInfo, which anyone holding the
certificate can recompute. Each key is an RSA-4096 pair with a self-signed X.509 certificate, as the
upstream Sealed Secrets controller makes them, so ``kubeseal --cert`` can use a Skerry certificate
unchanged. The certificate is only a container for the public key, not a TLS trust anchor; it is valid
for 10 years like upstream's, because retiring a key is rotation's job and an early expiry would merely
make clients refuse a key that is still fine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import re
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from skerry.core.errors import ConfigError
from skerry.sealer import crypto

DEFAULT_DOMAIN = "default"
KEY_BITS = 4096
CERT_VALIDITY = _dt.timedelta(days=3650)
CERT_COMMON_NAME = "sealed-secret"
CERT_ORGANIZATION = "skerry"
# Sealed Secrets renews its key every 30 days; so do we unless configured otherwise.
DEFAULT_RENEWAL = _dt.timedelta(days=30)
# A domain is a directory name and may one day be a Kubernetes label value: DNS-label rules.
_DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
KEY_ID_RE = re.compile(r"^[0-9a-f]{64}$")


def normalize_domain(domain: str | None) -> str:
    """``""``/``None`` mean the default domain; anything else must be a DNS label."""
    domain = domain or DEFAULT_DOMAIN
    if not _DOMAIN_RE.match(domain):
        raise ConfigError(f"invalid key domain {domain!r}: use lower-case letters, digits and '-' (max 63)")
    return domain


def key_id_of(public_key) -> str:
    """SHA-256 hex of the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclasses.dataclass(frozen=True)
class SealingKey:
    """One key pair of a domain, parsed and checked."""

    domain: str
    key_id: str
    private_key: rsa.RSAPrivateKey = dataclasses.field(repr=False)
    certificate: x509.Certificate = dataclasses.field(repr=False)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @property
    def created(self) -> _dt.datetime:
        return self.certificate.not_valid_before_utc

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclasses.dataclass(frozen=True)
class StoredKey:
    """A key as a backend keeps it; ``source`` names where, for error messages."""

    key_id: str
    key_pem: bytes = dataclasses.field(repr=False)
    cert_pem: bytes
    source: str = ""


class KeyBackend(Protocol):
    def load(self, domain: str) -> list[StoredKey]: ...

    def store(self, domain: str, key: StoredKey) -> None: ...

    def delete(self, domain: str, key_id: str) -> None:
        """Remove a key for good (retirement); a missing key is not an error."""
        ...

    def lock(self, domain: str) -> contextlib.AbstractContextManager[None]:
        """Serialise key generation for ``domain`` across processes sharing the storage."""
        ...


def generate_key(domain: str, *, not_before: _dt.datetime, bits: int = KEY_BITS) -> SealingKey:
    """A fresh RSA key pair with a self-signed certificate valid from ``not_before``."""
    if bits < crypto.MIN_RSA_KEY_BITS:
        raise ConfigError(f"RSA keys need at least {crypto.MIN_RSA_KEY_BITS} bits, not {bits}")
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CERT_COMMON_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, CERT_ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, domain),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    return SealingKey(domain, key_id_of(private_key.public_key()), private_key, cert)
