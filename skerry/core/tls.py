"""Mutual-TLS material and identities.

Every Skerry connection is mutual TLS. An identity is carried in the client
certificate: the common name is the principal (a cluster name for agents)
and the organisation is its role:

    agent     O=skerry:agent     CN=<cluster>   URI SAN spiffe://skerry/agent/<cluster>
    hub       O=skerry:hub       CN=hub
    sealer    O=skerry:sealer    CN=sealer
    operator  O=skerry:operator  CN=<user>

``CertificateAuthority`` makes throwaway CAs for the demo and tests and is
the issuing side the enrollment flow builds on. Servers read the verified
peer certificate in one place, ``skerry.core.authz``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import ipaddress
import os
import pathlib
from collections.abc import Sequence

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from skerry.core.tlsfiles import TlsFiles

ROLE_AGENT = "skerry:agent"
ROLE_HUB = "skerry:hub"
ROLE_SEALER = "skerry:sealer"
ROLE_OPERATOR = "skerry:operator"
# Subject CN of the hub-run CA that enrolls agents (skerry.hub.enrollment); agents renew only
# certificates it issued, never ones an operator's own CA made.
AGENT_CA_NAME = "skerry-agent-ca"


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who is on the other end of a verified mTLS connection."""

    name: str
    roles: frozenset[str]
    fingerprint: str  # sha256 hex of the DER certificate

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def __str__(self) -> str:
        return f"{'/'.join(sorted(self.roles)) or 'unknown'}:{self.name}"


@dataclasses.dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _name(cn: str, orgs: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
    return x509.Name(attrs)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def generate_key_pem() -> bytes:
    """A fresh ECDSA P-256 private key, PKCS#8 PEM (the key type every certificate here uses)."""
    return _key_pem(ec.generate_private_key(ec.SECP256R1()))


def public_key_pem(key_pem: bytes) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private key PEM."""
    key = serialization.load_pem_private_key(key_pem, None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class CertificateAuthority:
    """A small X.509 CA (ECDSA P-256) that issues server and client certificates."""

    def __init__(self, cert: x509.Certificate, key):
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, name: str = "skerry-ca", *, days: int = 365) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _dt.datetime.now(_dt.UTC)
        subject = _name(name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        return cls(x509.load_pem_x509_certificate(cert_pem), serialization.load_pem_private_key(key_pem, None))

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def issue(
        self,
        common_name: str,
        *,
        role: str | None = None,
        groups: Sequence[str] = (),
        server_names: tuple[str, ...] = (),
        client: bool = True,
        days: float = 30,
        public_key=None,
    ) -> KeyPair:
        """Issue a certificate; a fresh key is generated unless ``public_key`` is given (CSR flow).

        ``groups`` are further organisations after ``role`` (Kubernetes reads each as a group)."""
        key = None
        if public_key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            public_key = key.public_key()
        now = _dt.datetime.now(_dt.UTC)
        sans: list[x509.GeneralName] = []
        for n in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        if role == ROLE_AGENT:
            sans.append(x509.UniformResourceIdentifier(f"spiffe://skerry/agent/{common_name}"))
        usages = []
        if server_names:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, ([role] if role else []) + list(groups)))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key) if key else b"")


def write_keypair(directory: pathlib.Path, stem: str, pair: KeyPair) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``stem.crt`` and ``stem.key`` (0600) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    crt.write_bytes(pair.cert_pem)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pair.key_pem)
    return crt, key


def server_credentials(files: TlsFiles, *, require_client_auth: bool = True,
                       extra_roots: bytes = b"") -> grpc.ServerCredentials:
    """A server's TLS from ``files``; clients are checked against their CA plus ``extra_roots`` (PEM: the hub
    also trusts the agent CA it runs)."""
    ca, cert, key = files.read()
    roots = ca.rstrip(b"\n") + b"\n" + extra_roots if extra_roots else ca
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=roots, require_client_auth=require_client_auth)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def identity_from_pem(pem: bytes) -> Identity:
    cert = x509.load_pem_x509_certificate(pem)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    fp = cert.fingerprint(hashes.SHA256()).hex()
    return Identity(
        name=str(cns[0].value) if cns else "",
        roles=frozenset(str(o.value) for o in orgs),
        fingerprint=fp,
    )
