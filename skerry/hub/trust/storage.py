"""Where the trust repository's bytes live, and the garbage collection that bounds them.

The files (layout in ``skerry.core.trust``): a version of each role under
``metadata/``, each bundle once under ``blobs/`` (content-addressed, however
many clusters share it) and, under ``targets/``, a hard link to its blob for
every target a role lists, at its hash-prefixed name. ``_write``,
``_keep_blob``, ``_link_targets`` and ``fetch`` are the only code that touches
them. With a storage (``skerry.hub.state.trust_files``: the hub state), they also hand it every
file and read through it what they serve; the directory is then an export
(written where it exists, once the state committed what it copies: ``_export``), and the collection below
bounds the export only.

What is kept — everything else is removed after each commit (``_collect_garbage``),
and once in full when the hub opens the repository (``collect_all_garbage``):

* every root version (a client walks the chain from the root it holds),
  ``timestamp.json``, and the current and previous version of every other role
  (a client that read the previous snapshot still finds every file it names);
* a target file while the current or previous version of a role lists it
  (the director's bin or the release side's role of its path);
* a blob while a target file links to it (its link count), a release proposal
  offered to CI names it, or release signatures are being collected for it.

So the repository is bounded by the fleet, not by history: per cluster at most
three target files (the release side keeps the directed and the newest release,
its previous version one more), and per role two versions
(``tests/trust/test_storage_bound.py`` states and checks the bound).

In the hub state (a storage) the same rules hold, applied inside the
publication's fenced transaction (``_drop_stored_garbage``), and in full when
a writer opens the repository or takes over (``collect_stored_garbage``);
``tests/hub/state/test_storage_bound.py`` checks the tables on both backends.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import threading
from collections import OrderedDict

import structlog
from tuf.api.metadata import Metadata, Targets

from skerry.core import trust
from skerry.core.canonical import sha256_hex
from skerry.core.errors import Absent, InvalidInput, NotFound
from skerry.core.files import atomic_write, sync_filesystem
from skerry.hub.trust.publishing import SERIALIZER, VERSIONED

log = structlog.get_logger("skerry.hub.trust")

# Blob bytes kept in memory for Fetch (the newest few; others are read from disk or the hub state).
MEMORY_BLOBS = 4
# Proposed (not yet released) release paths whose blob CI signers may fetch: the newest per cluster,
# for at most this many clusters (each holds its blob on disk until it is released or superseded).
MAX_OFFERED = 100_000


def _missing(path: str, name: str) -> NotFound:
    """The answer for a metadata file that is not there. Every root version is kept, so a missing one is a
    client's probe for the next root (``Absent``: answered, not a refusal); anything else is ``NotFound``."""
    m = VERSIONED.match(name)
    if m is not None and m["role"] == "root":
        return Absent(f"{path} does not exist (no newer root)")
    return NotFound(f"{path} does not exist")


def _atomic_write(path: pathlib.Path, data: bytes, mode: int = 0o644) -> None:
    """``skerry.core.files.atomic_write`` with this module's default: public files (0644)."""
    atomic_write(path, data, mode)


