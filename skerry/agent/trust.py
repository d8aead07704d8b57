"""How the agent decides a bundle is genuine: a stock python-tuf ``Updater`` over the hub's TrustService.

The fetchers (``TrustService.Fetch``, files pushed with watch events) are in
``skerry.agent.tuf_fetch``.

``TufVerifier.update`` runs one TUF client workflow (root chain, timestamp,
snapshot, targets, delegations — python-tuf does all of it and persists the
trusted metadata under ``<state_dir>/tuf``), then applies the Uptane rule:
the director and ``release-<env>`` must list the same target
``releases/<env>/<cluster>/<sha256>.json`` (length and SHA-256), the release
target must name this cluster and environment, and the director's release
counter must not be below the highest one applied (persisted in
``<state_dir>/trust-state.json``). Which path to look up comes from the hub's
event (its digest: a hint, trusted for nothing), else the path applied last,
else a walk of every director bin (``skerry.core.trust``: ``lookup``, ``scan``).
Any refusal is a ``VerificationError`` whose ``reason`` names the attack class
(see ``classify``).

Cost, per refresh (``bench/verify.py``): an idle agent whose hub serves the
timestamp it last verified (same SHA-256, trusted metadata not expired, no
newer root) runs no TUF workflow at all — two small fetches. Otherwise the
snapshot lists each role's length and SHA-256, so python-tuf discards stale
cached roles by hash before any signature check; the bundle blob is fetched
into memory, length-capped and hash-checked once (``TargetFile``'s own
check), never written to ``target_dir``: the app's bundle cache keeps it.
The horizon and provenance come from the metadata files python-tuf
persisted (its public on-disk cache), not from the Updater's private state.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import pathlib
import re
import threading

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater, UpdaterConfig

from skerry.agent.conditions import CLOCK_SKEW, FREEZE
from skerry.agent.tuf_fetch import URL_PREFIX, InMemoryFetcher
from skerry.core import documents, release_number, trust
from skerry.core.bundle import Bundle, VerifiedBundle, decode_signed
from skerry.core.canonical import sha256_digest, sha256_hex
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import ConfigError, Unavailable, VerificationError
from skerry.core.files import STATE_CORRUPT, atomic_write, ensure_dir, fsync_dir, unwritable

STATE_FILE = "trust-state.json"


def _parse(data: bytes) -> dict | None:
    try:
        doc = documents.load_json(data, max_bytes=trust.MAX_METADATA_BYTES)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _read_json(path: pathlib.Path) -> dict | None:
    try:
        return documents.load_json(path.read_bytes(), max_bytes=trust.MAX_METADATA_BYTES)
    except (OSError, ValueError):
        return None


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _expires(doc: dict) -> _dt.datetime:
    """``signed.expires`` of a TUF metadata document (RFC 3339, ``Z``), timezone-aware."""
    return _dt.datetime.fromisoformat(doc["signed"]["expires"].replace("Z", "+00:00"))


_ROOT_FILE = re.compile(r"^metadata/\d+\.root\.json$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


def classify(error: Exception, last_path: str = "") -> tuple[str, str]:
    """``(attack class, message)`` for an error of python-tuf's client workflow."""
    msg = str(error) or type(error).__name__
    if isinstance(error, tuf_errors.ExpiredMetadataError):
        return FREEZE, f"trusted metadata expired ({msg}): indefinite-freeze protection"
    if isinstance(error, tuf_errors.DownloadLengthMismatchError):
        return "EndlessData", f"{last_path}: {msg}"
    if isinstance(error, tuf_errors.UnsignedMetadataError):
        if _ROOT_FILE.match(last_path):
            return "BadRootChain", f"{last_path} is not signed by the previous and its own root threshold: {msg}"
        return "BadSignature", f"{last_path}: signature threshold not met (forged, or keys below threshold): {msg}"
    if isinstance(error, tuf_errors.BadVersionNumberError):
        if "root version" in msg:
            return "BadRootChain", f"{last_path}: {msg}"
        if "must be >=" in msg or re.search(r"Expected \S+\.json version", msg):
            return "Rollback", f"{last_path}: {msg}"
        return "MixAndMatch", f"{last_path}: version does not match the snapshot/timestamp: {msg}"
    if isinstance(error, tuf_errors.LengthOrHashMismatchError):
        return "MixAndMatch", f"{last_path}: does not match the length/hash the snapshot/timestamp signed: {msg}"
    if isinstance(error, tuf_errors.RepositoryError):
        return "MalformedMetadata", f"{last_path}: {msg}"
    return "VerificationFailed", f"{last_path}: {type(error).__name__}: {msg}"


