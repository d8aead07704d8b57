"""The hub's TUF repository on disk: what the director points at, what the release side signed.

A trust directory (``skerry keys init`` makes it)::

    config.json        {"environments": {"prod": {"keys": 3, "threshold": 2}, ...}[, "dev_release_keys": ...]}
    keys/<role>.key    online keys the hub signs with (0600): timestamp, snapshot, director
    offline/...        root, targets and release keys made by ``init`` — move them off the hub
    repository/        the served repository: roles, file names and byte formats in ``skerry.core.trust``

The hub signs timestamp, snapshot, the director and its bins with online keys;
release bins only for environments whose release keys it holds. Everything
else changes through ``skerry keys`` (picked up by ``reload``) or
``submit_release`` (CI signatures collected over gRPC, published at the
threshold). Changes are batched (``batch``): publishing one bundle to 10,000
clusters signs each changed bin once, writes the files without an fsync each,
makes them durable with one filesystem sync, then writes one snapshot and the
timestamp that publishes them. Writes are atomic; a version is never
rewritten with different content.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import pathlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import structlog
from securesystemslib.signer import Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from skerry.core import trust
from skerry.core.canonical import sha256_hex
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import ConfigError, InvalidInput, NotFound, VerificationError
from skerry.core.files import STATE_CORRUPT, atomic_write, sync_filesystem
from skerry.hub.trust import keys as keyfiles

log = structlog.get_logger("skerry.hub.trust")

CONFIG_FILE = "config.json"
# config.json key of a ``skerry keys init --dev`` directory: env -> release key files the hub signs with.
DEV_RELEASE_KEYS = "dev_release_keys"
ONLINE_ROLES = ("timestamp", "snapshot", trust.DIRECTOR_ROLE)
_VERSIONED = re.compile(r"^(?P<v>[1-9][0-9]*)\.(?P<role>[a-z0-9-]+)\.json$")

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
# Release targets kept per cluster (the current one and the one before: the director may point
# back one release without a new signature); older ones drop out when their bin is next signed.
MAX_RELEASES_PER_CLUSTER = 2
# Blob bytes kept in memory for Fetch (the newest few; others are read from disk).
MEMORY_BLOBS = 4
# Proposed (not yet released) release paths whose blob CI signers may fetch: one per cluster is enough.
MAX_OFFERED = 100_000

_SERIALIZER = JSONSerializer(compact=True)


def expiry_kind(role: str) -> str:
    if trust.is_release_bin(role):
        return "release"
    if role.startswith(trust.RELEASE_PREFIX):
        return "release-env"
    if trust.is_cluster_role(role):
        return "cluster"
    return role


@dataclasses.dataclass(frozen=True)
class Directed:
    """The director's word for one cluster: the release counter and which bundle."""

    cluster: str
    release: int
    image: str
    expires: _dt.datetime


@dataclasses.dataclass(frozen=True)
class SubmitResult:
    role: str
    version: int
    signatures: int
    threshold: int
    published: bool


def _atomic_write(path: pathlib.Path, data: bytes, mode: int = 0o644) -> None:
    """``skerry.core.files.atomic_write`` with this module's default: public files (0644)."""
    atomic_write(path, data, mode)


def count_valid_signatures(md: Metadata, keys: Mapping[str, object], threshold: int) -> int:
    """Distinct trusted keys whose signature over ``md.signed`` verifies (a key counts once)."""
    from tuf.api.serialization.json import CanonicalJSONSerializer

    payload = CanonicalJSONSerializer().serialize(md.signed)
    good = 0
    for keyid, key in keys.items():
        sig = md.signatures.get(keyid)
        if sig is None:
            continue
        try:
            key.verify_signature(sig, payload)
        except Exception:  # noqa: BLE001 - any failure is a bad signature
            continue
        good += 1
    return good