class BlobCache:
    """The newest ``MEMORY_BLOBS`` blobs by SHA-256 hex. Fetch fills it from a worker thread (a read of the
    hub state is never made on the event loop) while the loop publishes: so it takes a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: OrderedDict[str, bytes] = OrderedDict()

    def get(self, hexdigest: str) -> bytes | None:
        with self._lock:
            return self._blobs.get(hexdigest)

    def __contains__(self, hexdigest: str) -> bool:
        with self._lock:
            return hexdigest in self._blobs

    def put(self, hexdigest: str, data: bytes) -> None:
        with self._lock:
            self._blobs[hexdigest] = data
            self._blobs.move_to_end(hexdigest)
            while len(self._blobs) > MEMORY_BLOBS:
                self._blobs.popitem(last=False)

    def pop(self, hexdigest: str) -> None:
        with self._lock:
            self._blobs.pop(hexdigest, None)


class ServedFiles:
    """``TrustRepository``'s answers to Fetch: from memory where it holds them (``held``), else from the disk or
    the hub state (``fetch``, which a server calls off its event loop)."""

    def fetch(self, path: str) -> bytes:
        """The bytes served at ``path`` (``metadata/...`` or ``targets/...``); ``NotFound`` if absent.

        A release target is served only while a release role lists it (its bytes come from the
        content-addressed blob store, where clusters sharing a bundle share one file). May read the disk
        or the hub state: on a server, ``held`` first, and this off the event loop.
        """
        return self._fetch(path, held=False)

    def held(self, path: str) -> bytes | None:
        """``fetch`` from memory only: the bytes, or None if they must be read (``fetch``, off the event loop;
        it may still find nothing). Raises as ``fetch`` does for a path that is never served."""
        return self._fetch(path, held=True)

    def _fetch(self, path: str, *, held: bool) -> bytes | None:
        if not trust.safe_fetch_path(path):
            raise InvalidInput(f"not a trust repository path: {path!r}")
        if path.startswith("targets/"):
            target, env, cluster, hexdigest = trust.parse_target_file(path[len("targets/"):])
            if self.release_target(env, cluster, hexdigest) is None and not self._proposed(target):
                raise NotFound(f"{path} is not a released or directed bundle")
            return self._blobs.get(hexdigest) if held else self._blob(hexdigest, path)
        name = path[len("metadata/"):]
        if self._storage is not None:
            data = self._served(name, held=held)
            if data is None and not held:
                raise _missing(path, name)
            return data
        if held:
            return None
        try:
            return (self.metadata_dir / name).read_bytes()
        except FileNotFoundError:
            raise _missing(path, name) from None

    def _served(self, name: str, *, held: bool = False) -> bytes | None:
        """A metadata file from memory if it is a role's current version, else from the storage (unless
        ``held``: None)."""
        m = VERSIONED.match(name)
        role = "timestamp" if name == "timestamp.json" else (m["role"] if m else "")
        md = self.md.get(role)
        if md is not None and role in self._raw and (m is None or int(m["v"]) == md.signed.version):
            return self._raw[role]
        if role == "root" and md is not None and m is not None and int(m["v"]) > md.signed.version:
            # Every refresh probes the next root: not published as far as this process knows (a rotation
            # comes with the next reload); answered from memory, never waiting on the database (an outage).
            if held:
                raise _missing(f"metadata/{name}", name)
            return None
        return None if held else self._storage.metadata(name)

    def _proposed(self, path: str) -> bool:
        """Whether a release proposal names ``path`` (CI signers read its blob to compare objects)."""
        parsed = trust.parse_release_path(path)
        return parsed is not None and self._offered.get(parsed[:2]) == path

    def _blob(self, hexdigest: str, path: str) -> bytes:
        data = self._blobs.get(hexdigest)
        if data is not None:
            return data
        if self._storage is not None:
            data = self._storage.blob(hexdigest)
            if data is None:
                raise NotFound(f"{path}: its blob is missing from the hub state")
            self._blobs.put(hexdigest, data)  # the next agent of the fleet asks for the same bytes
            return data
        try:
            return self._blob_path(hexdigest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{path}: its blob is missing from {self.blobs_dir}") from None


class RepositoryFiles:
    """``TrustRepository``'s files: metadata, blobs, hard-linked targets, and their garbage collection."""

    def _write(self, role: str, md: Metadata) -> None:
        """Write ``role``'s new version. Inside a batch, not fsynced one by one: ``_new_timestamp``
        flushes them all at once before the timestamp that publishes them is written."""
        data = md.to_bytes(SERIALIZER)
        name = "timestamp.json" if role == "timestamp" else f"{md.signed.version}.{role}.json"
        durable = role == "timestamp" or not (self._batch_depth or self._flushing)
        if self._storage is not None and self._exports():
            self._unexported.append((name, data))  # once the state committed it: ``_export``
        elif self._exports():
            self._unsynced = self._unsynced or not durable
            atomic_write(self.metadata_dir / name, data, 0o644, durable=durable)
        self._track(role, md)
        self.md[role] = md
        self._raw[role] = data
        if self._storage is not None:
            self._storage.put_metadata(name, role, md.signed.version, data)
            if role == "timestamp":  # the last file of every publication: its garbage goes with it
                self._drop_stored_garbage()
                self._storage.published()

    def _export(self) -> None:
        """The state committed what this process wrote: copy it to the directory, the timestamp last (after
        the others are on disk). Never before the commit: ``reload`` takes a file there that is newer than
        the state's as an offline change (``skerry keys``), so a file signed for a commit that was refused
        (a writer fenced mid-release) would be published by this process's next term as the writer."""
        files, self._unexported = self._unexported, []
        if not files:
            return
        timestamp = None
        for name, data in files:
            if name == "timestamp.json":
                timestamp = data
            else:
                atomic_write(self.metadata_dir / name, data, 0o644, durable=False)
        sync_filesystem(self.metadata_dir)
        if timestamp is not None:
            atomic_write(self.metadata_dir / "timestamp.json", timestamp, 0o644)

    def _exports(self) -> bool:
        """Whether files are written to the directory: always without a storage; with one (the hub state),
        the directory is an export, written where it exists (a serving replica has none)."""
        return self._storage is None or self.metadata_dir.is_dir()

    def _blob_path(self, hexdigest: str) -> pathlib.Path:
        return self.blobs_dir / f"{hexdigest}.json"

    def store_blob(self, env: str, cluster: str, data: bytes) -> str:
        """Keep a bundle's bytes, content-addressed (one file however many clusters share them); its release path."""
        hexdigest = sha256_hex(data)
        self._keep_blob(hexdigest, data)
        return trust.release_path(env, cluster, hexdigest)

    def _keep_blob(self, hexdigest: str, data: bytes) -> None:
        if hexdigest in self._blobs:
            return
        dest = self._blob_path(hexdigest)
        if self._exports() and not dest.exists():
            _atomic_write(dest, data)
        if self._storage is not None:
            self._storage.put_blob(hexdigest, data)
        self._blobs.put(hexdigest, data)

    def _link_targets(self) -> None:
        """Give each target added since the last timestamp (director entries, release targets) a file
        under its consistent-snapshot name: a hard link to the one blob file, so a stock TUF client
        reading the repository directory as static files finds every target."""
        targets = str(self.targets_dir)
        if not self._exports():
            self._unlinked.clear()
            return
        sources: dict[str, str] = {}  # blob -> the file its next links go to, once the blob's own is full
        for path, hexdigest in self._unlinked.items():
            self._beat()
            name = trust.consistent_name(path, hexdigest)
            directory = os.path.join(targets, name.rpartition("/")[0])
            if directory not in self._linked_dirs:
                os.makedirs(directory, exist_ok=True)
                self._linked_dirs.add(directory)
            dest = os.path.join(targets, name)
            source = sources.get(hexdigest) or str(self._blob_path(hexdigest))
            try:
                os.link(source, dest)
            except FileExistsError:
                pass
            except FileNotFoundError:  # a target whose blob this hub never stored (made by hand): no file
                log.warning("target has no blob to link", path=path, sha256=hexdigest)
            except OSError as e:
                if e.errno != errno.EMLINK:
                    raise
                # The file system's links per file are used up (ext4: 65,000; a blob shared by a fleet of
                # 100,000 has two targets per cluster): this target gets its own copy and the blob's next
                # targets link to it. A target file is collected by its name, so copies need no bookkeeping.
                _atomic_write(pathlib.Path(dest), pathlib.Path(source).read_bytes())
                sources[hexdigest] = dest
        self._unlinked.clear()

    def _offer(self, path: str) -> None:
        """Let CI signers fetch the blob of proposed release ``path`` (one proposal per cluster)."""
        env, cluster, _hex = trust.parse_release_path(path)
        old = self._offered.pop((env, cluster), None)
        self._offered[(env, cluster)] = path
        if old is not None and old != path:
            self._blob_candidates.add(trust.parse_release_path(old)[2])
        while len(self._offered) > MAX_OFFERED:
            dropped = self._offered.pop(next(iter(self._offered)))
            self._blob_candidates.add(trust.parse_release_path(dropped)[2])

    def _released(self, paths) -> None:
        """Proposals now published: their blobs are kept by their target files from here on."""
        for path in paths:
            parsed = trust.parse_release_path(path)
            if parsed is not None and self._offered.get(parsed[:2]) == path:
                del self._offered[parsed[:2]]

    # --- garbage collection ---------------------------------------------------------------

    def _remember_paths(self, role: str, md: Metadata) -> None:
        """At load: the paths ``role``'s current version lists and, from its file, those its previous one did."""
        if not isinstance(md.signed, Targets) or role == "targets":
            return
        self._paths[role] = frozenset(md.signed.targets)
        previous = f"{md.signed.version - 1}.{role}.json"
        try:
            raw = self._storage.metadata(previous) if self._storage is not None else None
            doc = json.loads(raw if raw is not None else (self.metadata_dir / previous).read_bytes())
            self._previous_paths[role] = frozenset(doc["signed"].get("targets") or {})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._previous_paths[role] = frozenset()

    def _track(self, role: str, md: Metadata) -> None:
        """What writing ``role``'s new version makes collectable once the commit is published."""
        version = md.signed.version
        if role not in ("timestamp", "root") and version > 2:
            self._obsolete.append(f"{version - 2}.{role}.json")
        if isinstance(md.signed, Targets) and role != "targets":
            new = frozenset(md.signed.targets)
            old = self._paths.get(role, frozenset())
            self._gone.update(self._previous_paths.get(role, frozenset()) - old - new)
            self._previous_paths[role], self._paths[role] = old, new

    def _retained(self, path: str) -> bool:
        """Whether the current or previous version of either side's role of ``path`` lists it."""
        parsed = trust.parse_release_path(path)
        if parsed is None:
            return False
        for role in (trust.director_bin(path), self.release_holder(parsed[0], path)):
            if path in self._paths.get(role, ()) or path in self._previous_paths.get(role, ()):
                return True
        return False

    def _protected_blobs(self) -> set[str]:
        """Blobs no target file may link to yet: proposals offered to CI, releases collecting signatures.
        (A takeover's full collection asks from a worker thread while the loop may change what it reads:
        each mapping is copied in one step before it is walked.)"""
        held = {trust.parse_release_path(path)[2] for path in list(self._offered.values())}
        for md in self._pending.values():
            held.update(t.hashes.get("sha256", "") for t in md.signed.targets.values())
        return held

    def _drop_blob(self, hexdigest: str, protected: set[str]) -> bool:
        """Remove a blob no target file links to (link count 1: its own name) and nothing holds."""
        if hexdigest in protected:
            return False
        path = self._blob_path(hexdigest)
        try:
            if path.stat().st_nlink != 1:
                return False
        except FileNotFoundError:
            return False
        path.unlink(missing_ok=True)
        self._blobs.pop(hexdigest)
        return True

    def _referenced_blobs(self) -> set[str]:
        """Blobs a kept version of a role lists (the current or previous one), or something holds."""
        held = self._protected_blobs()
        for listed in (self._paths, self._previous_paths):
            for paths in list(listed.values()):
                self._beat()
                for path in paths:
                    parsed = trust.parse_release_path(path)
                    if parsed is not None:
                        held.add(parsed[2])
        return held

    def _drop_stored_garbage(self) -> None:
        """Into the publication's own (fenced) transaction: remove from the hub state what this commit made
        obsolete, by the rules above: role versions older than the previous one, blobs no kept version lists
        and nothing holds. The files pass (``_collect_garbage``) runs after the commit, from the same lists."""
        for name in self._obsolete:
            m = VERSIONED.match(name)
            if m is not None:
                self._storage.drop_metadata(m["role"], int(m["v"]) + 1)
        candidates = set(self._blob_candidates)
        for path in self._gone:
            self._beat()
            parsed = trust.parse_release_path(path)
            if parsed is not None:
                candidates.add(parsed[2])
        if candidates:
            dropped = candidates - self._referenced_blobs()
            self._storage.drop_blobs(dropped)
            for hexdigest in dropped:
                self._blobs.pop(hexdigest)

    def collect_stored_garbage(self) -> int:
        """The full pass over the hub state (a writer opening the repository, or taking over from another):
        role versions and blobs that no kept version lists and nothing holds; how many rows it removed.
        Nothing on a process that does not write."""
        if self._storage is None or not self._storage.may_publish:
            return 0
        return self._storage.collect(self._referenced_blobs)

    def _collect_garbage(self) -> None:
        """After a commit is published: remove role versions older than the previous one, target files no
        kept version lists, and blobs nothing links to or holds."""
        if not self._exports():  # nothing on disk (the hub state's share went with the commit: above)
            self._obsolete.clear()
            self._gone.clear()
            self._blob_candidates.clear()
            return
        for name in self._obsolete:
            (self.metadata_dir / name).unlink(missing_ok=True)
        self._obsolete.clear()
        blobs, self._blob_candidates = self._blob_candidates, set()
        for path in self._gone:
            self._beat()
            if not self._retained(path):
                hexdigest = trust.parse_release_path(path)[2]
                (self.targets_dir / trust.consistent_name(path, hexdigest)).unlink(missing_ok=True)
                blobs.add(hexdigest)
        self._gone.clear()
        if blobs:
            protected = self._protected_blobs()
            for hexdigest in blobs:
                self._drop_blob(hexdigest, protected)

    def collect_all_garbage(self) -> int:
        """A full pass over every file (when the hub opens the repository: what a crash or an older hub
        left); how many files it removed."""
        removed = 0
        newest = {role: md.signed.version for role, md in self.md.items()}
        for entry in os.scandir(self.metadata_dir):
            m = VERSIONED.match(entry.name)
            if m and m["role"] != "root" and int(m["v"]) < newest.get(m["role"], 0) - 1:
                os.unlink(entry.path)
                removed += 1
        for directory, _dirs, files in os.walk(self.targets_dir):
            for name in files:
                rel = os.path.relpath(os.path.join(directory, name), self.targets_dir)
                parsed = trust.parse_target_file(rel)
                if parsed is None or rel != trust.consistent_name(parsed[0], parsed[3]) or not self._retained(parsed[0]):
                    os.unlink(os.path.join(directory, name))
                    removed += 1
        if self.blobs_dir.is_dir():
            protected = self._protected_blobs()
            for entry in os.scandir(self.blobs_dir):
                removed += self._drop_blob(entry.name.removesuffix(".json"), protected)
        if removed:
            log.info("trust repository garbage collected", files=removed)
        return removed
