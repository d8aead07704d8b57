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
same four methods. Restarting on the same storage loses no key: the
registry only adds keys (removal is the explicit ``retire``), and a key is
written before its certificate is handed out.

Keys at rest: ``EncryptedBackend`` wraps any backend and encrypts each
private key with a 32-byte key-encryption key (KEK) before it is stored::

    stored key = MAGIC || nonce(12 random bytes) || AES-256-GCM(KEK, nonce, pkcs8_pem, aad)
    MAGIC      = b"SKERRY-SEALER-KEY-V1\n"   (21 bytes)
    aad        = MAGIC || domain (ASCII) || b"/" || key_id (64 hex chars)

The AAD binds a blob to its domain and key id, so a key file copied into
another domain (another jurisdiction) does not load. The KEK comes from a
file holding exactly 32 raw bytes, or from ``SKERRY_SEALER_KEK`` as base64
of 32 bytes (``load_kek``). Lifecycle: ``renew_if_due`` adds a key when the
newest is older than the renewal period (30 days by default, as Sealed
Secrets); ``refresh`` re-reads storage (keys rotated or retired by
``skerry sealer keys``); ``retire`` removes a key that no SealedSecret
needs any more (the caller proves that, see ``skerry sealer keys retire``);
``backup_document``/``restore_document`` move keys between sealers.
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
from skerry.core.errors import ConfigError, FailedPrecondition, InvalidInput, NotFound, SealError
from skerry.core.files import atomic_write, fsync_dir
from skerry.sealer import crypto

log = structlog.get_logger("skerry.sealer.keys")

DEFAULT_DOMAIN = "default"
KEY_BITS = 4096
CERT_VALIDITY = _dt.timedelta(days=3650)
CERT_COMMON_NAME = "sealed-secret"
CERT_ORGANIZATION = "skerry"
# Sealed Secrets renews its key every 30 days; so do we unless configured otherwise.
DEFAULT_RENEWAL = _dt.timedelta(days=30)
KEK_BYTES = 32
KEK_MAGIC = b"SKERRY-SEALER-KEY-V1\n"
_KEK_NONCE_BYTES = 12
BACKUP_API_VERSION = "skerry.io/v1alpha1"
BACKUP_KIND = "SealerKeyBackup"
# A backup holds a few keys per domain (one a month, retired ones removed); bound what restore reads.
MAX_BACKUP_BYTES = 16 * 1024 * 1024
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


def _to_stored(key: SealingKey) -> StoredKey:
    key_pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return StoredKey(key.key_id, key_pem, key.cert_pem)


