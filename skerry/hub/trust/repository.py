"""The hub's TUF repository: what the director points at, what the release side signed.

A trust directory (``skerry keys init`` makes it)::

    config.json        {"environments": {"prod": {"keys": 3, "threshold": 2}, ...}[, "dev_release_keys": ...]}
    keys/<role>.key    online keys the hub signs with (0600): timestamp, snapshot, director
    offline/...        root, targets and release keys made by ``init`` — move them off the hub
    repository/        the served repository: roles, file names and byte formats in ``skerry.core.trust``

``TrustRepository`` is the facade the hub, the servicer and ``skerry keys``
use; each verb has its own module: ``directing`` (the director, online key),
``releasing`` (release proposals and signatures), ``publishing`` (signing,
batches, snapshot and timestamp, re-signing at half-life) and ``storage``
(the files, and the garbage collection that bounds them). The hub signs only
with online keys, and release bins for environments whose release keys it
holds. Everything else changes through ``skerry keys`` (picked up by
``reload``) or ``submit_release`` (CI signatures collected over gRPC,
published at the threshold). Writes are atomic; a version is never rewritten
with different content.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from typing import Protocol

import structlog
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization import DeserializationError

from skerry.core import trust
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import ConfigError
from skerry.core.files import STATE_CORRUPT
from skerry.hub.trust import keys as keyfiles
from skerry.hub.trust.directing import Directed, Directing
from skerry.hub.trust.publishing import DEFAULT_EXPIRY, SERIALIZER, VERSIONED, Publishing, expiry_kind
from skerry.hub.trust.releasing import (
    MAX_RELEASES_PER_CLUSTER,
    Releasing,
    SubmitResult,
    count_valid_signatures,
)
from skerry.hub.trust.storage import BlobCache, RepositoryFiles, ServedFiles, _atomic_write

__all__ = [
    "CONFIG_FILE", "DEFAULT_EXPIRY", "DEV_RELEASE_KEYS", "MAX_RELEASES_PER_CLUSTER", "Directed", "NotImported",
    "SubmitResult",
    "TrustRepository", "_SERIALIZER", "_atomic_write", "count_valid_signatures", "expiry_kind",
]

log = structlog.get_logger("skerry.hub.trust")

CONFIG_FILE = "config.json"
# config.json key of a ``skerry keys init --dev`` directory: env -> release key files the hub signs with.
DEV_RELEASE_KEYS = "dev_release_keys"
ONLINE_ROLES = ("timestamp", "snapshot", trust.DIRECTOR_ROLE)
_SERIALIZER = SERIALIZER  # the name callers import


def newer_files(directory: pathlib.Path, stored: Mapping[str, int], *, offline_only: bool
                ) -> list[tuple[pathlib.Path, str, int]]:
    """The versioned files in ``directory`` newer than ``stored`` (role -> version), as (path, role, version);
    ``offline_only``: not of the roles the hub signs online (``skerry keys`` never writes them)."""
    newer = []
    for path in sorted(directory.iterdir()):
        m = VERSIONED.match(path.name)
        if m is None or int(m["v"]) <= stored.get(m["role"], 0):
            continue
        if offline_only and (m["role"] in ONLINE_ROLES or trust.is_director_bin(m["role"])):
            continue
        newer.append((path, m["role"], int(m["v"])))
    return newer


class NotImported(ConfigError):
    """The hub state holds no trust metadata yet and this process may not import it (it is not the writer):
    ``skerry.hub.trust.awaiting`` waits for the writer's first import."""


class Storage(Protocol):
    """Where the files live besides (or instead of) the directory: ``skerry.hub.state.trust_files.TrustFiles``."""

    on_abandon: Callable[[], None] | None
    on_commit: Callable[[], None] | None

    def newest(self) -> dict[str, tuple[int, bytes]]: ...

    def metadata(self, name: str) -> bytes | None: ...

    def blob(self, hexdigest: str) -> bytes | None: ...

    def put_metadata(self, name: str, role: str, version: int, data: bytes) -> None: ...

    def put_blob(self, hexdigest: str, data: bytes) -> None: ...

    def published(self) -> None: ...

    def drop_metadata(self, role: str, below: int) -> None: ...

    def drop_blobs(self, digests: Collection[str]) -> None: ...

    @property
    def may_publish(self) -> bool: ...

    def collect(self, keep: Callable[[], Collection[str]]) -> int: ...

    def pending(self, decode: Callable[[bytes], Metadata], encode: Callable[[Metadata], bytes]
                ) -> MutableMapping[str, Metadata]: ...