def provenance_of(cluster: str, env: str, image: str, release: int, digest: str, bundle: Bundle,
                  trusted: dict[str, dict], found: dict[str, str], render: object = None,
                  number: int = 0) -> dict:
    """What ``skerry explain`` shows of a verified bundle: the roles and keys that let it through, its source."""
    def signers(role: str) -> list[str]:
        return sorted(sig["keyid"] for sig in trusted[role].get("signatures", []))

    def version(role: str) -> int:
        return int(trusted[role]["signed"].get("version", 0))

    release_role, cluster_role = found["release"], found["director"]
    parent = trusted[trust.release_role(env)] if release_role != trust.release_role(env) else trusted["targets"]
    delegated = ((parent["signed"].get("delegations") or {}).get("roles")) or []
    threshold = next((int(r.get("threshold", 0)) for r in delegated if r.get("name") == release_role), 0)
    return {
        "cluster": cluster, "environment": env, "digest": digest, "release": release, "number": number,
        "image": image,
        "director": {"role": cluster_role, "signed_by": signers(cluster_role), "version": version(cluster_role)},
        "release_role": {"role": release_role, "signed_by": signers(release_role),
                         "threshold": threshold, "version": version(release_role)},
        "source": {"url": bundle.source_url, "revision": bundle.revision, "paths": list(bundle.paths)},
        # the director's word: the engine is provenance, outside the bundle's digest
        "render": dict(zip(("engine", "version"), str(render).split(" ", 1), strict=False)) if render else {
            "engine": bundle.engine, "version": bundle.engine_version},
    }


def trusting(fetcher, metadata_dir: pathlib.Path):
    """``fetcher``, told the timestamp version python-tuf trusts (what the last refresh persisted; 0: none yet),
    which it sends with each fetch: a hub replica whose copy is older waits for it or sends the agent on."""
    if isinstance(fetcher, InMemoryFetcher):
        doc = _read_json(metadata_dir / "timestamp.json")
        version = (doc.get("signed") or {}).get("version") if isinstance(doc, dict) else None
        fetcher.trusted_timestamp = version if isinstance(version, int) and version > 0 else 0
    return fetcher


@dataclasses.dataclass(frozen=True)
class TrustState:
    """What ``trust-state.json`` keeps (fsynced): the highest applied release counter and its bundle digest,
    the horizon of the metadata that verified it, the SHA-256 of the timestamp it was based on, and the
    release's number as the director signed it (display only)."""

    release: int = 0
    digest: str = ""
    valid_until: str = ""
    timestamp: str = ""
    number: int = 0


