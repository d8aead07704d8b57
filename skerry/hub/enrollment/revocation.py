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

import datetime as _dt
import json
import os
import pathlib
import time
from collections.abc import Callable

from skerry.core.errors import ConfigError, PermissionDenied
from skerry.hub.enrollment.authority import CLOCK_SKEW, MAX_CERT_LIFETIME
from skerry.hub.enrollment.tokens import _atomic_write

# How quickly a running hub sees `skerry cluster revoke` (one stat() per period).
RELOAD_SECONDS = 1.0
FILE_NAME = "revocations.json"


class Revocations:
    def __init__(self, directory: pathlib.Path, *, now: Callable[[], float] = time.time):
        self._path = pathlib.Path(directory) / FILE_NAME
        self._now = now
        self.clusters: dict[str, float] = {}
        self.fingerprints: dict[str, float] = {}
        self._stamp: tuple[int, int] | None = None
        self.reload()

    def reload(self) -> bool:
        """Re-read the file if it changed; True if it did."""
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        if stamp is None:
            self.clusters, self.fingerprints = {}, {}
            return True
        try:
            doc = json.loads(self._path.read_bytes())
            self.clusters = {str(k): float(v) for k, v in doc.get("clusters", {}).items()}
            self.fingerprints = {str(k).lower(): float(v) for k, v in doc.get("fingerprints", {}).items()}
        except (ValueError, AttributeError, TypeError) as e:
            raise ConfigError(f"{self._path} is corrupt: {e}") from e
        return True

    def _write(self) -> None:
        horizon = self._now() - MAX_CERT_LIFETIME.total_seconds() - CLOCK_SKEW.total_seconds()
        doc = {
            "clusters": {k: v for k, v in sorted(self.clusters.items()) if v > horizon},
            "fingerprints": {k: v for k, v in sorted(self.fingerprints.items()) if v > horizon},
        }
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _atomic_write(self._path, json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n", 0o644)
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

    def check(self, cluster: str, fingerprint: str, not_before: _dt.datetime) -> None:
        """Raise ``PermissionDenied`` if this certificate is revoked."""
        if fingerprint in self.fingerprints:
            raise PermissionDenied(f"certificate {fingerprint[:16]}… of cluster {cluster!r} is revoked")
        at = self.clusters.get(cluster)
        if at is not None and (not_before + CLOCK_SKEW).timestamp() <= at:
            raise PermissionDenied(
                f"certificates of cluster {cluster!r} issued before "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))} are revoked; re-enroll with a new token"
            )
