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

import json
import pathlib
import time
from collections.abc import Callable

from skerry.core.errors import ConfigError
from skerry.core.files import atomic_write
from skerry.core.revocation import CLOCK_SKEW, FILE_NAME, RELOAD_SECONDS, RevocationList
from skerry.hub.enrollment.authority import MAX_CERT_LIFETIME

__all__ = ["FILE_NAME", "RELOAD_SECONDS", "Revocations"]


class Revocations(RevocationList):
    """The hub's side: reading (``skerry.core.revocation``, shared with the sealer) plus writing."""

    def __init__(self, directory: pathlib.Path, *, now: Callable[[], float] = time.time):
        super().__init__(pathlib.Path(directory) / FILE_NAME, now=now)

    def _write(self) -> None:
        horizon = self._now() - MAX_CERT_LIFETIME.total_seconds() - CLOCK_SKEW.total_seconds()
        doc = {
            "clusters": {k: v for k, v in sorted(self.clusters.items()) if v > horizon},
            "fingerprints": {k: v for k, v in sorted(self.fingerprints.items()) if v > horizon},
        }
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self._path, json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n", 0o644)
        self._stamp = None
        self.reload()

    def revoke_cluster(self, cluster: str) -> None:
        self.reload()
        self.clusters[cluster] = float(int(self._now()))
        self._write()

    def revoke_fingerprint(self, fingerprint: str) -> None:
        fp = fingerprint.lower().replace(":", "")
        if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
            raise ConfigError(f"{fingerprint!r} is not a SHA-256 certificate fingerprint (64 hex digits)")
        self.reload()
        self.fingerprints[fp] = float(int(self._now()))
        self._write()