def freeze_error(error: Exception, fetcher, now: _dt.datetime, metadata_dir: pathlib.Path) -> VerificationError:
    """The freeze python-tuf found (it reads the wall clock), said with what Skerry knows: which file
    expired when, what this host's clock says, and whether the clocks disagree (``CLOCK_SKEW``)."""
    reason, msg = classify(error, getattr(fetcher, "last_path", ""))
    served = _parse(getattr(fetcher, "last_metadata", b""))
    signed = served.get("signed") if isinstance(served, dict) else None
    if not isinstance(signed, dict) or not isinstance(signed.get("expires"), str):
        return VerificationError(msg, reason=reason)
    try:
        expired = _expires(served)
    except ValueError:
        return VerificationError(msg, reason=reason)
    role = str(signed.get("_type", "metadata"))
    said = (f"{role} metadata expired at {expired.isoformat()}; this host's clock says "
            f"{now.isoformat(timespec='seconds')}")
    trusted = _read_json(metadata_dir / "timestamp.json") or {}
    trusted_version = (trusted.get("signed") or {}).get("version", 0) if isinstance(trusted, dict) else 0
    version = signed.get("version", 0)
    if role == "timestamp" and isinstance(version, int) and isinstance(trusted_version, int) \
            and version > trusted_version:
        return VerificationError(
            f"{said}, yet the hub re-signed it (version {version}, after {trusted_version}): this host's "
            "clock is ahead of the hub's, or the hub's is behind; check NTP on both. Nothing new is accepted "
            "until they agree", reason=CLOCK_SKEW)
    return VerificationError(f"{said}: the hub serves metadata it has not re-signed ({msg})", reason=reason)


