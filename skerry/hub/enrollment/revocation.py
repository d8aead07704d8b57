"""Revoked agent certificates, by cluster name or by fingerprint, enforced on every RPC and open stream.

File ``<state>/enrollment/revocations.json`` (written atomically by
``skerry cluster revoke`` on the hub host, re-read by the running hub within
``RELOAD_SECONDS``)::

    {"clusters": {"<name>": <unix seconds of revocation>},
     "fingerprints": {"<sha256 hex of DER>": <unix seconds of revocation>}}

Revoking a *cluster* revokes every certificate for it issued at or before
that moment (``not_before + CLOCK_SKEW <= revoked_at``); one issued later,
after a fresh ``skerry cluster add``, is valid again. Revoking a
*fingerprint* revokes that one certificate. Because agent certificates are
short-lived, an entry only matters until the certificates it covers expire;
entries older than ``MAX_CERT_LIFETIME`` are dropped when the file is next
written, so the list stays small and losing it re-exposes at most certificates
that expire within a week (a day by default).
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable

from skerry.core.errors import ConfigError
from skerry.core.files import atomic_write
from skerry.core.revocation import CLOCK_SKEW, FILE_NAME, RevocationFile, RevokedSet
from skerry.hub.enrollment.authority import MAX_CERT_LIFETIME

__all__ = ["FILE_NAME", "RELOAD_SECONDS", "Revocations"]

# How quickly a running hub sees `skerry cluster revoke` (one stat() per period); its open streams
# and the sealers following WatchRevocations learn it the same moment.
RELOAD_SECONDS = 0.5


class Revocations(RevocationFile):
    """The hub's list: read and re-read (``skerry.core.revocation``) plus written by ``skerry cluster revoke``."""

    def __init__(self, directory: pathlib.Path, *, now: Callable[[], float] = time.time):
        self._now = now
        super().__init__(pathlib.Path(directory) / FILE_NAME)

    def _write(self, clusters: dict[str, float], fingerprints: dict[str, float]) -> None:
        horizon = self._now() - MAX_CERT_LIFETIME.total_seconds() - CLOCK_SKEW.total_seconds()
        kept = RevokedSet(
            {k: v for k, v in clusters.items() if v > horizon},
            {k: v for k, v in fingerprints.items() if v > horizon},
        )
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path, kept.to_bytes(), 0o644)
        self.reload()

    def revoke_cluster(self, cluster: str) -> None:
        self.reload()
        self._write({**self.clusters, cluster: float(int(self._now()))}, dict(self.fingerprints))

    def revoke_fingerprint(self, fingerprint: str) -> None:
        fp = fingerprint.lower().replace(":", "")
        if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
            raise ConfigError(f"{fingerprint!r} is not a SHA-256 certificate fingerprint (64 hex digits)")
        self.reload()
        self._write(dict(self.clusters), {**self.fingerprints, fp: float(int(self._now()))})
