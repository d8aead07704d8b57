"""Revoked agent certificates, by cluster name or by fingerprint, enforced on every RPC and open stream.

The list lives in the hub state (``skerry.hub.state``: table ``revocations``),
written by ``skerry cluster revoke`` on the hub host (or by any process with
the state's DSN) and re-read by every running hub within ``RELOAD_SECONDS``;
sealers follow it over ``EnrollmentService.WatchRevocations``. Each hub also
exports it to ``<state>/enrollment/revocations.json`` (atomic write, the
format of ``skerry.core.revocation``)::

    {"clusters": {"<name>": <unix seconds of revocation>},
     "fingerprints": {"<sha256 hex of DER>": <unix seconds of revocation>}}

Revoking a *cluster* revokes every certificate for it issued at or before
that moment (``not_before + CLOCK_SKEW <= revoked_at``); one issued later,
after a fresh ``skerry cluster add``, is valid again. Revoking a
*fingerprint* revokes that one certificate. Because agent certificates are
short-lived, an entry only matters until the certificates it covers expire;
entries older than ``MAX_CERT_LIFETIME`` are dropped on the next revocation,
so the list stays small and losing it re-exposes at most certificates that
expire within a week (a day by default).

Upgrade: older hubs kept the list only in that file. Opening ``Revocations``
merges the file into the state (an entry keeps its later time), so the first
start after an upgrade loses none. If the state cannot be read, the list
last read stays in force (and the failure is logged), never an empty one.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable

import structlog

from skerry.core.errors import ConfigError
from skerry.core.files import atomic_write
from skerry.core.revocation import CLOCK_SKEW, FILE_NAME, RevocationList, RevokedSet, read_file
from skerry.hub.enrollment.authority import MAX_CERT_LIFETIME
from skerry.hub.state import HubState, StateUnavailable

__all__ = ["FILE_NAME", "RELOAD_SECONDS", "Revocations"]

log = structlog.get_logger("skerry.hub.enrollment.revocation")

# How quickly a running hub sees `skerry cluster revoke` (one small read of the state per period);
# its open streams and the sealers following WatchRevocations learn it the same moment.
RELOAD_SECONDS = 0.5


class Revocations(RevocationList):
    """The hub's list: in the hub state, re-read by ``reload``, exported to the file for people and tools."""

    def __init__(self, directory: pathlib.Path, state: HubState, *, now: Callable[[], float] = time.time):
        super().__init__()
        self._state = state
        self._now = now
        self._path = pathlib.Path(directory) / FILE_NAME
        self._exported = False
        self._import()
        self.reload()

    @property
    def path(self) -> pathlib.Path:
        return self._path

    def _import(self) -> None:
        previous = read_file(self._path)  # what an older hub (or a previous export) wrote; checked and bounded
        if previous is None or not (previous.clusters or previous.fingerprints):
            return
        with self._state.write() as tx:
            for name, at in previous.clusters.items():
                tx.revoke("cluster", name, at)
            for fp, at in previous.fingerprints.items():
                tx.revoke("fingerprint", fp, at)

    def reload(self) -> bool:
        """Re-read the list from the state; on a change, export it. True if it changed."""
        try:
            with self._state.read() as tx:
                doc = tx.revocations()
        except StateUnavailable as e:
            log.error("revocation list unreadable; the last one read stays in force", error=str(e))
            return False
        revoked = RevokedSet.from_mapping(doc, f"{self._state.url} revocations")
        if (revoked.clusters, revoked.fingerprints) == (self.clusters, self.fingerprints) and self._exported:
            return False
        self.revoked = revoked
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self._path, revoked.to_bytes(), 0o644)
        self._exported = True  # later reloads export only on a change
        return True

    def _revoke(self, kind: str, key: str) -> None:
        horizon = self._now() - MAX_CERT_LIFETIME.total_seconds() - CLOCK_SKEW.total_seconds()
        with self._state.write() as tx:
            tx.prune_revocations(horizon)
            tx.revoke(kind, key, float(int(self._now())))
        self.reload()

    def revoke_cluster(self, cluster: str) -> None:
        self._revoke("cluster", cluster)

    def revoke_fingerprint(self, fingerprint: str) -> None:
        fp = fingerprint.lower().replace(":", "")
        if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
            raise ConfigError(f"{fingerprint!r} is not a SHA-256 certificate fingerprint (64 hex digits)")
        self._revoke("fingerprint", fp)
