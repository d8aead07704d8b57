"""Reading the hub's list of revoked agent certificates: one reader for every service that checks it.

The hub writes the list (``skerry.hub.enrollment.revocation``, on ``skerry
cluster revoke``); the hub and the sealer both refuse a revoked certificate on
every RPC. The sealer reads the same file (``--revocations``, e.g. the hub's
``<state>/enrollment/revocations.json`` on a shared volume, or a copy synced
to the sealer's host), re-reading it when it changes, at most once per
``RELOAD_SECONDS``. File format::

    {"clusters": {"<name>": <unix seconds of revocation>},
     "fingerprints": {"<sha256 hex of DER>": <unix seconds of revocation>}}

Revoking a *cluster* revokes every certificate for it issued at or before that
moment (``not_before + CLOCK_SKEW <= revoked_at``); revoking a *fingerprint*
revokes that one certificate. A file that exists but cannot be parsed is a
``ConfigError`` (and the caller refuses rather than trusting everything).
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import pathlib
import time
from collections.abc import Callable

from skerry.core import documents
from skerry.core.errors import ConfigError, PermissionDenied
from skerry.core.tls import ROLE_AGENT, identity_from_pem

# Agent certificates start this early to tolerate clock differences (the hub's CA backdates them).
CLOCK_SKEW = _dt.timedelta(minutes=5)
# How quickly a running service sees `skerry cluster revoke` (one stat() per period).
RELOAD_SECONDS = 1.0
FILE_NAME = "revocations.json"
# The list holds a few entries per revoked cluster; anything bigger is not a revocation list.
MAX_FILE_BYTES = 4 * 1024 * 1024


class RevocationList:
    """The revocation file, re-read when its mtime or size changes."""

    def __init__(self, path: pathlib.Path, *, now: Callable[[], float] = time.time):
        self._path = pathlib.Path(path)
        self._now = now
        self.clusters: dict[str, float] = {}
        self.fingerprints: dict[str, float] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self.reload()

    @property
    def path(self) -> pathlib.Path:
        return self._path

    def reload(self) -> bool:
        """Re-read the file if it changed; True if it did."""
        self._checked = time.monotonic()
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return False
        if stamp is not None and stamp[1] > MAX_FILE_BYTES:
            raise ConfigError(f"{self._path} is {stamp[1]} bytes, over {MAX_FILE_BYTES}: not a revocation list")
        self._stamp = stamp
        if stamp is None:
            self.clusters, self.fingerprints = {}, {}
            return True
        try:
            doc = documents.load_json(self._path.read_bytes(), max_bytes=MAX_FILE_BYTES)
            self.clusters = {str(k): float(v) for k, v in doc.get("clusters", {}).items()}
            self.fingerprints = {str(k).lower(): float(v) for k, v in doc.get("fingerprints", {}).items()}
        except (ValueError, AttributeError, TypeError) as e:
            self._stamp = None  # try again next time rather than trusting a half-read list
            raise ConfigError(f"{self._path} is corrupt: {e}") from e
        return True

    def maybe_reload(self) -> None:
        """``reload`` at most once per ``RELOAD_SECONDS``: cheap enough to call on every RPC."""
        if time.monotonic() - self._checked >= RELOAD_SECONDS:
            self.reload()

    def check(self, cluster: str, fingerprint: str, not_before: _dt.datetime) -> None:
        """Raise ``PermissionDenied`` if this certificate is revoked."""
        if fingerprint in self.fingerprints:
            raise PermissionDenied(f"certificate {fingerprint} of cluster {cluster!r} is revoked")
        at = self.clusters.get(cluster)
        if at is not None and (not_before + CLOCK_SKEW).timestamp() <= at:
            raise PermissionDenied(
                f"certificate {fingerprint} of cluster {cluster!r}: certificates of that cluster issued before "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))} are revoked; re-enroll with a new token"
            )

    def check_certificate(self, cert_pem: bytes) -> None:
        """``check`` for a verified peer certificate (PEM); only agent certificates are ever revoked."""
        self.maybe_reload()
        ident, not_before = _agent_cert(bytes(cert_pem))
        if ident.has_role(ROLE_AGENT):
            self.check(ident.name, ident.fingerprint, not_before)


@functools.lru_cache(maxsize=20_000)  # one entry per agent certificate seen: a fleet's worth
def _agent_cert(pem: bytes):
    from cryptography import x509

    return identity_from_pem(pem), x509.load_pem_x509_certificate(pem).not_valid_before_utc
