"""Signing and publishing the trust repository: online keys, batches, snapshot and timestamp, expiry.

The hub signs timestamp, snapshot, the director and its bins with online keys.
Changes are batched (``batch``): publishing one bundle to 10,000 clusters signs
each changed bin once, writes the files without an fsync each, makes them
durable with one filesystem sync, then writes one snapshot and the timestamp
that publishes them; garbage collection follows each commit.

A batch may be given a heartbeat (``batch(alive=...)``): a release publishes
inside the writer's database transaction (``skerry.hub.writer.Releases``), and at
100,000 clusters the batch's work (directing every cluster, signing every
changed bin, linking and collecting target files) outlasts the writer lease.
The repository calls ``alive`` between units of that work (``_beat``) and
knows nothing else of the transaction; the heartbeat (``Tx.alive``) decides by
time when to make a statement that renews the lease.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
from collections.abc import Callable, Iterable, Iterator

import structlog
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp
from tuf.api.serialization.json import JSONSerializer

from skerry.core import trust
from skerry.core.canonical import sha256_hex
from skerry.core.errors import ConfigError
from skerry.core.files import sync_filesystem

log = structlog.get_logger("skerry.hub.trust")

# How long each role's metadata stays valid. Online roles are re-signed at half-life by ``refresh``.
DEFAULT_EXPIRY: dict[str, _dt.timedelta] = {
    "root": _dt.timedelta(days=365),
    "targets": _dt.timedelta(days=365),
    "release": _dt.timedelta(days=90),  # a release bin (CI keys, re-signed with every release it holds)
    "release-env": _dt.timedelta(days=365),  # release-<env>: the bin delegations, signed when keys change
    "director": _dt.timedelta(days=7),
    "cluster": _dt.timedelta(days=7),
    "snapshot": _dt.timedelta(days=7),
    "timestamp": _dt.timedelta(days=1),
}
SERIALIZER = JSONSerializer(compact=True)
VERSIONED = re.compile(r"^(?P<v>[1-9][0-9]*)\.(?P<role>[a-z0-9-]+)\.json$")


def expiry_kind(role: str) -> str:
    if trust.is_release_bin(role):
        return "release"
    if role.startswith(trust.RELEASE_PREFIX):
        return "release-env"
    if trust.is_director_bin(role):
        return "cluster"
    return role


class Publishing:
    """``TrustRepository``'s signing and publishing: online roles, batches, snapshot, timestamp, re-signing."""

    _alive: Callable[[], None] | None = None  # the outermost batch's heartbeat (``batch``), while it runs

    def _beat(self) -> None:
        """Between two units of a batch's work (a cluster directed, a role signed, a file linked or removed):
        the caller's heartbeat, if it gave one. One unit is short; their number grows with the fleet."""
        if self._alive is not None:
            self._alive()

    def _now(self) -> _dt.datetime:
        return self._clock.now().replace(microsecond=0)

    def _meta_file(self, role: str) -> MetaFile:
        """Version, length and SHA-256 of ``role``'s current file, as snapshot/timestamp list it.

        With length and hash listed, a client rejects a stale or swapped file by
        its hash before parsing it or checking any signature (python-tuf checks
        ``verify_length_and_hashes`` first, for cached files too).
        """
        raw = self._raw[role]
        return MetaFile(version=self.md[role].signed.version, length=len(raw), hashes={"sha256": sha256_hex(raw)})

    def _sign_online(self, role: str, md: Metadata) -> None:
        kind = "director" if trust.is_director_bin(role) else role
        signers = self._online.get(kind) or []
        if not signers:
            raise ConfigError(f"the hub has no online key for {kind!r} in {self.directory / 'keys'}")
        md.signatures.clear()
        for signer in signers:
            self._beat()
            md.sign(signer, append=True)

    def _bump(self, role: str, md: Metadata) -> None:
        if self.md.get(role) is md:  # a brand-new role starts at version 1
            md.signed.version += 1
        md.signed.expires = self._now() + self.expiry[expiry_kind(role)]

    def _commit(self, changed: Iterable[str]) -> None:
        """New snapshot listing the current version of every targets role, then a new timestamp.

        Inside ``batch()`` this only records ``changed``: the batch signs its dirty online roles and
        commits once at its end, so publishing to 10,000 clusters makes one snapshot, not 10,000.
        """
        if self._batch_depth:
            self._batch_changed.update(changed)
            return
        snap_md = self.md.get("snapshot")
        if snap_md is None:
            snap_md = Metadata(Snapshot(version=1, meta={}))
        meta = {f"{role}.json": self._meta_file(role) for role in self.md if role not in ("root", "snapshot", "timestamp")}
        if any(True for _ in changed) or snap_md.signed.meta != meta or "snapshot" not in self.md:
            snap_md.signed.meta = meta
            self._bump("snapshot", snap_md)
            self._sign_online("snapshot", snap_md)
            self._write("snapshot", snap_md)
        self._new_timestamp()
        self._collect_garbage()  # what the previous snapshot named stays; older files go

    @contextlib.contextmanager
    def batch(self, alive: Callable[[], None] | None = None) -> Iterator[None]:
        """Group changes: each changed online role is signed once and one snapshot + timestamp made.

        ``alive`` (the outermost batch's): called between units of the batch's work, its flush included
        (see the module docstring), by the thread that runs the batch."""
        outermost = not self._batch_depth
        if outermost:
            self._alive = alive
        try:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
            if not self._batch_depth:
                self._flush()
        finally:
            if outermost:
                self._alive = None

    def _touch(self, role: str, md: Metadata) -> None:
        """``role`` (an online role) changed: sign and write it now, or at the end of the batch."""
        self._dirty[role] = md
        if not self._batch_depth:
            self._flush()

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        changed, self._batch_changed = self._batch_changed, set()
        self._flushing = True
        try:
            self._link_targets()
            for role, md in dirty.items():
                self._bump(role, md)
                self._sign_online(role, md)
                self._write(role, md)
            if dirty or changed:
                self._commit([*dirty, *changed])
        finally:
            self._flushing = False

    def _new_timestamp(self) -> None:
        if self._unsynced:  # everything the new timestamp publishes is on disk before it
            sync_filesystem(self.metadata_dir)
            self._unsynced = False
        ts_md = self.md.get("timestamp") or Metadata(Timestamp(version=1))
        ts_md.signed.snapshot_meta = self._meta_file("snapshot")
        self._bump("timestamp", ts_md)
        self._sign_online("timestamp", ts_md)
        self._write("timestamp", ts_md)

    def refresh(self) -> list[str]:
        """Re-sign online roles with less than half their lifetime left; returns what was re-signed."""
        now = self._now()
        resigned: list[str] = []
        for role, md in list(self.md.items()):
            if role in ("root", "targets", "timestamp", "snapshot"):
                continue
            online = role == trust.DIRECTOR_ROLE or trust.is_director_bin(role)
            if online and md.signed.expires - now < self.expiry[expiry_kind(role)] / 2:
                self._bump(role, md)
                self._sign_online(role, md)
                self._write(role, md)
                resigned.append(role)
        snap = self.md.get("snapshot")
        if resigned or snap is None or snap.signed.expires - now < self.expiry["snapshot"] / 2:
            self._commit(resigned)
            resigned.append("snapshot")
        ts = self.md.get("timestamp")
        if "snapshot" in resigned:
            resigned.append("timestamp")  # _commit made a new one
        elif ts is None or ts.signed.expires - now < self.expiry["timestamp"] / 2:
            self._new_timestamp()
            resigned.append("timestamp")
        if resigned:
            log.info("trust metadata re-signed before expiry", roles=resigned)
        return resigned
