"""The hub's TUF repository on disk: what the director points at, what the release side signed.

Layout of a trust directory (``skerry keys init`` creates it)::

    config.json                    {"environments": {"prod": {"threshold": 2}, ...}}
    keys/<role>*.key               online keys the hub signs with (0600): timestamp, snapshot, director
    offline/...                    root, targets and release keys made by ``init`` — move them off the hub
    repository/metadata/           <version>.<role>.json (consistent snapshots) and timestamp.json
    repository/targets/releases/<env>/<cluster>/<sha256>.json   bundle blobs, content-addressed

Roles and paths are described in ``skerry.core.trust``. The hub signs only
timestamp, snapshot, director and the ``cluster-*`` roles. Offline-signed
roles (root, targets, ``release-*``) change only through ``skerry keys``
(on the trust directory, picked up by ``reload``) or ``submit_release``
(signatures collected from CI over gRPC, published at the threshold).

All metadata is written as compact JSON; signatures are Ed25519 (or any
securesystemslib signer) over the canonical JSON of ``signed``, as TUF
specifies. Writes are atomic (temp file + rename); a version is never
rewritten with different content.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import pathlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

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
from skerry.core.files import atomic_write
from skerry.hub.trust import keys as keyfiles

log = structlog.get_logger("skerry.hub.trust")

CONFIG_FILE = "config.json"
ONLINE_ROLES = ("timestamp", "snapshot", trust.DIRECTOR_ROLE)
_VERSIONED = re.compile(r"^(?P<v>[1-9][0-9]*)\.(?P<role>[a-z0-9-]+)\.json$")

# How long each role's metadata stays valid. Online roles are re-signed at half-life by ``refresh``.
DEFAULT_EXPIRY: dict[str, _dt.timedelta] = {
    "root": _dt.timedelta(days=365),
    "targets": _dt.timedelta(days=365),
    "release": _dt.timedelta(days=90),
    "director": _dt.timedelta(days=7),
    "cluster": _dt.timedelta(days=7),
    "snapshot": _dt.timedelta(days=7),
    "timestamp": _dt.timedelta(days=1),
}
# Release targets kept per cluster in a release role (older ones drop out; bounded metadata).
MAX_RELEASES_PER_CLUSTER = 8

_SERIALIZER = JSONSerializer(compact=True)


def expiry_kind(role: str) -> str:
    if role.startswith(trust.RELEASE_PREFIX):
        return "release"
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
        self.directory = pathlib.Path(directory)
        self.metadata_dir = self.directory / "repository" / "metadata"
        self.targets_dir = self.directory / "repository" / "targets"
        self._clock = clock or SystemClock()
        self.expiry = {**DEFAULT_EXPIRY, **(expiry or {})}
        self.md: dict[str, Metadata] = {}
        self._raw: dict[str, bytes] = {}  # the bytes served for each role's current version (snapshot hashes them)
        self._pending: dict[str, Metadata] = {}
        self._listeners: list[Callable[[str], None]] = []
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
        for env, ref in release_keys:
            signers.setdefault(env, []).append(keyfiles.load_signer(ref))
        if not (pathlib.Path(directory) / "repository" / "metadata").is_dir():
            raise ConfigError(f"{directory} is not a trust directory; create one with `skerry keys init`")
        return cls(directory, release_signers=signers, clock=clock, expiry=expiry)

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
                raise ConfigError(f"cannot read {path}: {e}") from e
            self._raw[role] = raw
            changed = True
        ts = self.metadata_dir / "timestamp.json"
        if ts.exists() and "timestamp" not in self.md:
            self._raw["timestamp"] = ts.read_bytes()
            self.md["timestamp"] = Metadata.from_bytes(self._raw["timestamp"])
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
        else:
            parent = self.targets
        if parent is None or parent.delegations is None or parent.delegations.roles is None:
            return None
        return parent if role in parent.delegations.roles else None

    def environments(self) -> list[str]:
        roles = (self.targets.delegations.roles or {}) if self.targets.delegations else {}
        return sorted(r[len(trust.RELEASE_PREFIX):] for r in roles if r.startswith(trust.RELEASE_PREFIX))

    def fetch(self, path: str) -> bytes:
        """The bytes served at ``path`` (``metadata/...`` or ``targets/...``); ``NotFound`` if absent."""
        if not trust.safe_fetch_path(path):
            raise InvalidInput(f"not a trust repository path: {path!r}")
        base = self.directory / "repository"
        try:
            return (base / path).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{path} does not exist") from None

    def release_target(self, env: str, cluster: str, hexdigest: str) -> TargetFile | None:
        md = self.md.get(trust.release_role(env))
        return md.signed.targets.get(trust.release_path(env, cluster, hexdigest)) if md else None

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
        data = md.to_bytes(_SERIALIZER)
        name = "timestamp.json" if role == "timestamp" else f"{md.signed.version}.{role}.json"
        _atomic_write(self.metadata_dir / name, data)
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
        """New snapshot listing the current version of every targets role, then a new timestamp."""
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

    def _new_timestamp(self) -> None:
        ts_md = self.md.get("timestamp") or Metadata(Timestamp(version=1))
        ts_md.signed.snapshot_meta = self._meta_file("snapshot")
        self._bump("timestamp", ts_md)
        self._sign_online("timestamp", ts_md)
        self._write("timestamp", ts_md)

    def cluster_role(self, cluster: str) -> str:
        """The director role that holds ``cluster``'s pointer: its legacy ``cluster-<name>`` role if this
        repository delegated one before hash bins, else its hash bin (``skerry.core.trust``)."""
        director = self.md.get(trust.DIRECTOR_ROLE)
        delegations = director.signed.delegations if director else None
        legacy = trust.legacy_cluster_role(cluster)
        if delegations is not None and delegations.roles and legacy in delegations.roles:
            return legacy
        return trust.cluster_role(cluster)

    def _ensure_cluster_role(self, cluster: str) -> list[str]:
        """Delegate ``cluster``'s hash bin from the director (same online key); returns changed roles."""
        role = self.cluster_role(cluster)
        director = self.md[trust.DIRECTOR_ROLE]
        delegations = director.signed.delegations
        if delegations is not None and delegations.roles and role in delegations.roles:
            return []
        keyids = self.role_keyids(trust.DIRECTOR_ROLE)
        if delegations is None:
            delegations = director.signed.delegations = Delegations(keys={}, roles={})
        for keyid in keyids:
            delegations.keys[keyid] = self.targets.delegations.keys[keyid]
        delegations.roles[role] = DelegatedRole(
            name=role, keyids=keyids, threshold=1, terminating=True, path_hash_prefixes=[trust.cluster_bin(cluster)]
        )
        self._bump(trust.DIRECTOR_ROLE, director)
        self._sign_online(trust.DIRECTOR_ROLE, director)
        self._write(trust.DIRECTOR_ROLE, director)
        return [trust.DIRECTOR_ROLE]

    def store_blob(self, env: str, cluster: str, data: bytes) -> str:
        """Keep a bundle's bytes, content-addressed; returns its release path."""
        path = trust.release_path(env, cluster, sha256_hex(data))
        dest = self.targets_dir / path
        if not dest.exists():
            _atomic_write(dest, data)
        return path

    def direct(self, cluster: str, env: str, data: bytes, *, revision: str, release: int) -> Directed | None:
        """Point ``cluster`` at ``data`` if the release side signed it; ``None`` if it has not (yet)."""
        if not trust.valid_name(cluster) or not trust.valid_name(env):
            raise InvalidInput(f"cluster {cluster!r} / environment {env!r} must be DNS labels")
        image = self.store_blob(env, cluster, data)
        hexdigest = sha256_hex(data)
        target = self.release_target(env, cluster, hexdigest)
        if target is None and trust.release_role(env) in self._release_signers:
            self._auto_release(env, cluster, data, revision)
            target = self.release_target(env, cluster, hexdigest)
        if target is None:
            return None
        current = self.directed(cluster)
        if current is not None and current.hashes.get("sha256") == hexdigest and current.custom.get("image") == image:
            # already directed (e.g. a restarted hub re-rendering the same bundle): keep its release counter
            return Directed(cluster=cluster, release=int(current.custom["release"]), image=image,
                            expires=self.horizon(self.cluster_role(cluster), env))
        changed = self._ensure_cluster_role(cluster)
        role = self.cluster_role(cluster)
        md = self.md.get(role) or Metadata(Targets(version=1, targets={}))
        pointer = TargetFile.from_data(trust.director_path(cluster), data, ["sha256"])
        pointer.unrecognized_fields["custom"] = {
            "release": release, "image": image, "environment": env, "revision": revision,
        }
        md.signed.targets[pointer.path] = pointer  # the bin's other clusters keep theirs
        self._bump(role, md)
        self._sign_online(role, md)
        self._write(role, md)
        self._commit([*changed, role])
        return Directed(cluster=cluster, release=release, image=image, expires=self.horizon(role, env))

    def directed(self, cluster: str) -> TargetFile | None:
        md = self.md.get(self.cluster_role(cluster))
        return md.signed.targets.get(trust.director_path(cluster)) if md else None

    def horizon(self, role: str, env: str) -> _dt.datetime:
        """When what an agent of this cluster trusts first expires."""
        roles = ["root", "timestamp", "snapshot", "targets", trust.DIRECTOR_ROLE, role, trust.release_role(env)]
        return min(self.md[r].signed.expires for r in roles if r in self.md)

    # --- the release side -----------------------------------------------------------------

    def release_proposal(self, env: str, cluster: str, data: bytes, revision: str) -> Metadata:
        """The next version of ``release-<env>`` with this bundle added: what CI signers sign.

        A target carries only what the agent checks (cluster, environment) and
        the commit: the source URL, paths and render engine are inside the
        bundle document its SHA-256 binds, and every field here is parsed and
        canonically encoded twice per refresh by every agent of the environment.
        """
        role = trust.release_role(env)
        if role not in (self.targets.delegations.roles or {}):
            raise NotFound(f"environment {env!r} has no release role; add it with `skerry keys add --env {env}`")
        pending = self._pending.get(role)
        path = trust.release_path(env, cluster, sha256_hex(data))
        if pending is not None and path in pending.signed.targets:
            return Metadata.from_bytes(pending.to_bytes(_SERIALIZER))
        current = self.md.get(role)
        signed = Targets.from_dict(json.loads(json.dumps(current.signed.to_dict()))) if current else Targets(version=0)
        target = TargetFile.from_data(path, data, ["sha256"])
        target.unrecognized_fields["custom"] = {"cluster": cluster, "environment": env, "revision": revision}
        signed.targets[path] = target
        mine = sorted(p for p in signed.targets if p.startswith(f"releases/{env}/{cluster}/"))
        for old in mine[: max(0, len(mine) - MAX_RELEASES_PER_CLUSTER)]:
            if old != path:
                del signed.targets[old]
        signed.version += 1
        signed.expires = self._now() + self.expiry["release"]
        return Metadata(signed)

    def _auto_release(self, env: str, cluster: str, data: bytes, revision: str) -> None:
        md = self.release_proposal(env, cluster, data, revision)
        for signer in self._release_signers[trust.release_role(env)]:
            md.sign(signer, append=True)
        self.submit_release(trust.release_role(env), md.to_bytes(_SERIALIZER))

    def submit_release(self, role: str, data: bytes) -> SubmitResult:
        """Collect release signatures; publish the new version once the threshold of distinct keys signed."""
        if not role.startswith(trust.RELEASE_PREFIX) or self._delegator(role) is None:
            raise NotFound(f"{role!r} is not a release role of this repository")
        if len(data) > trust.MAX_METADATA_BYTES:
            raise InvalidInput(f"release metadata is {len(data)} bytes, over {trust.MAX_METADATA_BYTES}")
        try:
            md = Metadata[Targets].from_bytes(data)
        except (DeserializationError, ValueError, TypeError, KeyError) as e:
            raise InvalidInput(f"not TUF targets metadata: {e}") from e
        env = role[len(trust.RELEASE_PREFIX):]
        for path in md.signed.targets:
            parsed = trust.parse_release_path(path)
            if parsed is None or parsed[0] != env:
                raise VerificationError(f"target {path!r} is outside releases/{env}/", reason="PathTraversal")
        current = self.md.get(role)
        want = (current.signed.version if current else 0) + 1
        if md.signed.version != want:
            raise VerificationError(f"{role} version {md.signed.version}, expected {want}", reason="Rollback")
        delegation = self.targets.delegations.roles[role]
        keys = {k: self.targets.delegations.keys[k] for k in delegation.keyids}
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
            self._write(role, md)
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
