"""The director: which bundle each cluster runs, one target per cluster in 64 hash bins (online key).

The director lists, for each cluster, exactly the release path of its current
bundle — the same target (path, length, SHA-256) the release side signed — with
the cluster's release counter and the release number people read
(``skerry.core.release_number``: display only, agents compare the counter);
directing a cluster elsewhere drops its previous entry. A cluster is directed
only to what the release side released.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable, Sequence

from tuf.api.metadata import DelegatedRole, Delegations, Metadata, TargetFile, Targets

from skerry.core import release_number, trust
from skerry.core.canonical import sha256_hex
from skerry.core.errors import InvalidInput


@dataclasses.dataclass(frozen=True)
class Directed:
    """The director's word for one cluster: the release counter, its number and which bundle (target path)."""

    cluster: str
    release: int
    path: str
    expires: _dt.datetime
    number: int = 0


class Directing:
    """``TrustRepository``'s director side."""

    def _director_index(self) -> dict[str, str]:
        """cluster -> the target path the director lists for it, from the director bins loaded."""
        index: dict[str, str] = {}
        for role, md in self.md.items():
            if trust.is_director_bin(role):
                for path in md.signed.targets:
                    parsed = trust.parse_release_path(path)
                    if parsed is not None:
                        index[parsed[1]] = path
        return index

    def delegate_director_bins(self) -> None:
        """Delegate every director bin (empty ones too): the director role then never changes for a release."""
        with self.batch():
            for i in range(0, 16 ** trust.BIN_HEX, trust.BIN_WIDTH):
                self._ensure_director_bin(f"{trust.CLUSTER_BIN_PREFIX}{i:0{trust.BIN_HEX}x}")

    def _ensure_director_bin(self, role: str) -> None:
        """Delegate the director's hash bin ``role`` (same online key), made empty if new."""
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
            name=role, keyids=keyids, threshold=1, terminating=False,
            path_hash_prefixes=trust.bin_prefixes(role[len(trust.CLUSTER_BIN_PREFIX):]))
        self._touch(trust.DIRECTOR_ROLE, director)
        if role not in self.md and role not in self._dirty:
            self._touch(role, Metadata(Targets(version=1, targets={})))

    def direct(self, cluster: str, env: str, data: bytes, *, revision: str, release: int, number: int = 0,
               render: str = "") -> Directed | None:
        """Point ``cluster`` at ``data`` if the release side signed it; ``None`` if it has not (yet)."""
        return self.direct_many([(cluster, env)], data, revision=revision, release=lambda _c: release,
                                number=lambda _c: number, render=render)[cluster]

    def direct_many(self, clusters: Sequence[tuple[str, str]], data: bytes, *, revision: str,
                    release: Callable[[str], int], number: Callable[[str], int] | None = None,
                    render: str = "", alive: Callable[[], None] | None = None) -> dict[str, Directed | None]:
        """``direct`` for every ``(cluster, env)`` sharing the bundle ``data``: the blob is stored and
        hashed once, each changed director bin signed once, one snapshot and timestamp made.

        ``render`` (engine and version) is provenance in the director's target, outside the bundle's
        digest. Environments whose release side the hub holds (``--release-keys``) are released here.
        ``alive``: the batch's heartbeat (``Publishing.batch``), called per cluster and through the flush.
        """
        for cluster, env in clusters:
            if not trust.valid_name(cluster) or not trust.valid_name(env):
                raise InvalidInput(f"cluster {cluster!r} / environment {env!r} must be DNS labels")
        hexdigest = sha256_hex(data)
        out: dict[str, tuple[int, str, int] | None] = {}
        with self.batch(alive):
            self._keep_blob(hexdigest, data)
            auto: dict[str, list[str]] = {}
            for cluster, env in clusters:
                self._beat()
                if (self.release_target(env, cluster, hexdigest) is None
                        and trust.release_role(env) in self._release_signers):
                    auto.setdefault(env, []).append(cluster)
            for env, names in auto.items():
                self._auto_release(env, names, data, revision)
            for cluster, env in clusters:
                self._beat()
                out[cluster] = self._direct_one(cluster, env, data, hexdigest, revision, release(cluster),
                                                number(cluster) if number is not None else 0, render)
        directed: dict[str, Directed | None] = {}
        for cluster, got in out.items():  # after the flush (each expiry is of the new versions): ``alive`` itself
            if alive is not None:
                alive()
            directed[cluster] = None if got is None else Directed(
                cluster=cluster, release=got[0], path=got[1], expires=self.horizon(got[1]), number=got[2])
        return directed

    def _direct_one(self, cluster: str, env: str, data: bytes, hexdigest: str, revision: str, release: int,
                    number: int, render: str) -> tuple[int, str, int] | None:
        """List the release path of ``data`` for ``cluster`` in its director bin, with the release counter
        and number; drop the path it listed before (the director names one bundle per cluster)."""
        path = trust.release_path(env, cluster, hexdigest)
        if self.release_target(env, cluster, hexdigest) is None:
            return None
        current = self.directed(cluster)
        if current is not None and current.path == path:
            # already directed (e.g. a restarted hub re-rendering the same bundle): keep its release counter
            kept = int(current.custom["release"])
            return kept, path, release_number.director_number(current.custom, kept)
        role = trust.director_bin(path)
        self._ensure_director_bin(role)
        md = self._dirty.get(role) or self.md[role]
        target = TargetFile(length=len(data), hashes={"sha256": hexdigest}, path=path)
        custom: dict[str, object] = {"release": release, "revision": revision}
        if number > 0:
            custom["number"] = number
        if render:
            custom["render"] = render
        target.unrecognized_fields["custom"] = custom
        md.signed.targets[path] = target  # the bin's other clusters keep theirs
        self._touch(role, md)
        if current is not None:
            old = trust.director_bin(current.path)
            before = self._dirty.get(old) or self.md[old]
            del before.signed.targets[current.path]
            self._touch(old, before)
        self._directing[cluster] = path
        self._unlinked[path] = hexdigest
        return release, path, number

    def directed(self, cluster: str) -> TargetFile | None:
        """The director's target for ``cluster`` (its current bundle), or ``None``."""
        path = self._directing.get(cluster)
        if path is None:
            return None
        role = trust.director_bin(path)
        md = self._dirty.get(role) or self.md.get(role)
        return md.signed.targets.get(path) if md else None

    def horizon(self, path: str) -> _dt.datetime:
        """When what an agent trusts for target ``path`` (both sides' roles) first expires."""
        env = trust.parse_release_path(path)[0]
        roles = ["root", "timestamp", "snapshot", "targets", trust.DIRECTOR_ROLE, trust.director_bin(path),
                 trust.release_role(env), self.release_holder(env, path)]
        return min(self.md[r].signed.expires for r in roles if r in self.md)
