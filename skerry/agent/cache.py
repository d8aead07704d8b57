"""The last verified bundle on disk, so an agent that restarts without its hub still converges.

Exactly the bytes that verified are kept — the TUF metadata and the bundle
document — so SealedSecrets stay sealed here and no plaintext ever reaches
the disk. Layout under ``<state_dir>/bundle-cache/`` (0700, files 0600)::

    metadata-<sha256>.json   the TUF evidence it verified with (director + release metadata)
    bundle-<sha256>.json     the bundle document it describes
    current                  "<sha256>\\n": which pair is the last verified one

The pair is written first and ``current`` is switched atomically last, so a
crash leaves either the old or the new pair selected, never a mix. Nothing
read back is trusted: ``restore`` re-verifies it (``TufVerifier.reverify``),
which re-applies it only if it is the last verified bundle (expired metadata is flagged).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

import structlog

from skerry.core.bundle import VerifiedBundle
from skerry.core.canonical import sha256_hex
from skerry.core.errors import VerificationError
from skerry.core.files import STATE_CORRUPT, atomic_write, ensure_dir, unwritable

log = structlog.get_logger("skerry.agent.cache")

CACHE_DIR = "bundle-cache"
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class Restored:
    verified: VerifiedBundle
    expired: bool


class BundleCache:
    def __init__(self, state_dir: str | os.PathLike):
        self.directory = pathlib.Path(state_dir) / CACHE_DIR

    def save(self, verified: VerifiedBundle) -> None:
        """Keep ``verified`` (its signed bytes, still sealed) as the last verified bundle."""
        ensure_dir(self.directory)
        algo, _, hexdigest = verified.digest.partition(":")
        if algo != "sha256" or not _HEX.match(hexdigest):  # the verifier hashed it already; never hash twice
            hexdigest = sha256_hex(verified.raw)
        try:
            atomic_write(self.directory / f"metadata-{hexdigest}.json", verified.metadata)
            atomic_write(self.directory / f"bundle-{hexdigest}.json", verified.raw)
            atomic_write(self.directory / "current", f"{hexdigest}\n".encode())
        except OSError as e:
            raise unwritable(e, f"the bundle cache {self.directory}") from None
        self._collect(keep=hexdigest)

    def load(self) -> tuple[bytes, bytes] | None:
        """``(metadata, bundle)`` of the last saved bundle, unverified; ``None`` if there is none."""
        try:
            hexdigest = self._pointer()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("bundle cache unreadable", path=str(self.directory), error=e.strerror)
            return None
        if not _HEX.match(hexdigest):
            log.warning("bundle cache pointer is corrupt", path=str(self.directory / "current"), reason=STATE_CORRUPT)
            return None
        try:
            metadata = (self.directory / f"metadata-{hexdigest}.json").read_bytes()
            bundle = (self.directory / f"bundle-{hexdigest}.json").read_bytes()
        except OSError as e:
            log.warning("bundle cache incomplete", path=str(self.directory), error=e.strerror)
            return None
        return metadata, bundle

    def _pointer(self) -> str:
        """The hex digest ``current`` names; bytes that are not ASCII come back as a corrupt pointer."""
        return (self.directory / "current").read_bytes().decode("ascii", "replace").strip()

    def restore(self, verifier) -> Restored | None:
        """Re-verify the cached bundle with the agent's verifier; ``None`` if there is no cache.

        Raises ``VerificationError`` if it no longer verifies for any reason
        other than expiry (e.g. tampered with, or older than what the
        verifier has seen since).
        """
        loaded = self.load()
        if loaded is None:
            return None
        metadata, bundle = loaded
        try:
            verified, expired = verifier.reverify(metadata, bundle)
        except VerificationError as e:  # name the files: an operator may want to look at them
            pointer = self._pointer()
            raise VerificationError(f"cached {self.directory / f'bundle-{pointer}.json'}: {e}", reason=e.reason) from None
        return Restored(verified=verified, expired=expired)

    def clear(self) -> None:
        self._collect(keep=None)

    def _collect(self, keep: str | None) -> None:
        if not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            name = path.name
            if keep is not None and (
                name == "current" or name in (f"metadata-{keep}.json", f"bundle-{keep}.json")
            ):
                continue
            try:
                path.unlink()
            except OSError:
                pass
