"""Where keys live and how they are kept at rest: backends, and private keys encrypted under a KEK.

Storage sits behind ``KeyBackend`` (:mod:`.model`): ``DirectoryBackend`` keeps
``keys_dir/<domain>/<key_id>.{key,crt}`` (private keys 0600, directories 0700, writes atomic);
``MemoryBackend`` holds keys in process memory; a KMS/HSM or Kubernetes Secret backend can implement the
same four methods. A key is written before its certificate is handed out, so a restart on the same
storage loses no key.

Keys at rest: ``EncryptedBackend`` wraps any backend and encrypts each private key with a 32-byte
key-encryption key (KEK) before it is stored::

    stored key = MAGIC || nonce(12 random bytes) || AES-256-GCM(KEK, nonce, pkcs8_pem, aad)
    MAGIC      = b"SKERRY-SEALER-KEY-V1\\n"   (21 bytes)
    aad        = MAGIC || domain (ASCII) || b"/" || key_id (64 hex chars)

The AAD binds a blob to its domain and key id, so a key file copied into another domain (another
jurisdiction) does not load. The KEK comes from a file holding exactly 32 raw bytes, or from
``SKERRY_SEALER_KEK`` as base64 of 32 bytes (``load_kek``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import fcntl
import os
import pathlib
from collections.abc import Iterator

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from skerry.core.errors import ConfigError, InvalidInput
from skerry.core.files import STATE_CORRUPT, atomic_write, fsync_dir
from skerry.sealer.keys.model import KEY_ID_RE, KeyBackend, SealingKey, StoredKey, key_id_of

log = structlog.get_logger("skerry.sealer.keys")

KEK_BYTES = 32
KEK_MAGIC = b"SKERRY-SEALER-KEY-V1\n"
_KEK_NONCE_BYTES = 12


def to_stored(key: SealingKey) -> StoredKey:
    key_pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return StoredKey(key.key_id, key_pem, key.cert_pem)


def from_stored(domain: str, stored: StoredKey) -> SealingKey:
    """Parse and check a stored key: it loads, is RSA, matches its certificate and its stored id."""
    where = stored.source or f"key {stored.key_id} of domain {domain}"
    if stored.key_pem.startswith(KEK_MAGIC):
        raise ConfigError(f"{where}: the key is encrypted at rest; configure the key-encryption key")
    try:
        private_key = serialization.load_pem_private_key(stored.key_pem, password=None)
        cert = x509.load_pem_x509_certificate(stored.cert_pem)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where} (and its .crt): unreadable key or certificate", reason=STATE_CORRUPT) from e
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
        crts = {p.stem for p in path.glob("*.crt") if KEY_ID_RE.match(p.stem)}
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
        if not KEY_ID_RE.match(key_id):
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


def load_kek(*, path: pathlib.Path | None = None, base64_text: str | None = None) -> bytes:
    """The key-encryption key: a file of exactly 32 raw bytes, or base64 of 32 bytes."""
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


def configured_kek(path: pathlib.Path | None, base64_text: str | None) -> bytes | None:
    """The key-encryption key a sealer is configured with: the file wins over the base64 text; neither:
    None (keys stored unencrypted)."""
    if path is not None:
        return load_kek(path=path)
    if base64_text:
        return load_kek(base64_text=base64_text)
    return None


def _kek_aad(domain: str, key_id: str) -> bytes:
    return KEK_MAGIC + domain.encode("ascii") + b"/" + key_id.encode("ascii")


def wrap_private_key(kek: bytes, domain: str, key_id: str, key_pem: bytes) -> bytes:
    """Encrypt a private key PEM for storage (format in the module docstring)."""
    nonce = os.urandom(_KEK_NONCE_BYTES)
    return KEK_MAGIC + nonce + AESGCM(kek).encrypt(nonce, key_pem, _kek_aad(domain, key_id))


def unwrap_private_key(kek: bytes | None, domain: str, key_id: str, blob: bytes, where: str) -> bytes:
    """The private key PEM inside ``blob``; a blob without the magic is taken as clear PEM."""
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
