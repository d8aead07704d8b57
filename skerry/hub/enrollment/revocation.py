"""Revoked agent certificates, by cluster name or by fingerprint, enforced on every RPC and open stream.

The list lives in the hub state (``skerry.hub.state``: table ``revocations``),
written by ``skerry cluster revoke`` on the hub host (or by any process with
the state's DSN) and re-read by every running hub within ``RELOAD_SECONDS``.
Each hub also exports it to ``<state>/enrollment/revocations.json`` (atomic
write) for the sealer, which reads that file (``skerry.core.revocation``)::

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

import json
import pathlib
import time
from collections.abc import Callable

import structlog

from skerry.core.errors import ConfigError
from skerry.core.files import atomic_write
from skerry.core.revocation import CLOCK_SKEW, FILE_NAME, RELOAD_SECONDS, RevocationList
from skerry.hub.enrollment.authority import MAX_CERT_LIFETIME
from skerry.hub.state import HubState, StateUnavailable

__all__ = ["FILE_NAME", "RELOAD_SECONDS", "Revocations"]

log = structlog.get_logger("skerry.hub.enrollment.revocation")


class Revocations(RevocationList):
    """The hub's side: the list in the hub state, exported to the file the sealer reads."""

    def __init__(self, directory: pathlib.Path, state: HubState, *, now: Callable[[], float] = time.time):
        self._state = state
        self._exported = False
        path = pathlib.Path(directory) / FILE_NAME
        self._import(path)
        super().__init__(path, now=now)

    def _import(self, path: pathlib.Path) -> None:
        legacy = RevocationList(path)  # reads (and checks) the file an older hub or a previous export wrote
        if not legacy.clusters and not legacy.fingerprints:
            return
        with self._state.write() as tx:
            for name, at in legacy.clusters.items():
                tx.revoke("cluster", name, at)
            for fp, at in legacy.fingerprints.items():
                tx.revoke("fingerprint", fp, at)

    def reload(self) -> bool:
        """Re-read the list from the state; on a change, export it for the sealer. True if it changed."""
        self._checked = time.monotonic()
        try:
            with self._state.read() as tx:
                doc = tx.revocations()
        except StateUnavailable as e:
            log.error("revocation list unreadable; the last one read stays in force", error=str(e))
            return False
        if (doc["clusters"], doc["fingerprints"]) == (self.clusters, self.fingerprints) and self._exported:
            return False
        self.clusters, self.fingerprints = doc["clusters"], doc["fingerprints"]
        self._export(doc)
        return True

    def _export(self, doc: dict) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self._path, json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n", 0o644)
        self._exported = True  # later reloads export only on a change

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