class TrustRepository(RepositoryFiles, ServedFiles, Publishing, Directing, Releasing):
    """The repository in memory (latest version of each role) and on disk."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        online: Mapping[str, Sequence[Signer]] | None = None,
        release_signers: Mapping[str, Sequence[Signer]] | None = None,
        clock: Clock | None = None,
        expiry: Mapping[str, _dt.timedelta] | None = None,
        storage: Storage | None = None,
    ):
        trust.use_fast_canonical_json()
        self._storage = storage
        self.directory = pathlib.Path(directory)
        self.metadata_dir = self.directory / "repository" / "metadata"
        self.targets_dir = self.directory / "repository" / "targets"
        self.blobs_dir = self.directory / "repository" / "blobs"
        self._clock = clock or SystemClock()
        self.expiry = {**DEFAULT_EXPIRY, **(expiry or {})}
        self.md: dict[str, Metadata] = {}
        self._raw: dict[str, bytes] = {}  # the bytes served for each role's current version (snapshot hashes them)
        # release signatures collected below their threshold: in the storage (every replica's) if there is one
        self._pending: MutableMapping[str, Metadata] = (
            {} if storage is None else storage.pending(Metadata.from_bytes, lambda md: md.to_bytes(SERIALIZER)))
        self.stale = False  # see ``reset``
        self._unexported: list[tuple[str, bytes]] = []  # metadata files the state has yet to commit (then exported)
        self._listeners: list[Callable[[str], None]] = []
        self._blobs = BlobCache()  # sha256 hex -> bytes, the newest MEMORY_BLOBS
        self._dirty: dict[str, Metadata] = {}  # online roles changed in this batch, signed once at its end
        self._batch_depth = 0
        self._batch_changed: set[str] = set()
        self._flushing = False
        self._unlinked: dict[str, str] = {}  # target path -> sha256 hex added since the last link pass
        self._linked_dirs: set[str] = set()
        self._unsynced = False  # files written without fsync since the last timestamp
        self._offered: dict[tuple[str, str], str] = {}  # (env, cluster) -> release path proposed to CI
        self._newest: dict[tuple[str, str], str] = {}  # (env, cluster) -> its release published last
        # garbage collection (``storage``): paths each targets role's current and previous version list,
        # files to remove once the commit that made them obsolete is published
        self._paths: dict[str, frozenset[str]] = {}
        self._previous_paths: dict[str, frozenset[str]] = {}
        self._obsolete: list[str] = []
        self._gone: set[str] = set()
        self._blob_candidates: set[str] = set()
        self.load()
        self._directing = self._director_index()  # cluster -> the one path the director lists for it
        self._online = dict(online) if online is not None else self._load_online_keys()
        self._release_signers = {trust.release_role(e): list(s) for e, s in (release_signers or {}).items()}
        if storage is not None:  # only once whole: a publication abandoned meanwhile has nothing to reset
            storage.on_abandon, storage.on_commit = self.reset, self._export

    @classmethod
    def open(cls, directory, *, clock: Clock | None = None, release_keys: Iterable[tuple[str, str]] = (),
             expiry: Mapping[str, _dt.timedelta] | None = None, storage: Storage | None = None) -> TrustRepository:
        """Open a trust directory; ``release_keys`` are ``(env, key ref)`` the hub may sign releases with.

        Giving the hub a release key collapses the split for that environment
        (the hub alone can then ship it): meant for dev environments only.
        """
        signers: dict[str, list[Signer]] = {}
        if not (pathlib.Path(directory) / "repository" / "metadata").is_dir():
            raise ConfigError(f"{directory} is not a trust directory; create one with `skerry keys init`")
        dev = cls._dev_release_keys(pathlib.Path(directory))
        if dev:
            log.warning("DEV TRUST DIRECTORY (skerry keys init --dev): this hub holds every role's key and "
                        "releases every bundle itself; anyone who can read it can ship anything to every "
                        "cluster. For one operator's trial only.", directory=str(directory), environments=sorted(dev))
        for env, ref in [*release_keys, *((e, r) for e, refs in dev.items() for r in refs)]:
            signer = keyfiles.load_signer(ref)
            if all(s.public_key.keyid != signer.public_key.keyid for s in signers.get(env, [])):
                signers.setdefault(env, []).append(signer)
        repo = cls(directory, release_signers=signers, clock=clock, expiry=expiry, storage=storage)
        repo.collect_all_garbage()  # what a crash between a commit and its collection, or an older hub, left
        repo.collect_stored_garbage()  # and in the hub state, when this process is the writer
        return repo

    @staticmethod
    def _dev_release_keys(directory: pathlib.Path) -> dict[str, list[str]]:
        try:
            config = json.loads((directory / CONFIG_FILE).read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {directory / CONFIG_FILE}: {e}") from e
        dev = config.get(DEV_RELEASE_KEYS) or {}
        if not isinstance(dev, dict):
            raise ConfigError(f"{directory / CONFIG_FILE}: {DEV_RELEASE_KEYS} must map environments to key files")
        return {str(env): [str(directory / ref) for ref in refs] for env, refs in dev.items()}

    def load(self) -> bool:
        """(Re)read the newest version of every role from disk (or the storage); True if anything changed."""
        if self._storage is not None:
            return self._load_stored()
        newest: dict[str, tuple[int, pathlib.Path]] = {}
        try:
            entries = list(self.metadata_dir.iterdir())
        except FileNotFoundError as e:
            raise ConfigError(f"{self.metadata_dir} does not exist") from e
        for path in entries:
            m = VERSIONED.match(path.name)
            if m:
                v = int(m["v"])
                if v > newest.get(m["role"], (0, path))[0]:
                    newest[m["role"]] = (v, path)
        changed = False
        for role, (version, path) in newest.items():
            cur = self.md.get(role)
            if cur is not None and cur.signed.version >= version:
                continue
            try:
                raw = path.read_bytes()
                self.md[role] = Metadata.from_bytes(raw)
            except (OSError, DeserializationError) as e:
                raise ConfigError(f"cannot read {path}: {e}", reason=STATE_CORRUPT) from e
            self._raw[role] = raw
            self._remember_paths(role, self.md[role])
            changed = True
        ts = self.metadata_dir / "timestamp.json"
        if ts.exists() and "timestamp" not in self.md:
            self._raw["timestamp"] = ts.read_bytes()
            try:
                self.md["timestamp"] = Metadata.from_bytes(self._raw["timestamp"])
            except DeserializationError as e:
                raise ConfigError(f"cannot read {ts}: {e}", reason=STATE_CORRUPT) from e
        for role in ("root", "targets"):
            if role not in self.md:
                raise ConfigError(f"trust directory {self.directory} has no {role} metadata")
        return changed

    # --- the files in the hub state (``skerry.hub.state.trust_files``) --------------------------

    def _load_stored(self) -> bool:
        """Adopt the storage's newest version of each role (the first time, import the directory)."""
        newest = self._storage.newest()
        if not newest and self.metadata_dir.is_dir() and self._storage.may_publish:  # only the writer imports
            self._import_directory(offline_only=False)
            newest = self._storage.newest()
        changed = False
        # In publication order (snapshot, then the timestamp, last), so a Fetch served meanwhile from
        # another thread never finds a timestamp naming a snapshot this process does not have yet.
        for role in sorted(newest, key=lambda r: (r in ("snapshot", "timestamp"), r == "timestamp")):
            version, raw = newest[role]
            cur = self.md.get(role)
            if cur is not None and cur.signed.version >= version:
                continue
            try:
                md = Metadata.from_bytes(raw)
            except DeserializationError as e:
                raise ConfigError(f"hub state: trust metadata {role} version {version} is unreadable: {e}") from e
            self.md[role], self._raw[role] = md, raw
            self._remember_paths(role, md)
            changed = True
        for role in ("root", "targets"):
            if role not in self.md:
                raise NotImported(f"the hub state holds no {role} metadata yet; the writer hub imports its trust directory")
        return changed

    def _import_directory(self, *, offline_only: bool) -> bool:
        """Copy the trust directory's files newer than the storage's into it (the first start: all of
        them; later, what ``skerry keys`` changed offline). Online roles come from the storage once it
        has any: a file this process wrote for a publication that did not commit is never imported."""
        stored = {role: version for role, (version, _) in self._storage.newest().items()}
        put = 0
        for path, role, version in newer_files(self.metadata_dir, stored, offline_only=offline_only):
            self._storage.put_metadata(path.name, role, version, path.read_bytes())
            put += 1
        if not offline_only:
            ts = self.metadata_dir / "timestamp.json"
            if ts.exists():
                raw = ts.read_bytes()
                self._storage.put_metadata(ts.name, "timestamp", Metadata.from_bytes(raw).signed.version, raw)
            for path in self.blobs_dir.glob("*.json") if self.blobs_dir.is_dir() else ():
                self._storage.put_blob(path.stem, path.read_bytes())
        if put or not offline_only:
            self._storage.published()
            log.info("trust files imported into the hub state", files=put, directory=str(self.metadata_dir))
        return bool(put)

    def reload_due(self) -> bool:
        """Whether ``reload`` would take anything in: a file ``skerry keys`` wrote that the storage lacks, or a
        stored version newer than this process holds. Only reads (the disk, the hub state) and changes nothing,
        so a worker thread asks it and the event loop reloads only when it says so (a database away makes the
        loop wait on nothing: this raises ``StateUnavailable`` in the thread)."""
        if self._storage is None or not self.metadata_dir.is_dir():
            return True
        stored = {role: version for role, (version, _) in self._storage.newest().items()}
        held = {role: md.signed.version for role, md in list(self.md.items())}
        if any(version > held.get(role, 0) for role, version in stored.items()):
            return True
        return bool(newer_files(self.metadata_dir, stored, offline_only=True))

    def reset(self) -> None:
        """Forget everything this process signed but did not commit: become what the storage holds.

        Until that worked (the database may be away), ``stale`` says this process may hold versions the state
        never committed, where another writer may commit different ones under the same numbers (which
        ``load`` would never replace): the follower then resets it (``skerry.hub.replica``)."""
        if self._storage is not None:
            self.stale = True
            self._unexported.clear()  # never committed: never exported
            self.become(self.reloaded())

    def reloaded(self) -> TrustRepository:
        """This repository as the storage holds it, read anew (only reads: a worker thread may build it)."""
        fresh = type(self)(self.directory, online=self._online, clock=self._clock, expiry=self.expiry,
                           storage=self._storage)
        self._storage.on_abandon, self._storage.on_commit = self.reset, self._export  # this one's until ``become``
        return fresh

    def become(self, fresh: TrustRepository) -> None:
        """Take ``fresh``'s contents (``reloaded``) but the listeners, release signers and Fetch's blobs (bytes by
        digest: a takeover still serves them); on the event loop, so nothing reads it half replaced."""
        keep = {"_listeners": self._listeners, "_release_signers": self._release_signers, "_blobs": self._blobs}
        self.__dict__.update(fresh.__dict__)
        self.__dict__.update(keep)
        if self._storage is not None:
            self._storage.on_abandon, self._storage.on_commit = self.reset, self._export

    def _load_online_keys(self) -> dict[str, list[Signer]]:
        """Signers from ``keys/*.key`` whose key ids the metadata names for each online role."""
        found: dict[str, list[Signer]] = {}
        keydir = self.directory / "keys"
        if not keydir.is_dir():
            return found
        for path in sorted(keydir.glob("*.key")):
            signer = keyfiles.load_signer(path)
            for role in ONLINE_ROLES:
                if signer.public_key.keyid in self.role_keyids(role):
                    found.setdefault(role, []).append(signer)
        return found

    def reload(self) -> bool:
        """Pick up offline changes (``skerry keys``); re-publishes snapshot/timestamp if any."""
        before = {r: m.signed.version for r, m in self.md.items()}
        if self._storage is not None:
            self._import_directory(offline_only=True)
        if not self.load():
            return False
        self._online = self._load_online_keys()
        changed = [r for r, m in self.md.items() if before.get(r) != m.signed.version and r not in ("timestamp", "snapshot")]
        log.info("trust metadata changed on disk", roles=changed)
        self._commit([r for r in changed if r != "root"])
        for role in changed:
            self._notify(role)
        return True

    @property
    def root(self) -> Root:
        return self.md["root"].signed

    @property
    def targets(self) -> Targets:
        return self.md["targets"].signed

    def role_keyids(self, role: str) -> list[str]:
        if role in ("root", "targets", "snapshot", "timestamp"):
            return list(self.root.roles[role].keyids)
        delegator = self._delegator(role)
        if delegator is None:
            return []
        return list(delegator.delegations.roles[role].keyids)

    def role_threshold(self, role: str) -> int:
        if role in ("root", "targets", "snapshot", "timestamp"):
            return self.root.roles[role].threshold
        delegator = self._delegator(role)
        return delegator.delegations.roles[role].threshold if delegator else 1

    def _delegator(self, role: str) -> Targets | None:
        if trust.is_director_bin(role):
            director = self.md.get(trust.DIRECTOR_ROLE)
            parent = director.signed if director else None
        elif trust.is_release_bin(role):
            env_md = self.md.get(trust.release_role(trust.release_env_of_bin(role)))
            parent = env_md.signed if env_md else None
        else:
            parent = self.targets
        if parent is None or parent.delegations is None or parent.delegations.roles is None:
            return None
        return parent if role in parent.delegations.roles else None

    def environments(self) -> list[str]:
        roles = (self.targets.delegations.roles or {}) if self.targets.delegations else {}
        return sorted(r[len(trust.RELEASE_PREFIX):] for r in roles if r.startswith(trust.RELEASE_PREFIX))

    def valid_until(self) -> dict[str, _dt.datetime]:
        return {role: md.signed.expires for role, md in self.md.items()}

    def on_change(self, listener: Callable[[str], None]) -> None:
        """``listener(role)`` after a role's new version was published (e.g. a release reached its threshold)."""
        self._listeners.append(listener)

    def _notify(self, role: str) -> None:
        for listener in self._listeners:
            try:
                listener(role)
            except Exception:  # noqa: BLE001 - a listener must not break publishing
                log.exception("trust listener failed", role=role)
