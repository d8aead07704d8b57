"""The TUF metadata a watch event carries, so an agent's refresh needs no ``TrustService.Fetch`` round trip.

Every release makes each agent run one TUF refresh. Over ``Fetch`` that is
five to nine unary RPCs per agent (timestamp, root probe, snapshot, the
director bin holding the cluster, the release bin holding its image, ...),
each a TLS record, a Python coroutine and an interceptor pass on the hub:
``bench/fleet.py`` profiled ~8 ms of hub CPU per agent and release at 1,000
agents, most of it in those RPCs. The files are the same for every agent of
a bin (64 bins a side), so the hub reads each once and puts it by reference
into every event: the event carries the timestamp, the snapshot it names and
the two bins the cluster's targets live in, at the versions that snapshot
lists, plus the newest root version (the agent answers its probe for the
next root from it).

Nothing here is trusted by the agent: python-tuf verifies pushed files
exactly as fetched ones (signatures, the snapshot's lengths and hashes,
versions, expiry), and any file not pushed — a role that changes rarely
(targets, director, ``release-<env>``), a root rotation — is fetched as
before. Because every file comes from one timestamp and the versioned names
its snapshot lists (consistent snapshots: those files never change), a push
is never a mix of two publishes, even while the writer is publishing.

Cost bound: the timestamp is re-read only when its file changed (inode and
mtime), each versioned file once (``MAX_CACHED_FILES``); a push above
``MAX_PUSH_BYTES`` is not sent (the agent fetches instead).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable

from skerry.core import trust
from skerry.core.errors import SkerryError

# A push above this is left out (the agent fetches the files instead): it keeps every watch event
# well under the 16 MiB message cap, and bins stay far below it (~250 B per cluster, 64 bins).
MAX_PUSH_BYTES = 2 * 1024 * 1024
# Versioned metadata files kept in memory: the current and previous version of the snapshot and
# of every bin of a few environments (64 bins a side) with room to spare.
MAX_CACHED_FILES = 1024


class MetadataPush:
    """What to push with a cluster's watch event: ``files_for(cluster) -> (encoded files, root_version)``.

    ``repository`` is the hub's ``TrustRepository`` (read through its public ``fetch``,
    ``directed``, ``release_holder``, ``root`` and ``metadata_dir``);
    ``encode(name, data)`` makes a file's wire form, once per file version, shared by every
    stream (the servicer's ``metadata_event``).
    """

    def __init__(self, repository, encode: Callable[[str, bytes], bytes], *,
                 stat: Callable[[str], os.stat_result] = os.stat):
        self._repo = repository
        self._encode = encode
        self._stat = stat
        self._timestamp_key: tuple | None = None
        self._timestamp: tuple[bytes, str, dict[str, int]] | None = None  # wire, snapshot name, snapshot meta
        self._files: OrderedDict[str, tuple[int, bytes]] = OrderedDict()  # name -> (size, wire)

    def files_for(self, cluster: str) -> tuple[tuple[bytes, ...], int]:
        """The files an agent of ``cluster`` will ask for in its next refresh (encoded), and the newest root version.

        Empty when anything is missing or inconsistent (the agent then fetches as before).
        """
        root_version = self._repo.root.version
        try:
            ts_wire, snapshot_name, meta = self._current_timestamp()
            size, wire = self._file(snapshot_name)
            files, total = [ts_wire, wire], size
            for role in self._roles_of(cluster):
                version = meta.get(role)
                if version is not None:
                    size, wire = self._file(f"{version}.{role}.json")
                    files.append(wire)
                    total += size
        except (SkerryError, OSError, ValueError, KeyError, TypeError):
            return (), root_version
        if total > MAX_PUSH_BYTES:
            return (), root_version
        return tuple(files), root_version

    def _roles_of(self, cluster: str) -> list[str]:
        """The director bin and the release bin holding ``cluster``'s current target (one path, both sides)."""
        directed = self._repo.directed(cluster)
        parsed = trust.parse_release_path(directed.path) if directed is not None else None
        if parsed is None:
            return []
        return [trust.director_bin(directed.path), self._repo.release_holder(parsed[0], directed.path)]

    def _current_timestamp(self) -> tuple[bytes, str, dict[str, int]]:
        """The timestamp's wire form, the snapshot it names, and that snapshot's role versions."""
        st = self._stat(str(self._repo.metadata_dir / "timestamp.json"))
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._timestamp_key or self._timestamp is None:
            raw = self._repo.fetch("metadata/timestamp.json")
            if len(raw) > trust.MAX_TIMESTAMP_BYTES:
                raise ValueError("timestamp.json is over its cap")
            snapshot = json.loads(raw)["signed"]["meta"]["snapshot.json"]
            name = f"{int(snapshot['version'])}.snapshot.json"
            snap_meta = json.loads(self._repo.fetch(f"metadata/{name}"))["signed"]["meta"]
            meta = {role.removesuffix(".json"): int(entry["version"]) for role, entry in snap_meta.items()}
            self._timestamp, self._timestamp_key = (self._encode("timestamp.json", raw), name, meta), key
        return self._timestamp

    def _file(self, name: str) -> tuple[int, bytes]:
        """A versioned metadata file's size and wire form (such files never change: read once)."""
        entry = self._files.get(name)
        if entry is None:
            data = self._repo.fetch(f"metadata/{name}")
            if len(data) > trust.MAX_METADATA_BYTES:
                raise ValueError(f"{name} is over the metadata cap")
            entry = self._files[name] = (len(data), self._encode(name, data))
            while len(self._files) > MAX_CACHED_FILES:
                self._files.popitem(last=False)
        else:
            self._files.move_to_end(name)
        return entry
