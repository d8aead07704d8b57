"""The registry: which keys each domain has, which one seals, which ones may unseal, and their lifecycle.

Keys are grouped in *domains* (``default`` now; regions such as ``no-oslo`` later). Within a domain the
newest key seals and every retained key may unseal, so values sealed before a rotation stay readable.
The registry only adds keys (removal is the explicit ``retire``). Lifecycle: ``renew_if_due`` adds a key
when the newest is older than the renewal period (30 days by default, as Sealed Secrets); ``refresh``
re-reads storage (keys rotated or retired by ``skerry sealer keys``); ``retire`` removes a key that no
SealedSecret needs any more (the caller proves that, see ``skerry sealer keys retire``);
``backup_document``/``restore_document`` move keys between sealers.
"""

from __future__ import annotations

import datetime as _dt
import pathlib
import threading
from collections.abc import Sequence

import structlog

from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import ConfigError, FailedPrecondition, NotFound, SealError
from skerry.sealer import crypto
from skerry.sealer.keys import backup
from skerry.sealer.keys.model import (
    DEFAULT_DOMAIN,
    DEFAULT_RENEWAL,
    KEY_BITS,
    KeyBackend,
    SealingKey,
    generate_key,
    normalize_domain,
)
from skerry.sealer.keys.storage import DirectoryBackend, EncryptedBackend, from_stored, to_stored

log = structlog.get_logger("skerry.sealer.keys")


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
        """Every key of ``domains`` (default: the opened ones) as a JSON-ready document (:mod:`.backup`).

        With ``kek`` the private keys inside are encrypted exactly as at rest; without it they are
        PEM in clear and the document must be protected like the keys themselves.
        """
        keys = {normalize_domain(d): self._load(normalize_domain(d)) for d in domains or self.domains}
        return backup.backup_document(keys, kek=kek, created=self._clock.now())

    def restore_document(self, doc: object, *, kek: bytes | None = None) -> dict[str, list[str]]:
        """Store every key of a backup that storage lacks; returns the restored key ids per domain.

        Each key is checked (parses, certificate matches, id matches) before anything is written.
        """
        parsed = backup.parse_backup(doc, kek=kek)
        restored: dict[str, list[str]] = {}
        for domain, key in parsed:
            with self._backend.lock(domain):
                if key.key_id in {k.key_id for k in self._load(domain)}:
                    continue
                self._backend.store(domain, to_stored(key))
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
        keys = [from_stored(domain, s) for s in self._backend.load(domain)]
        return tuple(sorted(keys, key=lambda k: (k.created, k.key_id), reverse=True))

    def _generate(self, domain: str, existing: Sequence[SealingKey]) -> SealingKey:
        # Certificate times have one-second resolution; keep them strictly increasing so
        # "newest" is never a tie, even for keys made in the same second.
        not_before = self._clock.now().astimezone(_dt.UTC).replace(microsecond=0)
        if existing and not_before <= existing[0].created:
            not_before = existing[0].created + _dt.timedelta(seconds=1)
        key = generate_key(domain, not_before=not_before, bits=self._key_bits)
        self._backend.store(domain, to_stored(key))
        return key


def _try_order(keys: Sequence[SealingKey], hint: str | None) -> list[SealingKey]:
    if not hint:
        return list(keys)
    return sorted(keys, key=lambda k: k.key_id != hint)  # stable: hinted first, then newest first