def _from_stored(domain: str, stored: StoredKey) -> SealingKey:
    where = stored.source or f"key {stored.key_id} of domain {domain}"
    if stored.key_pem.startswith(KEK_MAGIC):
        raise ConfigError(f"{where}: the key is encrypted at rest; configure the key-encryption key")
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
            atomic_write(path / f"{key.key_id}.key", key.key_pem, 0o600)
            atomic_write(path / f"{key.key_id}.crt", key.cert_pem, 0o644)
            fsync_dir(path)
        except OSError as e:
            raise ConfigError(f"cannot write sealing key into {path}: {e.strerror}") from e

    def delete(self, domain: str, key_id: str) -> None:
        if not _KEY_ID_RE.match(key_id):
            raise InvalidInput(f"invalid key id {key_id[:80]!r}")
        path = self._dir(domain)
        try:
            # Certificate first: a key without its certificate is ignored on load.
            for suffix in (".crt", ".key"):
                with contextlib.suppress(FileNotFoundError):
                    (path / f"{key_id}{suffix}").unlink()
            if path.is_dir():
                fsync_dir(path)
        except OSError as e:
            raise ConfigError(f"cannot remove sealing key {key_id} from {path}: {e.strerror}") from e

    @contextlib.contextmanager
    def lock(self, domain: str) -> Iterator[None]:
        path = self._dir(domain, create=True) / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def load_kek(*, path: pathlib.Path | None = None, base64_text: str | None = None) -> bytes:
    """The key-encryption key: a file of exactly 32 raw bytes, or base64 of 32 bytes."""
    import base64
    import binascii

    if path is not None:
        try:
            raw = pathlib.Path(path).read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read key-encryption key {path}: {e.strerror}") from e
        where = str(path)
    elif base64_text:
        try:
            raw = base64.b64decode(base64_text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("the key-encryption key is not valid base64") from None
        where = "the key-encryption key"
    else:
        raise ConfigError("no key-encryption key given")
    if len(raw) != KEK_BYTES:
        raise ConfigError(f"{where}: a key-encryption key is exactly {KEK_BYTES} bytes, not {len(raw)}")
    return raw


def _kek_aad(domain: str, key_id: str) -> bytes:
    return KEK_MAGIC + domain.encode("ascii") + b"/" + key_id.encode("ascii")


def wrap_private_key(kek: bytes, domain: str, key_id: str, key_pem: bytes) -> bytes:
    """Encrypt a private key PEM for storage (format in the module docstring)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(_KEK_NONCE_BYTES)
    return KEK_MAGIC + nonce + AESGCM(kek).encrypt(nonce, key_pem, _kek_aad(domain, key_id))


def unwrap_private_key(kek: bytes | None, domain: str, key_id: str, blob: bytes, where: str) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(KEK_MAGIC):
        return blob
    if kek is None:
        raise ConfigError(f"{where}: the key is encrypted at rest; configure the key-encryption key")
    body = blob[len(KEK_MAGIC) :]
    nonce, ct = body[:_KEK_NONCE_BYTES], body[_KEK_NONCE_BYTES:]
    try:
        return AESGCM(kek).decrypt(nonce, ct, _kek_aad(domain, key_id))
    except (InvalidTag, ValueError):
        raise ConfigError(
            f"{where}: cannot decrypt the key (wrong key-encryption key, or the file belongs to another "
            "domain or key id)"
        ) from None


class EncryptedBackend:
    """Any ``KeyBackend`` with private keys encrypted under a KEK before they reach it."""

    def __init__(self, inner: KeyBackend, kek: bytes):
        if len(kek) != KEK_BYTES:
            raise ConfigError(f"a key-encryption key is exactly {KEK_BYTES} bytes")
        self._inner = inner
        self._kek = kek

    def load(self, domain: str) -> list[StoredKey]:
        out = []
        for stored in self._inner.load(domain):
            where = stored.source or f"key {stored.key_id}"
            if not stored.key_pem.startswith(KEK_MAGIC):
                log.warning("private key is not encrypted at rest; it is re-encrypted on the next write", path=where)
            pem = unwrap_private_key(self._kek, domain, stored.key_id, stored.key_pem, where)
            out.append(dataclasses.replace(stored, key_pem=pem))
        return out

    def store(self, domain: str, key: StoredKey) -> None:
        blob = wrap_private_key(self._kek, domain, key.key_id, key.key_pem)
        self._inner.store(domain, dataclasses.replace(key, key_pem=blob))

    def delete(self, domain: str, key_id: str) -> None:
        self._inner.delete(domain, key_id)

    def lock(self, domain: str) -> contextlib.AbstractContextManager[None]:
        return self._inner.lock(domain)


class MemoryBackend:
    """A ``KeyBackend`` in process memory: reading a backup without writing it anywhere, tests."""

    def __init__(self):
        self._keys: dict[str, dict[str, StoredKey]] = {}

    def load(self, domain: str) -> list[StoredKey]:
        return list(self._keys.get(domain, {}).values())

    def store(self, domain: str, key: StoredKey) -> None:
        self._keys.setdefault(domain, {})[key.key_id] = key

    def delete(self, domain: str, key_id: str) -> None:
        self._keys.get(domain, {}).pop(key_id, None)

    def lock(self, domain: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class KeyRegistry:
    """The keys of every opened domain, newest first. Safe to read from several threads."""

    def __init__(self, backend: KeyBackend, *, clock: Clock | None = None, key_bits: int = KEY_BITS):
        self._backend = backend
        self._clock = clock or SystemClock()
        self._key_bits = key_bits
        self._keys: dict[str, tuple[SealingKey, ...]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_directory(cls, keys_dir: pathlib.Path | str, *, kek: bytes | None = None, **kwargs) -> KeyRegistry:
        backend: KeyBackend = DirectoryBackend(keys_dir)
        if kek is not None:
            backend = EncryptedBackend(backend, kek)
        return cls(backend, **kwargs)

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

    def stored_keys(self, domain: str) -> tuple[SealingKey, ...]:
        """The keys of ``domain`` as storage holds them now, newest first (opened or not)."""
        return self._load(normalize_domain(domain))

    def refresh(self, domain: str) -> tuple[SealingKey, ...]:
        """Re-read ``domain`` from storage (keys added or retired elsewhere); keeps the old view on error."""
        domain = normalize_domain(domain)
        keys = self._load(domain)
        if not keys:
            raise ConfigError(f"key domain {domain!r} has no keys in storage any more; keeping the loaded ones")
        with self._lock:
            before = {k.key_id for k in self._keys.get(domain, ())}
            self._keys[domain] = keys
        after = {k.key_id for k in keys}
        if before != after:
            log.info(
                "key domain reloaded",
                domain=domain,
                added=sorted(after - before),
                removed=sorted(before - after),
                sealing_key=keys[0].key_id,
            )
        return keys

    def renew_if_due(self, domain: str, period: _dt.timedelta = DEFAULT_RENEWAL) -> SealingKey | None:
        """Add a key when ``domain``'s newest is at least ``period`` old; returns it, or None."""
        domain = normalize_domain(domain)
        with self._backend.lock(domain):
            keys = self._load(domain)
            if keys and self._clock.now() - keys[0].created < period:
                return None
            new = self._generate(domain, keys)
            keys = (new, *keys)
        with self._lock:
            self._keys[domain] = keys
        log.info("sealing key renewed", domain=domain, key_id=new.key_id, keys=len(keys), period=str(period))
        return new

    def retire(self, domain: str, key_id: str) -> None:
        """Remove ``key_id`` for good. The sealing (newest) key cannot be retired; rotate first."""
        domain = normalize_domain(domain)
        with self._backend.lock(domain):
            keys = self._load(domain)
            ids = [k.key_id for k in keys]
            if key_id not in ids:
                raise NotFound(f"domain {domain!r} has no key {key_id}")
            if ids[0] == key_id:
                raise FailedPrecondition(
                    f"key {key_id} is the sealing key of domain {domain!r}; rotate before retiring it"
                )
            self._backend.delete(domain, key_id)
            keys = tuple(k for k in keys if k.key_id != key_id)
        with self._lock:
            if domain in self._keys:
                self._keys[domain] = keys
        log.warning("sealing key retired", domain=domain, key_id=key_id, keys=len(keys))

    def backup_document(self, domains: Sequence[str] | None = None, *, kek: bytes | None = None) -> dict:
        """Every key of ``domains`` (default: the opened ones) as a JSON-ready document.

        With ``kek`` the private keys inside are encrypted exactly as at rest; without it they are
        PEM in clear and the document must be protected like the keys themselves.
        """
        out: dict[str, list[dict]] = {}
        for domain in domains or self.domains:
            domain = normalize_domain(domain)
            entries = []
            for key in self._load(domain):
                pem = _to_stored(key).key_pem
                private = wrap_private_key(kek, domain, key.key_id, pem) if kek else pem
                entries.append(
                    {
                        "keyId": key.key_id,
                        "certificate": key.cert_pem.decode("ascii"),
                        "privateKey": _b64(private) if kek else pem.decode("ascii"),
                    }
                )
            out[domain] = entries
        return {
            "apiVersion": BACKUP_API_VERSION,
            "kind": BACKUP_KIND,
            "encrypted": bool(kek),
            "created": self._clock.now().astimezone(_dt.UTC).isoformat(),
            "domains": out,
        }

    def restore_document(self, doc: object, *, kek: bytes | None = None) -> dict[str, list[str]]:
        """Store every key of a backup that storage lacks; returns the restored key ids per domain.

        Each key is checked (parses, certificate matches, id matches) before anything is written.
        """
        if not isinstance(doc, dict) or doc.get("kind") != BACKUP_KIND or doc.get("apiVersion") != BACKUP_API_VERSION:
            raise InvalidInput(f"not a {BACKUP_API_VERSION} {BACKUP_KIND} document")
        domains = doc.get("domains")
        if not isinstance(domains, dict):
            raise InvalidInput("backup: domains must be a mapping of domain to keys")
        parsed: list[tuple[str, SealingKey]] = []
        for domain, entries in domains.items():
            domain = normalize_domain(str(domain))
            if not isinstance(entries, list):
                raise InvalidInput(f"backup: domain {domain!r} must list its keys")
            for i, e in enumerate(entries):
                where = f"backup key #{i} of domain {domain!r}"
                if not isinstance(e, dict) or not all(isinstance(e.get(f), str) for f in ("keyId", "certificate", "privateKey")):
                    raise InvalidInput(f"{where}: needs keyId, certificate and privateKey strings")
                if not _KEY_ID_RE.match(e["keyId"]):
                    raise InvalidInput(f"{where}: invalid key id")
                if doc.get("encrypted"):
                    if kek is None:
                        raise ConfigError("the backup is encrypted; give its key-encryption key")
                    blob = _unb64(e["privateKey"], where)
                    pem = unwrap_private_key(kek, domain, e["keyId"], blob, where)
                else:
                    pem = e["privateKey"].encode("ascii")
                stored = StoredKey(e["keyId"], pem, e["certificate"].encode("ascii"), source=where)
                parsed.append((domain, _from_stored(domain, stored)))
        restored: dict[str, list[str]] = {}
        for domain, key in parsed:
            with self._backend.lock(domain):
                if key.key_id in {k.key_id for k in self._load(domain)}:
                    continue
                self._backend.store(domain, _to_stored(key))
            restored.setdefault(domain, []).append(key.key_id)
        for domain in restored:
            if domain in self._keys:
                self.refresh(domain)
        log.info("keys restored", restored={d: len(v) for d, v in restored.items()})
        return restored

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


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, where: str) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: privateKey is not valid base64") from None


def _try_order(keys: Sequence[SealingKey], hint: str | None) -> list[SealingKey]:
    if not hint:
        return list(keys)
    return sorted(keys, key=lambda k: k.key_id != hint)  # stable: hinted first, then newest first