class TrustRepository:
    """The repository in memory (latest version of each role) and on disk."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        online: Mapping[str, Sequence[Signer]] | None = None,
        release_signers: Mapping[str, Sequence[Signer]] | None = None,
        clock: Clock | None = None,
        expiry: Mapping[str, _dt.timedelta] | None = None,
    ):
        trust.use_fast_canonical_json()
        self.directory = pathlib.Path(directory)
        self.metadata_dir = self.directory / "repository" / "metadata"
        self.targets_dir = self.directory / "repository" / "targets"
        self.blobs_dir = self.directory / "repository" / "blobs"
        self._clock = clock or SystemClock()
        self.expiry = {**DEFAULT_EXPIRY, **(expiry or {})}
        self.md: dict[str, Metadata] = {}
        self._raw: dict[str, bytes] = {}  # the bytes served for each role's current version (snapshot hashes them)
        self._pending: dict[str, Metadata] = {}
        self._listeners: list[Callable[[str], None]] = []
        self._blobs: dict[str, bytes] = {}  # sha256 hex -> bytes, the newest MEMORY_BLOBS
        self._dirty: dict[str, Metadata] = {}  # online roles changed in this batch, signed once at its end
        self._batch_depth = 0
        self._batch_changed: set[str] = set()
        self._flushing = False
        self._unlinked: dict[str, str] = {}  # target path -> sha256 hex added since the last link pass
        self._linked_dirs: set[str] = set()
        self._unsynced = False  # files written without fsync since the last timestamp
        self._offered: dict[str, None] = {}  # release paths proposed to CI, newest MAX_OFFERED
        self.load()
        self._online = dict(online) if online is not None else self._load_online_keys()
        self._release_signers = {trust.release_role(e): list(s) for e, s in (release_signers or {}).items()}

    # --- loading --------------------------------------------------------------------------

    @classmethod
    def open(cls, directory, *, clock: Clock | None = None, release_keys: Iterable[tuple[str, str]] = (),
             expiry: Mapping[str, _dt.timedelta] | None = None) -> TrustRepository:
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
        return cls(directory, release_signers=signers, clock=clock, expiry=expiry)

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
        """(Re)read the newest version of every role from disk; True if anything changed."""
        newest: dict[str, tuple[int, pathlib.Path]] = {}
        try:
            entries = list(self.metadata_dir.iterdir())
        except FileNotFoundError as e:
            raise ConfigError(f"{self.metadata_dir} does not exist") from e
        for path in entries:
            m = _VERSIONED.match(path.name)
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
        if not self.load():
            return False
        self._online = self._load_online_keys()
        changed = [r for r, m in self.md.items() if before.get(r) != m.signed.version and r not in ("timestamp", "snapshot")]
        log.info("trust metadata changed on disk", roles=changed)
        self._commit([r for r in changed if r != "root"])
        for role in changed:
            self._notify(role)
        return True

    # --- reading --------------------------------------------------------------------------

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
        if trust.is_cluster_role(role):
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

    def fetch(self, path: str) -> bytes:
        """The bytes served at ``path`` (``metadata/...`` or ``targets/...``); ``NotFound`` if absent.

        A release target is served only while a release role lists it (its bytes come from the
        content-addressed blob store, where clusters sharing a bundle share one file).
        """
        if not trust.safe_fetch_path(path):
            raise InvalidInput(f"not a trust repository path: {path!r}")
        if path.startswith("targets/"):
            target, env, cluster, hexdigest = trust.parse_target_file(path[len("targets/"):])
            if env:
                known = self.release_target(env, cluster, hexdigest) is not None or self._proposed(target)
            else:
                directed = self.directed(cluster)
                known = directed is not None and directed.hashes.get("sha256") == hexdigest
            if not known:
                raise NotFound(f"{path} is not a released or directed bundle")
            return self._blob(hexdigest, path)
        try:
            return (self.metadata_dir / path[len("metadata/"):]).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{path} does not exist") from None

    def _proposed(self, path: str) -> bool:
        """Whether a release proposal names ``path`` (CI signers read its blob to compare objects)."""
        return path in self._offered

    def _blob(self, hexdigest: str, path: str) -> bytes:
        data = self._blobs.get(hexdigest)
        if data is not None:
            return data
        try:
            return self._blob_path(hexdigest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{path}: its blob is missing from {self.blobs_dir}") from None

    def _blob_path(self, hexdigest: str) -> pathlib.Path:
        return self.blobs_dir / f"{hexdigest}.json"

    def release_holder(self, env: str, path: str) -> str:
        """The role that holds (or would hold) release target ``path``: its hash bin, or the
        unbinned ``release-<env>`` of an environment added without bins."""
        role = trust.release_role(env)
        md = self.md.get(role)
        delegations = md.signed.delegations if md is not None else None
        if delegations is not None and delegations.roles:
            standard = trust.release_bin(env, path)
            if standard in delegations.roles:
                return standard
            for name, delegated in delegations.roles.items():
                if delegated.is_delegated_path(path):
                    return name
        return role

    def release_target(self, env: str, cluster: str, hexdigest: str) -> TargetFile | None:
        path = trust.release_path(env, cluster, hexdigest)
        md = self.md.get(self.release_holder(env, path))
        return md.signed.targets.get(path) if md else None

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

    # --- writing --------------------------------------------------------------------------

    def _now(self) -> _dt.datetime:
        return self._clock.now().replace(microsecond=0)

    def _write(self, role: str, md: Metadata) -> None:
        """Write ``role``'s new version. Inside a batch, not fsynced one by one: ``_new_timestamp``
        flushes them all at once before the timestamp that publishes them is written."""
        data = md.to_bytes(_SERIALIZER)
        name = "timestamp.json" if role == "timestamp" else f"{md.signed.version}.{role}.json"
        durable = role == "timestamp" or not (self._batch_depth or self._flushing)
        if not durable:
            self._unsynced = True
        atomic_write(self.metadata_dir / name, data, 0o644, durable=durable)
        self.md[role] = md
        self._raw[role] = data

    def _meta_file(self, role: str) -> MetaFile:
        """Version, length and SHA-256 of ``role``'s current file, as snapshot/timestamp list it.

        With length and hash listed, a client rejects a stale or swapped file by
        its hash before parsing it or checking any signature (python-tuf checks
        ``verify_length_and_hashes`` first, for cached files too).
        """
        raw = self._raw[role]
        return MetaFile(version=self.md[role].signed.version, length=len(raw), hashes={"sha256": sha256_hex(raw)})

    def _sign_online(self, role: str, md: Metadata) -> None:
        kind = "director" if trust.is_cluster_role(role) else role
        signers = self._online.get(kind) or []
        if not signers:
            raise ConfigError(f"the hub has no online key for {kind!r} in {self.directory / 'keys'}")
        md.signatures.clear()
        for signer in signers:
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

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group changes: each changed online role is signed once and one snapshot + timestamp made."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
        if not self._batch_depth:
            self._flush()

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

    def _link_targets(self) -> None:
        """Give each target added since the last timestamp (director entries, release targets) a file
        under its consistent-snapshot name: a hard link to the one blob file, so a stock TUF client
        reading the repository directory as static files finds every target."""
        targets = str(self.targets_dir)
        for path, hexdigest in self._unlinked.items():
            name = trust.consistent_name(path, hexdigest)
            directory = os.path.join(targets, name.rpartition("/")[0])
            if directory not in self._linked_dirs:
                os.makedirs(directory, exist_ok=True)
                self._linked_dirs.add(directory)
            try:
                os.link(self._blob_path(hexdigest), os.path.join(targets, name))
            except FileExistsError:
                pass
            except FileNotFoundError:  # a target whose blob this hub never stored (made by hand): no file
                log.warning("target has no blob to link", path=path, sha256=hexdigest)
        self._unlinked.clear()

    def _new_timestamp(self) -> None:
        if self._unsynced:  # everything the new timestamp publishes is on disk before it
            sync_filesystem(self.metadata_dir)
            self._unsynced = False
        ts_md = self.md.get("timestamp") or Metadata(Timestamp(version=1))
        ts_md.signed.snapshot_meta = self._meta_file("snapshot")
        self._bump("timestamp", ts_md)
        self._sign_online("timestamp", ts_md)
        self._write("timestamp", ts_md)

    def cluster_role(self, cluster: str) -> str:
        """The director role that holds ``cluster``'s pointer: its unbinned ``cluster-<name>`` role if this
        repository delegated one before hash bins, else its hash bin (``skerry.core.trust``)."""
        director = self.md.get(trust.DIRECTOR_ROLE)
        delegations = director.signed.delegations if director else None
        unbinned = trust.unbinned_cluster_role(cluster)
        if delegations is not None and delegations.roles and unbinned in delegations.roles:
            return unbinned
        return trust.cluster_role(cluster)

    def _ensure_cluster_role(self, cluster: str) -> None:
        """Delegate ``cluster``'s hash bin from the director (same online key)."""
        role = self.cluster_role(cluster)
        director = self._dirty.get(trust.DIRECTOR_ROLE) or self.md[trust.DIRECTOR_ROLE]
        delegations = director.signed.delegations
        if delegations is not None and delegations.roles and role in delegations.roles:
            return
        keyids = self.role_keyids(trust.DIRECTOR_ROLE)
        if delegations is None:
            delegations = director.signed.delegations = Delegations(keys={}, roles={})
        for keyid in keyids:
            delegations.keys[keyid] = self.targets.delegations.keys[keyid]
        delegations.roles[role] = DelegatedRole(
            name=role, keyids=keyids, threshold=1, terminating=True,
            path_hash_prefixes=trust.bin_prefixes(trust.cluster_bin(cluster)))
        self._touch(trust.DIRECTOR_ROLE, director)

    def store_blob(self, env: str, cluster: str, data: bytes) -> str:
        """Keep a bundle's bytes, content-addressed (one file however many clusters share them); its release path."""
        hexdigest = sha256_hex(data)
        self._keep_blob(hexdigest, data)
        return trust.release_path(env, cluster, hexdigest)

    def _keep_blob(self, hexdigest: str, data: bytes) -> None:
        if hexdigest in self._blobs:
            return
        dest = self._blob_path(hexdigest)
        if not dest.exists():
            _atomic_write(dest, data)
        self._blobs[hexdigest] = data
        while len(self._blobs) > MEMORY_BLOBS:
            del self._blobs[next(iter(self._blobs))]

    def direct(self, cluster: str, env: str, data: bytes, *, revision: str, release: int,
               render: str = "") -> Directed | None:
        """Point ``cluster`` at ``data`` if the release side signed it; ``None`` if it has not (yet)."""
        return self.direct_many([(cluster, env)], data, revision=revision, release=lambda _c: release,
                                render=render)[cluster]

    def direct_many(self, clusters: Sequence[tuple[str, str]], data: bytes, *, revision: str,
                    release: Callable[[str], int], render: str = "") -> dict[str, Directed | None]:
        """``direct`` for every ``(cluster, env)`` sharing the bundle ``data``: the blob is stored and
        hashed once, each changed director bin signed once, one snapshot and timestamp made.

        ``render`` (engine and version) is provenance in the director's target, outside the bundle's
        digest. Environments whose release side the hub holds (``--release-keys``) are released here.
        """
        for cluster, env in clusters:
            if not trust.valid_name(cluster) or not trust.valid_name(env):
                raise InvalidInput(f"cluster {cluster!r} / environment {env!r} must be DNS labels")
        hexdigest = sha256_hex(data)
        out: dict[str, tuple[int, str, str] | None] = {}
        with self.batch():
            self._keep_blob(hexdigest, data)
            auto: dict[str, list[str]] = {}
            for cluster, env in clusters:
                if (self.release_target(env, cluster, hexdigest) is None
                        and trust.release_role(env) in self._release_signers):
                    auto.setdefault(env, []).append(cluster)
            for env, names in auto.items():
                self._auto_release(env, names, data, revision)
            for cluster, env in clusters:
                out[cluster] = self._direct_one(cluster, env, data, hexdigest, revision, release(cluster), render)
        return {cluster: None if got is None else Directed(
            cluster=cluster, release=got[0], image=got[1], expires=self.horizon(self.cluster_role(cluster), got[2], got[1]))
            for cluster, got in out.items()}

    def _direct_one(self, cluster: str, env: str, data: bytes, hexdigest: str, revision: str, release: int,
                    render: str) -> tuple[int, str, str] | None:
        image = trust.release_path(env, cluster, hexdigest)
        if self.release_target(env, cluster, hexdigest) is None:
            return None
        role = self.cluster_role(cluster)
        current = self.directed(cluster)
        if current is not None and current.hashes.get("sha256") == hexdigest and current.custom.get("image") == image:
            # already directed (e.g. a restarted hub re-rendering the same bundle): keep its release counter
            return int(current.custom["release"]), image, env
        self._ensure_cluster_role(cluster)
        md = self._dirty.get(role) or self.md.get(role) or Metadata(Targets(version=1, targets={}))
        pointer = TargetFile(length=len(data), hashes={"sha256": hexdigest}, path=trust.director_path(cluster))
        custom = {"release": release, "image": image, "environment": env, "revision": revision}
        if render:
            custom["render"] = render
        pointer.unrecognized_fields["custom"] = custom
        md.signed.targets[pointer.path] = pointer  # the bin's other clusters keep theirs
        self._unlinked[pointer.path] = hexdigest
        self._touch(role, md)
        return release, image, env

    def directed(self, cluster: str) -> TargetFile | None:
        role = self.cluster_role(cluster)
        md = self._dirty.get(role) or self.md.get(role)
        return md.signed.targets.get(trust.director_path(cluster)) if md else None

    def horizon(self, role: str, env: str, image: str = "") -> _dt.datetime:
        """When what an agent of this cluster (director role ``role``, release target ``image``) trusts first expires."""
        roles = ["root", "timestamp", "snapshot", "targets", trust.DIRECTOR_ROLE, role, trust.release_role(env)]
        if image:
            roles.append(self.release_holder(env, image))
        return min(self.md[r].signed.expires for r in roles if r in self.md)

    # --- the release side -----------------------------------------------------------------

    def proposal_role(self, env: str, cluster: str, data: bytes) -> str:
        """The release role whose next version CI signs to release ``data`` for ``cluster``: its hash bin."""
        return self.release_holder(env, trust.release_path(env, cluster, sha256_hex(data)))

    def release_proposal(self, env: str, cluster: str, data: bytes, revision: str) -> Metadata:
        """The next version of the release bin holding this bundle, with it added: what CI signers sign."""
        return self._proposal(env, [cluster], data, revision)

    def _proposal(self, env: str, clusters: Sequence[str], data: bytes, revision: str) -> Metadata:
        """Next version of one release role (a bin, or an unbinned ``release-<env>``) adding ``data``
        for every cluster of ``clusters`` (all must fall in that role).

        A target carries only what the agent checks (cluster, environment) and
        the commit: the source URL and paths are inside the bundle document its
        SHA-256 binds, and every field here is parsed and canonically encoded
        twice per refresh by every agent of the bin. Each cluster keeps its
        newest ``MAX_RELEASES_PER_CLUSTER`` targets in the role.
        """
        role = trust.release_role(env)
        if role not in (self.targets.delegations.roles or {}):
            raise NotFound(f"environment {env!r} has no release role; add it with `skerry keys add --env {env}`")
        hexdigest = sha256_hex(data)
        paths = [trust.release_path(env, c, hexdigest) for c in clusters]
        holder = self.release_holder(env, paths[0])
        pending = self._pending.get(holder)
        if pending is not None and all(path in pending.signed.targets for path in paths):
            return Metadata.from_bytes(pending.to_bytes(_SERIALIZER))
        current = self.md.get(holder)
        if current is not None:
            signed = Targets.from_dict(json.loads(json.dumps(current.signed.to_dict())))
        else:
            signed = Targets()
            signed.version = 0  # a bin's first version is 1
        kept: dict[str, list[str]] = {}  # cluster -> its release paths in the role, oldest first
        for path in signed.targets:
            parsed = trust.parse_release_path(path)
            kept.setdefault(parsed[1] if parsed else "", []).append(path)
        for cluster, path in zip(clusters, paths, strict=True):
            target = TargetFile(length=len(data), hashes={"sha256": hexdigest}, path=path)
            target.unrecognized_fields["custom"] = {"cluster": cluster, "environment": env, "revision": revision}
            signed.targets.pop(path, None)
            signed.targets[path] = target  # newest last: insertion order is release order
            mine = [p for p in kept.setdefault(cluster, []) if p != path] + [path]
            for old in mine[: max(0, len(mine) - MAX_RELEASES_PER_CLUSTER)]:
                del signed.targets[old]
            kept[cluster] = mine[-MAX_RELEASES_PER_CLUSTER:]
        signed.version += 1
        signed.expires = self._now() + self.expiry[expiry_kind(holder)]
        self._keep_blob(hexdigest, data)  # CI signers fetch what they are asked to sign
        for path in paths:
            self._offered[path] = None
        while len(self._offered) > MAX_OFFERED:
            del self._offered[next(iter(self._offered))]
        return Metadata(signed)

    def _auto_release(self, env: str, clusters: Sequence[str], data: bytes, revision: str) -> None:
        """Release ``data`` for ``clusters`` with the hub-held release keys: one signed version per bin."""
        by_role: dict[str, list[str]] = {}
        hexdigest = sha256_hex(data)
        for cluster in clusters:
            by_role.setdefault(self.release_holder(env, trust.release_path(env, cluster, hexdigest)), []).append(cluster)
        for role, names in by_role.items():
            md = self._proposal(env, names, data, revision)
            for signer in self._release_signers[trust.release_role(env)]:
                md.sign(signer, append=True)
            self.submit_release(role, md.to_bytes(_SERIALIZER))

    def _resolve_release_role(self, role: str, md: Metadata) -> str:
        """``release-<env>`` given for a version of one of its bins names that bin (as CI tools may say)."""
        if trust.is_release_bin(role) or not md.signed.targets:
            return role
        env = role[len(trust.RELEASE_PREFIX):]
        holders = {self.release_holder(env, path) for path in md.signed.targets}
        return holders.pop() if len(holders) == 1 else role

    def submit_release(self, role: str, data: bytes) -> SubmitResult:
        """Collect release signatures; publish the new version once the threshold of distinct keys signed."""
        if len(data) > trust.MAX_METADATA_BYTES:
            raise InvalidInput(f"release metadata is {len(data)} bytes, over {trust.MAX_METADATA_BYTES}")
        try:
            md = Metadata[Targets].from_bytes(data)
        except (DeserializationError, ValueError, TypeError, KeyError) as e:
            raise InvalidInput(f"not TUF targets metadata: {e}") from e
        if role.startswith(trust.RELEASE_PREFIX):
            role = self._resolve_release_role(role, md)
        delegator = self._delegator(role) if (role.startswith(trust.RELEASE_PREFIX) or trust.is_release_bin(role)) else None
        if delegator is None:
            raise NotFound(f"{role!r} is not a release role of this repository")
        env = trust.release_env_of_bin(role) if trust.is_release_bin(role) else role[len(trust.RELEASE_PREFIX):]
        for path in md.signed.targets:
            parsed = trust.parse_release_path(path)
            if parsed is None or parsed[0] != env:
                raise VerificationError(f"target {path!r} is outside releases/{env}/", reason="PathTraversal")
            if self.release_holder(env, path) != role:
                raise VerificationError(f"target {path!r} does not belong in {role}", reason="PathTraversal")
        current = self.md.get(role)
        want = (current.signed.version if current else 0) + 1
        if md.signed.version != want:
            raise VerificationError(f"{role} version {md.signed.version}, expected {want}", reason="Rollback")
        delegation = delegator.delegations.roles[role]
        keys = {k: delegator.delegations.keys[k] for k in delegation.keyids}
        for keyid in md.signatures:
            if keyid not in keys:
                raise VerificationError(f"{role} signed by key {keyid[:12]}…, not one of its keys", reason="BadSignature")
        if count_valid_signatures(md, keys, delegation.threshold) != len(md.signatures):
            raise VerificationError(f"a signature on {role} does not verify", reason="BadSignature")
        pending = self._pending.get(role)
        if pending is not None and pending.signed == md.signed:
            for keyid, sig in md.signatures.items():
                pending.signatures[keyid] = sig
            md = pending
        self._pending[role] = md
        good = count_valid_signatures(md, keys, delegation.threshold)
        published = good >= delegation.threshold
        if published:
            del self._pending[role]
            with self.batch():  # listeners direct the released clusters: one snapshot for both
                self._write(role, md)
                before = current.signed.targets if current is not None else {}
                for path, target in md.signed.targets.items():
                    if path not in before:
                        self._unlinked[path] = target.hashes.get("sha256", "")
                self._commit([role])
                log.info("release published", role=role, version=md.signed.version, signatures=good)
                self._notify(role)
        else:
            log.info("release signature collected", role=role, version=md.signed.version, signatures=good,
                     threshold=delegation.threshold)
        return SubmitResult(role, md.signed.version, good, delegation.threshold, published)

    def pending(self, role: str) -> Metadata | None:
        return self._pending.get(role)

    # --- freshness ------------------------------------------------------------------------

    def refresh(self) -> list[str]:
        """Re-sign online roles with less than half their lifetime left; returns what was re-signed."""
        now = self._now()
        resigned: list[str] = []
        for role, md in list(self.md.items()):
            if role in ("root", "targets", "timestamp", "snapshot"):
                continue
            online = role == trust.DIRECTOR_ROLE or trust.is_cluster_role(role)
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
