"""The list of revoked agent certificates: its format, its bounds and the rule that applies it.

The hub owns the list (``skerry.hub.enrollment.revocation`` writes it on
``skerry cluster revoke``) and serves it to sealers over
``EnrollmentService.WatchRevocations``; every server's authorisation
interceptor (``skerry.core.authz``) refuses a revoked certificate on every
RPC. The same document is the hub's file and the sealer's persisted copy::

    {"clusters": {"<name>": <unix seconds of revocation>},
     "fingerprints": {"<sha256 hex of DER>": <unix seconds of revocation>}}

Revoking a *cluster* revokes every certificate for it issued at or before that
moment (``not_before + CLOCK_SKEW <= revoked_at``); revoking a *fingerprint*
revokes that one certificate. A list that cannot be parsed, or breaks a bound,
is a ``ConfigError``: callers keep the previous list rather than trust everything.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import pathlib
import re
import time
from collections.abc import Mapping

from skerry.core import documents
from skerry.core.authz import Caller
from skerry.core.errors import ConfigError, PermissionDenied
from skerry.core.files import read_bounded_if_present
from skerry.core.tls import ROLE_AGENT

# Agent certificates start this early to tolerate clock differences (the hub's CA backdates them).
CLOCK_SKEW = _dt.timedelta(minutes=5)
FILE_NAME = "revocations.json"
# The list holds a few entries per revoked cluster, dropped once the certificates they cover expired;
# anything bigger is not a revocation list (and would not fit one gRPC message either).
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_ENTRIES = 50_000
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
# Cluster names are DNS names (skerry.hub.enrollment.tokens.check_cluster_name).
MAX_CLUSTER_CHARS = 253
# The refusal reason of a call made with a revoked certificate.
REVOKED = "Revoked"


@dataclasses.dataclass(frozen=True)
class RevokedSet:
    """One version of the list: what is revoked, and since when (unix seconds)."""

    clusters: Mapping[str, float] = dataclasses.field(default_factory=dict)
    fingerprints: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_mapping(cls, doc: object, source: str) -> RevokedSet:
        """Parse and bound a list from the JSON document or the proto's maps; ``ConfigError`` names ``source``."""
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{source}: a revocation list is a mapping with 'clusters' and 'fingerprints'")
        try:
            clusters = {str(k): float(v) for k, v in dict(doc.get("clusters") or {}).items()}
            fingerprints = {str(k).lower(): float(v) for k, v in dict(doc.get("fingerprints") or {}).items()}
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{source}: malformed revocation list ({e})") from e
        if len(clusters) + len(fingerprints) > MAX_ENTRIES:
            raise ConfigError(f"{source}: over {MAX_ENTRIES} revocations; not a revocation list")
        bad = next((c for c in clusters if not c or len(c) > MAX_CLUSTER_CHARS), None)
        if bad is not None:
            raise ConfigError(f"{source}: {bad[:64]!r} is not a cluster name")
        bad = next((f for f in fingerprints if not _FINGERPRINT.match(f)), None)
        if bad is not None:
            raise ConfigError(f"{source}: {bad[:80]!r} is not a SHA-256 certificate fingerprint")
        return cls(clusters, fingerprints)

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> RevokedSet:
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(f"{source} is {len(data)} bytes, over {MAX_FILE_BYTES}: not a revocation list")
        try:
            doc = documents.load_json(data, max_bytes=MAX_FILE_BYTES)
        except ValueError as e:
            raise ConfigError(f"{source} is corrupt: {e}") from e
        return cls.from_mapping(doc, source)

    def to_bytes(self) -> bytes:
        doc = {"clusters": dict(sorted(self.clusters.items())), "fingerprints": dict(sorted(self.fingerprints.items()))}
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def read_file(path: pathlib.Path) -> RevokedSet | None:
    """The list stored at ``path`` (None if there is no file); bounded before it is read (``ConfigError``)."""
    data = read_bounded_if_present(path, MAX_FILE_BYTES, f"revocation list {path}", error=ConfigError)
    return None if data is None else RevokedSet.from_bytes(data, str(path))


class RevocationList:
    """The list in force and the rule: the interceptor's ``Revocations``."""

    def __init__(self, revoked: RevokedSet | None = None):
        self.revoked = revoked or RevokedSet()

    @property
    def clusters(self) -> Mapping[str, float]:
        return self.revoked.clusters

    @property
    def fingerprints(self) -> Mapping[str, float]:
        return self.revoked.fingerprints

    def check(self, cluster: str, fingerprint: str, not_before: _dt.datetime) -> None:
        """Raise ``PermissionDenied`` if this certificate is revoked."""
        if fingerprint in self.revoked.fingerprints:
            raise PermissionDenied(f"certificate {fingerprint} of cluster {cluster!r} is revoked", reason=REVOKED)
        at = self.revoked.clusters.get(cluster)
        if at is not None and (not_before + CLOCK_SKEW).timestamp() <= at:
            raise PermissionDenied(
                f"certificate {fingerprint} of cluster {cluster!r}: certificates of that cluster issued before "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))} are revoked; re-enroll with a new token",
                reason=REVOKED,
            )

    def check_caller(self, caller: Caller) -> None:
        """``check`` for an authenticated caller; only agent certificates are ever revoked."""
        ident = caller.identity
        if ident is not None and caller.not_before is not None and ident.has_role(ROLE_AGENT):
            self.check(ident.name, ident.fingerprint, caller.not_before)


class RevocationFile(RevocationList):
    """A list kept in a file, re-read when its mtime or size changed (the hub's own, on its state volume)."""

    def __init__(self, path: pathlib.Path):
        super().__init__()
        self._path = pathlib.Path(path)
        self._stamp: tuple[int, int] | None = None
        self.reload()

    @property
    def path(self) -> pathlib.Path:
        return self._path

    def reload(self) -> bool:
        """Re-read the file if it changed; True if it did. ``ConfigError`` keeps the previous list."""
        try:
            st = os.stat(self._path)
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return False
        revoked = read_file(self._path) if stamp is not None else RevokedSet()
        self._stamp = stamp
        self.revoked = revoked or RevokedSet()
        return True