class TufVerifier:
    """Verify what the director says this cluster runs; keeps TUF metadata and the release counter on disk."""

    def __init__(self, cluster: str, environment: str, trust_root: str | os.PathLike, state_dir: str | os.PathLike,
                 fetcher_factory, clock: Clock | None = None):
        if not trust.valid_name(cluster) or not trust.valid_name(environment):
            raise ConfigError(f"cluster {cluster!r} and environment {environment!r} must be DNS labels")
        trust.use_fast_canonical_json()
        self.cluster = cluster
        self.environment = environment
        self._clock = clock or SystemClock()
        self._fetcher_factory = fetcher_factory
        self.state_dir = pathlib.Path(state_dir)
        self.metadata_dir = self.state_dir / "tuf" / "metadata"
        self.targets_dir = self.state_dir / "tuf" / "targets"
        self.provenance_dir = self.state_dir / "provenance"
        self._path = self.state_dir / STATE_FILE
        self._lock = threading.Lock()
        ensure_dir(self.metadata_dir)
        ensure_dir(self.targets_dir)
        for old in self.targets_dir.glob("*.json"):  # blobs earlier versions kept here; the bundle cache has them
            old.unlink(missing_ok=True)
        self._bootstrap: bytes | None = None
        if not (self.metadata_dir / "root.json").exists():
            try:
                self._bootstrap = pathlib.Path(trust_root).read_bytes()
            except OSError as e:
                raise ConfigError(f"cannot read the trust root {trust_root}: {e.strerror}") from e
        self._state = self._load()
        self._synced: dict[str, str] = {}  # role -> SHA-256 of its metadata file as last fsynced
        self._parsed: dict[str, tuple[str, dict]] = {}  # role -> (SHA-256, parsed JSON) of unchanged files

    # the Verifier interface the app uses ----------------------------------------------------

    @property
    def last_release(self) -> int:
        return self._state.release

    @property
    def last_number(self) -> int:
        """The number of ``last_release`` people read (``r7``); 0 if the director gave none."""
        return self._state.number

    @property
    def last_digest(self) -> str:
        return self._state.digest

    @property
    def valid_until(self) -> _dt.datetime | None:
        return _dt.datetime.fromisoformat(self._state.valid_until) if self._state.valid_until else None

    def verify_message(self, signed) -> VerifiedBundle | None:
        """A WatchBundles event is a hint to refresh: fetch and verify what the director says.

        If the event carries bundle bytes (the hub streams a shared blob once-serialised to every
        watcher), they stand in for the blob download when — and only when — they have the
        length and SHA-256 the verified release target names.
        """
        return self.update(offered=bytes(getattr(signed, "bundle", b"") or b""),
                           digest=str(getattr(signed, "digest", "") or ""))

    def update(self, offered: bytes = b"", digest: str = "") -> VerifiedBundle | None:
        """One TUF refresh; the newly directed bundle, or ``None`` if it is the one already applied.

        ``digest`` (``sha256:<hex>``, the hub's event) says which path to look up first.
        """
        with self._lock:
            fetcher = trusting(self._fetcher_factory(), self.metadata_dir)
            try:
                return self._update(fetcher, offered, digest)
            except VerificationError:
                raise
            except tuf_errors.DownloadError as e:
                if isinstance(e, tuf_errors.DownloadLengthMismatchError):
                    reason, msg = classify(e, fetcher.last_path)
                    raise VerificationError(msg, reason=reason) from e
                raise Unavailable(f"cannot reach the hub's trust service: {e}") from e
            except tuf_errors.ExpiredMetadataError as e:
                raise freeze_error(e, fetcher, self._clock.now(), self.metadata_dir) from e
            except (tuf_errors.RepositoryError, ValueError) as e:
                reason, msg = classify(e, getattr(fetcher, "last_path", ""))
                raise VerificationError(msg, reason=reason) from e
            except OSError as e:  # the metadata or the release counter cannot be persisted: accept nothing
                raise unwritable(e, f"trust state under {self.state_dir}") from None
            finally:
                close = getattr(fetcher, "close", None)
                if close is not None:
                    close()

    def _unchanged(self, fetcher) -> bool:
        """Whether the hub's repository is byte-for-byte the state this agent last verified in full.

        Safe under TUF's threat model: the timestamp pins the snapshot (version,
        length, SHA-256), which pins every targets role, so an identical
        timestamp means identical trusted metadata — nothing to verify again.
        Freshness is still checked (the horizon of everything trusted must lie
        ahead, else the full refresh runs and reports the freeze), the cached
        timestamp must still be the one that verified (a refused refresh may
        have left a newer one: the full workflow then reports the rollback), and
        the next root version is probed so a root rotation is never deferred.
        """
        state = self._state
        if not state.timestamp or not state.valid_until or self._bootstrap is not None:
            return False
        if self._clock.now() >= _dt.datetime.fromisoformat(state.valid_until):
            return False
        try:  # python-tuf's trusted timestamp must still be the one verified in full (not a later refusal's)
            if sha256_hex((self.metadata_dir / "timestamp.json").read_bytes()) != state.timestamp:
                return False
        except OSError:
            return False
        url = f"{URL_PREFIX}metadata/timestamp.json"
        remote = fetcher.download_bytes(url, trust.MAX_TIMESTAMP_BYTES)
        if sha256_hex(remote) != state.timestamp:
            if isinstance(fetcher, InMemoryFetcher):
                fetcher.keep(url, remote)
            return False
        root = _read_json(self.metadata_dir / "root.json")
        if root is None:
            return False
        try:
            fetcher.download_bytes(f"{URL_PREFIX}metadata/{root['signed']['version'] + 1}.root.json",
                                   trust.MAX_METADATA_BYTES)
        except tuf_errors.DownloadHTTPError as e:
            if e.status_code in (403, 404):
                return True
            raise
        return False  # a newer root exists: follow the chain

    def _update(self, fetcher, offered: bytes = b"", hint: str = "") -> VerifiedBundle | None:
        if self._unchanged(fetcher):
            return None
        updater = Updater(
            metadata_dir=str(self.metadata_dir),
            metadata_base_url=f"{URL_PREFIX}metadata/",
            target_dir=str(self.targets_dir),
            target_base_url=f"{URL_PREFIX}targets/",
            fetcher=fetcher,
            config=UpdaterConfig(prefix_targets_with_hash=False),
            bootstrap=self._bootstrap,
        )
        self._bootstrap = None
        updater.refresh()
        image, directed, released, roles = self._find(updater, hint)
        env, release = trust.director_says(self.cluster, self.environment, image, directed)
        digest = trust.release_agrees(self.cluster, env, image, directed, released)
        number = release_number.director_number(directed.custom, release)  # display only; never compared
        said = f"{release_number.label(number, release)} (counter {release})"
        if release < self._state.release:
            last = self._state
            held = f"{release_number.label(last.number, last.release)} (counter {last.release})"
            raise VerificationError(
                f"director release {said} is below the applied release {held} "
                "(metadata is fresh, the release counter is not)", reason="ReleaseRollback")
        if release == self._state.release and digest != self._state.digest:
            raise VerificationError(f"release {said} was already applied with another bundle",
                                    reason="MixAndMatch")
        # everything this refresh trusted, as python-tuf persisted it (public files, not its private state)
        trusted = self._trusted_files(env, roles)
        horizon = min(_expires(doc) for doc in trusted.values())
        timestamp = sha256_hex(trusted["timestamp"]["raw"])
        if release == self._state.release:
            state = TrustState(release, digest, horizon.isoformat(), timestamp, number)
            if state != self._state:
                self._save(state)
            return None
        # The blob, in memory: the same length-capped fetch and length/hash check python-tuf's
        # download_target does, without its temp file, copy to target_dir and a re-read (the app
        # keeps the verified bytes in its bundle cache).
        if offered and len(offered) == released.length and sha256_digest(offered) == digest:
            raw = offered
        else:
            raw = fetcher.download_bytes(f"{URL_PREFIX}targets/{image}", released.length)
        released.verify_length_and_hashes(raw)
        bundle = dataclasses.replace(decode_signed(raw, self.cluster, shared=True), cluster=self.cluster)
        render = directed.custom.get("render") if isinstance(directed.custom, dict) else None
        provenance = provenance_of(self.cluster, env, image, release, digest, bundle, trusted, roles, render,
                                   number)
        data = json.dumps(provenance, sort_keys=True, indent=2).encode() + b"\n"
        # not fsynced: a copy of what the app's bundle cache keeps durably (VerifiedBundle.metadata)
        atomic_write(self.provenance_dir / f"{digest.split(':')[1]}.json", data, durable=False)
        self._save(TrustState(release, digest, horizon.isoformat(), timestamp, number))
        return VerifiedBundle(bundle=bundle, release=release, digest=digest, expires=horizon, metadata=data,
                              raw=raw, number=number)

    def reverify(self, metadata: bytes, bundle_bytes: bytes) -> tuple[VerifiedBundle, bool]:
        """A cached bundle is re-applied only if it is the one the persisted state says was verified."""
        digest = sha256_digest(bundle_bytes)
        if not self._state.digest or digest != self._state.digest:
            raise VerificationError("cached bundle is not the last verified one", reason="HashMismatch")
        bundle = Bundle.decode(bundle_bytes)
        until = self.valid_until or self._clock.now()
        return (VerifiedBundle(bundle=bundle, release=self._state.release, digest=digest, expires=until,
                               metadata=metadata, raw=bundle_bytes, number=self._state.number),
                self._clock.now() >= until)

    # --- helpers ----------------------------------------------------------------------------

    def _find(self, updater, hint: str) -> tuple[str, object, object, dict[str, str]]:
        """``(path, directed, released, roles)``: the hinted path if the director lists it, else the
        one applied last if it still does, else the one a walk of every director bin finds."""
        tried: list[str] = []
        for digest in (hint, self._state.digest):
            hexdigest = digest.removeprefix("sha256:")
            if not _HEX.match(hexdigest):
                continue
            path = trust.release_path(self.environment, self.cluster, hexdigest)
            if path in tried:
                continue
            tried.append(path)
            directed, released, roles = trust.lookup(updater, self.metadata_dir, path)
            if directed is not None:
                return path, directed, released, roles
        found = trust.scan(updater, self.metadata_dir, self.environment, self.cluster)
        if len(found) > 1:
            raise VerificationError(f"the director names {len(found)} bundles for {self.cluster}",
                                    reason="MalformedMetadata")
        if not found:
            raise VerificationError(f"the director names no bundle for {self.cluster}", reason="NotDirected")
        return (found[0], *trust.lookup(updater, self.metadata_dir, found[0]))

    def _trusted_files(self, env: str, found: dict[str, str]) -> dict[str, dict]:
        """The metadata python-tuf persisted for each role this refresh trusted, as JSON (+ ``raw`` bytes).

        Each file whose bytes differ from the last refresh is fsynced here
        (python-tuf renames without fsync): trusted metadata is rollback
        protection and must be as durable as the release counter written next.
        """
        docs, changed = {}, False
        roles = ["root", "timestamp", "snapshot", "targets", trust.DIRECTOR_ROLE, found["director"],
                 trust.release_role(env)]
        if found["release"] != trust.release_role(env):  # its bin (an unbinned release-<env> holds the target)
            roles.append(found["release"])
        for role in roles:
            path = self.metadata_dir / f"{role}.json"
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    raw = _read_all(fd)
                    digest = sha256_hex(raw)
                    if self._synced.get(role) != digest:
                        os.fsync(fd)
                        changed = True
                finally:
                    os.close(fd)
                cached = self._parsed.get(role)
                if cached is not None and cached[0] == digest:
                    doc = cached[1]  # byte-identical to the file parsed last refresh (root, targets, director...)
                else:
                    doc = json.loads(raw)
                    _expires(doc)
                    doc["raw"] = raw
                    self._parsed[role] = (digest, doc)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise VerificationError(f"trusted {role} metadata is unreadable after a refresh: {e}",
                                        reason="StateNotPersisted") from e
            docs[role] = doc
            self._synced[role] = digest
        if changed:
            fsync_dir(self.metadata_dir)
            fsync_dir(self.metadata_dir / "root_history")
        return docs

    def _load(self) -> TrustState:
        try:
            doc = documents.load_json(self._path.read_bytes(), max_bytes=documents.MAX_STATE_FILE_BYTES)
            if not isinstance(doc, dict):
                raise ValueError(f"a JSON {type(doc).__name__}, not an object")
            if not isinstance(doc.get("cluster"), str):
                raise ValueError(f"cluster is {documents.clip_repr(doc.get('cluster'))}, not a name")
            if doc.get("cluster") != self.cluster:
                raise ConfigError(f"trust state {self._path} belongs to cluster "
                                  f"{documents.clip_repr(doc.get('cluster'))}")
            return TrustState(int(doc["release"]), str(doc["digest"]), str(doc.get("valid_until", "")),
                              str(doc.get("timestamp", "")),
                              release_number.plausible(doc.get("number", 0), int(doc["release"])))
        except FileNotFoundError:
            return TrustState()
        except KeyError as e:
            raise ConfigError(f"trust state {self._path} lacks {e}; refusing to start without rollback protection",
                              reason=STATE_CORRUPT) from None
        except (OSError, ValueError, TypeError, OverflowError) as e:
            raise ConfigError(f"trust state {self._path} is unreadable ({documents.clip(str(e))}); refusing to start "
                              "without rollback protection", reason=STATE_CORRUPT) from None

    def _save(self, state: TrustState) -> None:
        doc = {"cluster": self.cluster, **dataclasses.asdict(state)}
        try:
            atomic_write(self._path, json.dumps(doc, sort_keys=True).encode() + b"\n")
        except OSError as e:
            raise VerificationError(f"cannot persist trust state {self._path}: {e.strerror}",
                                    reason="StateNotPersisted") from e
        self._state = state

    def provenance(self, digest: str) -> dict | None:
        try:
            return json.loads((self.provenance_dir / f"{digest.split(':')[-1]}.json").read_text())
        except (OSError, ValueError):
            return None
