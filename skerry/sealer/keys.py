"""The sealer's key registry: which RSA keys exist, which one seals, which ones may unseal.

Keys are grouped in *domains* (``default`` now; regions such as ``no-oslo``
later). Within a domain the newest key seals and every retained key may
unseal, so values sealed before a rotation stay readable. A key's id is the
SHA-256 hex fingerprint of its DER SubjectPublicKeyInfo, which anyone holding
the certificate can recompute.

Each key is an RSA-4096 pair with a self-signed X.509 certificate, as the
upstream Sealed Secrets controller makes them, so ``kubeseal --cert`` can use
a Skerry certificate unchanged. The certificate is only a container for the
public key, not a TLS trust anchor; it is valid for 10 years like upstream's,
because retiring a key is rotation's job and an early expiry would merely
make clients refuse a key that is still fine.

Storage sits behind ``KeyBackend`` (``DirectoryBackend`` today:
``keys_dir/<domain>/<key_id>.{key,crt}``, private keys 0600, directories 0700,
writes atomic). A KMS/HSM or Kubernetes Secret backend can implement the
same three methods. Restarting on the same storage loses no key: the
registry only ever adds keys, and a key is written before its certificate
is handed out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import os
import pathlib
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import ConfigError, NotFound, SealError
from skerry.sealer import crypto

log = structlog.get_logger("skerry.sealer.keys")

DEFAULT_DOMAIN = "default"
KEY_BITS = 4096
CERT_VALIDITY = _dt.timedelta(days=3650)
CERT_COMMON_NAME = "sealed-secret"
CERT_ORGANIZATION = "skerry"
# A domain is a directory name and may one day be a Kubernetes label value: DNS-label rules.
_DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_KEY_ID_RE = re.compile(r"^[0-9a-f]{64}$")


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


def _to_stored(key: SealingKey) -> StoredKey:
    key_pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return StoredKey(key.key_id, key_pem, key.cert_pem)


def _from_stored(domain: str, stored: StoredKey) -> SealingKey:
    where = stored.source or f"key {stored.key_id} of domain {domain}"
    try:
        private_key = serialization.load_pem_private_key(stored.key_pem, password=None)
        cert = x509.load_pem_x509_certificate(stored.cert_pem)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: unreadable key or certificate") from e
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}: not an RSA private key")
    key_id = key_id_of(private_key.public_key())
    if key_id_of(cert.public_key()) != key_id:
        raise ConfigError(f"{where}: the certificate does not belong to the private key")
    if key_id != stored.key_id:
        raise ConfigError(f"{where}: stored as key id {stored.key_id} but the key's fingerprint is {key_id}")
    return SealingKey(domain, key_id, private_key, cert)


class DirectoryBackend:
    """``root/<domain>/<key_id>.key`` (PKCS#8 PEM, 0600) and ``<key_id>.crt`` (PEM)."""

    def __init__(self, root: pathlib.Path | str):
        self.root = pathlib.Path(root)

    def _dir(self, domain: str, *, create: bool = False) -> pathlib.Path:
        path = self.root / domain
        if create:
            for d in (self.root, path):
                try:
                    d.mkdir(mode=0o700, exist_ok=True)
                except OSError as e:
                    raise ConfigError(f"cannot create key directory {d}: {e.strerror}") from e
        return path

    def load(self, domain: str) -> list[StoredKey]:
        path = self._dir(domain)
        if not path.is_dir():
            return []
        out: list[StoredKey] = []
        crts = {p.stem for p in path.glob("*.crt") if _KEY_ID_RE.match(p.stem)}
        for stray in sorted({p.stem for p in path.glob("*.key")} - crts):
            # Written first and renamed before its certificate: a crash in between leaves a key
            # whose certificate was never handed out, so nothing can be sealed for it.
            log.warning("ignoring private key without certificate", path=str(path / f"{stray}.key"))
        for stem in sorted(crts):
            key_path, crt_path = path / f"{stem}.key", path / f"{stem}.crt"
            try:
                key_pem = key_path.read_bytes()
                cert_pem = crt_path.read_bytes()
                mode = key_path.stat().st_mode
            except FileNotFoundError:
                log.warning("ignoring certificate without private key", path=str(crt_path))
                continue
            except OSError as e:
                raise ConfigError(f"cannot read sealing key {key_path}: {e.strerror}") from e
            if mode & 0o077:
                log.warning(
                    "private key is readable by group or others", path=str(key_path), mode=oct(mode & 0o777)
                )
            out.append(StoredKey(stem, key_pem, cert_pem, source=str(key_path)))
        return out

    def store(self, domain: str, key: StoredKey) -> None:
        path = self._dir(domain, create=True)
        try:
            # Private key first: a certificate on disk always has its key beside it.
            _write_atomic(path / f"{key.key_id}.key", key.key_pem, 0o600)
            _write_atomic(path / f"{key.key_id}.crt", key.cert_pem, 0o644)
            _fsync_dir(path)
        except OSError as e:
            raise ConfigError(f"cannot write sealing key into {path}: {e.strerror}") from e

    @contextlib.contextmanager
    def lock(self, domain: str) -> Iterator[None]:
        path = self._dir(domain, create=True) / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _write_atomic(path: pathlib.Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyRegistry:
    """The keys of every opened domain, newest first. Safe to read from several threads."""

    def __init__(self, backend: KeyBackend, *, clock: Clock | None = None, key_bits: int = KEY_BITS):
        self._backend = backend
        self._clock = clock or SystemClock()
        self._key_bits = key_bits
        self._keys: dict[str, tuple[SealingKey, ...]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_directory(cls, keys_dir: pathlib.Path | str, **kwargs) -> KeyRegistry:
        return cls(DirectoryBackend(keys_dir), **kwargs)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def open(self, domain: str = DEFAULT_DOMAIN) -> SealingKey:
        """Load ``domain``'s keys, generating its first key if it has none; returns the sealing key.

        Slow the first time (RSA-4096 generation takes about a second): call before serving.
        """
        domain = normalize_domain(domain)
        with self._backend.lock(domain):
            keys = self._load(domain)
            if not keys:
                keys = (self._generate(domain, keys),)
        with self._lock:
            self._keys[domain] = keys
        log.info("key domain opened", domain=domain, keys=len(keys), sealing_key=keys[0].key_id)
        return keys[0]

    def add_key(self, domain: str = DEFAULT_DOMAIN) -> SealingKey:
        """Generate and store a new key; it becomes the sealing key, the older ones still unseal."""
        domain = normalize_domain(domain)
        with self._backend.lock(domain):
            keys = self._load(domain)
            new = self._generate(domain, keys)
            keys = (new, *keys)
        with self._lock:
            self._keys[domain] = keys
        log.info("sealing key added", domain=domain, key_id=new.key_id, keys=len(keys))
        return new

    def keys(self, domain: str = "") -> tuple[SealingKey, ...]:
        """Every retained key of an opened domain, newest first."""
        domain = normalize_domain(domain)
        try:
            return self._keys[domain]
        except KeyError:
            raise NotFound(f"the sealer serves no key domain {domain!r}") from None

    def sealing_key(self, domain: str = "") -> SealingKey:
        return self.keys(domain)[0]

    def unseal(self, domain: str, item: bytes, label: bytes, *, hint: str | None = None) -> tuple[bytes, str]:
        """Decrypt one raw item with the hinted key first, then every key newest first.

        Returns ``(plaintext, key_id)``; ``SealError`` if no key opens it.
        """
        for key in _try_order(self.keys(domain), hint):
            try:
                return crypto.hybrid_decrypt(key.private_key, item, label), key.key_id
            except SealError:
                continue
        raise SealError(crypto.UNSEAL_FAILED)

    def _load(self, domain: str) -> tuple[SealingKey, ...]:
        keys = [_from_stored(domain, s) for s in self._backend.load(domain)]
        return tuple(sorted(keys, key=lambda k: (k.created, k.key_id), reverse=True))

    def _generate(self, domain: str, existing: Sequence[SealingKey]) -> SealingKey:
        # Certificate times have one-second resolution; keep them strictly increasing so
        # "newest" is never a tie, even for keys made in the same second.
        not_before = self._clock.now().astimezone(_dt.UTC).replace(microsecond=0)
        if existing and not_before <= existing[0].created:
            not_before = existing[0].created + _dt.timedelta(seconds=1)
        key = generate_key(domain, not_before=not_before, bits=self._key_bits)
        self._backend.store(domain, _to_stored(key))
        return key


def _try_order(keys: Sequence[SealingKey], hint: str | None) -> list[SealingKey]:
    if not hint:
        return list(keys)
    return sorted(keys, key=lambda k: k.key_id != hint)  # stable: hinted first, then newest first
