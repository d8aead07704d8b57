"""Bundle verification with rollback state that survives restarts.

``Verifier.verify`` turns metadata + bundle bytes into a ``VerifiedBundle``
through ``skerry.core.bundle.verify_signed_bundle`` (signature threshold,
expiry, cluster, rollback, mix-and-match, hash) and then persists the highest
verified release and its digest in ``<state_dir>/verifier-state.json``
(atomic write), so a restarted agent still refuses an older bundle. Nothing
unverified goes further than this module.

A state file that cannot be read is a hard error, never "start from zero":
starting from zero would re-open the door to rollback.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import threading
from collections.abc import Iterable, Mapping

from securesystemslib.signer import Key

from skerry.core import documents
from skerry.core.bundle import VerifiedBundle, envelope_expires, load_public_key, verify_signed_bundle
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import ConfigError, VerificationError
from skerry.core.files import atomic_write

STATE_FILE = "verifier-state.json"
STATE_KIND = "skerry.io/v1alpha1 VerifierState"


class Verifier:
    def __init__(
        self,
        cluster: str,
        trusted_keys: Mapping[str, Key] | Iterable[Key],
        state_dir: str | os.PathLike,
        clock: Clock | None = None,
        *,
        threshold: int = 1,
    ):
        if not cluster:
            raise ConfigError("the verifier needs the agent's cluster name")
        keys = dict(trusted_keys) if isinstance(trusted_keys, Mapping) else {k.keyid: k for k in trusted_keys}
        if not keys:
            raise ConfigError("no trusted hub keys: every bundle would be rejected")
        if threshold < 1 or threshold > len(keys):
            raise ConfigError(
                f"signature threshold {threshold} must be between 1 and the {len(keys)} trusted key(s)"
            )
        self.cluster = cluster
        self._keys = keys
        self._threshold = threshold
        self._clock = clock or SystemClock()
        self._path = pathlib.Path(state_dir) / STATE_FILE
        self._lock = threading.Lock()
        self._release, self._digest = self._load()

    @classmethod
    def from_key_files(
        cls,
        cluster: str,
        key_files: Iterable[str | os.PathLike],
        state_dir: str | os.PathLike,
        clock: Clock | None = None,
        *,
        threshold: int = 1,
    ) -> Verifier:
        return cls(
            cluster,
            [load_public_key(pathlib.Path(p)) for p in key_files],
            state_dir,
            clock,
            threshold=threshold,
        )

    @property
    def last_release(self) -> int:
        return self._release

    @property
    def last_digest(self) -> str:
        return self._digest

    @property
    def state_file(self) -> pathlib.Path:
        return self._path

    # --- verification -----------------------------------------------------------------------

    def verify(self, metadata: bytes, bundle_bytes: bytes) -> VerifiedBundle:
        """Verify and, if newer, record as the highest verified release. Raises ``VerificationError``."""
        return self._verify_and_record(metadata, bundle_bytes, {})

    def verify_message(self, signed) -> VerifiedBundle:
        """Verify a ``skerry.api.v1.SignedBundle``; its unsigned hints must equal the verified values."""
        hints = {"cluster": signed.cluster, "version": signed.version}
        if signed.digest:
            hints["digest"] = signed.digest
        return self._verify_and_record(bytes(signed.metadata), bytes(signed.bundle), hints)

    def _verify_and_record(
        self, metadata: bytes, bundle_bytes: bytes, hints: Mapping[str, object]
    ) -> VerifiedBundle:
        with self._lock:
            verified = self._verify(metadata, bundle_bytes, self._clock.now())
            actual = {
                "cluster": verified.bundle.cluster,
                "version": verified.release,
                "digest": verified.digest,
            }
            for name, hint in hints.items():
                if hint != actual[name]:
                    raise VerificationError(
                        f"SignedBundle.{name} {hint!r} does not match the verified value {actual[name]!r}",
                        reason="HintMismatch",
                    )
            if verified.release > self._release or verified.digest != self._digest:
                self._save(verified.release, verified.digest)
            return verified

    def reverify(self, metadata: bytes, bundle_bytes: bytes) -> tuple[VerifiedBundle, bool]:
        """Verify a cached bundle, tolerating only expiry: ``(verified, expired)``.

        Everything else (signature, cluster, rollback, hash) must still hold.
        An expired envelope is re-applied as the last good state, reported
        as stale; it never advances the recorded state.
        """
        with self._lock:
            try:
                return self._verify(metadata, bundle_bytes, self._clock.now()), False
            except VerificationError as e:
                if e.reason != "Expired":
                    raise
            # The signatures verified (expiry is checked after them); check the rest as of just before expiry.
            expires = _expires(metadata)
            return self._verify(metadata, bundle_bytes, expires - _dt.timedelta(seconds=1)), True

    def _verify(self, metadata: bytes, bundle_bytes: bytes, now: _dt.datetime) -> VerifiedBundle:
        return verify_signed_bundle(
            metadata,
            bundle_bytes,
            cluster=self.cluster,
            trusted_keys=self._keys,
            threshold=self._threshold,
            last_release=self._release,
            last_digest=self._digest,
            now=now,
        )

    # --- state ------------------------------------------------------------------------------

    def _load(self) -> tuple[int, str]:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return 0, ""
        except OSError as e:
            raise ConfigError(f"cannot read verifier state {self._path}: {e.strerror}") from e
        try:
            doc = documents.load_json(raw, max_bytes=documents.MAX_STATE_FILE_BYTES)
            release, digest, cluster = doc["release"], doc["digest"], doc["cluster"]
            if not isinstance(release, int) or release < 0 or not isinstance(digest, str):
                raise ValueError("bad types")
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(
                f"verifier state {self._path} is corrupt ({e}); refusing to start without rollback protection. "
                "Remove it only if you accept that any older signed bundle may be applied once."
            ) from e
        if cluster != self.cluster:
            raise ConfigError(
                f"verifier state {self._path} belongs to cluster {cluster!r}, not {self.cluster!r}"
            )
        return release, digest

    def _save(self, release: int, digest: str) -> None:
        doc = {"kind": STATE_KIND, "cluster": self.cluster, "release": release, "digest": digest}
        try:
            atomic_write(self._path, json.dumps(doc, sort_keys=True).encode() + b"\n")
        except OSError as e:
            # Not persisting would weaken rollback protection after a restart: refuse the bundle.
            raise VerificationError(
                f"cannot persist verifier state {self._path}: {e.strerror}", reason="StateNotPersisted"
            ) from e
        self._release, self._digest = release, digest


def _expires(metadata: bytes) -> _dt.datetime:
    return envelope_expires(metadata)  # a TUF envelope or a release statement
