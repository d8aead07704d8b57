"""The TUF tables of the hub state are bounded by the fleet, not by its history, on both backends.

The shape of ``tests/trust/test_storage_bound.py`` (1,000 clusters × 50 commits, two input sets sharing a
blob each, released by the hub's own dev key, published in one batch per commit), with the repository's
files in the hub state as a writer hub keeps them. After every commit the tables' rows and payload bytes
stay within the file repository's bounds, clients following along verify every commit, and at the end
every cluster's kept release verifies for a fresh client served by a replica that has only the state.
Before the state had its own garbage collection the same run left 50 times as many rows.
"""

from __future__ import annotations

import json

import pytest

from skerry.agent.trust import TufVerifier
from skerry.core import trust
from skerry.core.canonical import sha256_hex
from skerry.hub.state import Fenced
from skerry.hub.state.trust_files import TrustFiles
from skerry.hub.trust import admin
from skerry.hub.trust.repository import TrustRepository
from skerry.hub.writer import Writer
from tests.trust import test_storage_bound as files_bound
from tests.trust.fetchers import RepositoryFetcher

CLUSTERS, COMMITS, GROUPS = files_bound.CLUSTERS, files_bound.COMMITS, files_bound.GROUPS
MAX_ROWS = files_bound.MAX_METADATA_FILES  # trust_files: the same files the directory keeps
MAX_BLOBS = files_bound.MAX_BLOBS
# Payload bytes of both tables: the files repository's bound (metadata) plus the kept blobs.
MAX_METADATA_BYTES = CLUSTERS * 2 * files_bound.MAX_RELEASES_PER_CLUSTER * 2 * files_bound.ENTRY_BYTES \
    + files_bound.FIXED_BYTES
# A TUF client's update costs ~0.1-0.8 s here (it walks the bins), so clients sample the fleet: FOLLOWERS of them
# update every FOLLOW_EVERY commits, and SAMPLE fresh ones, spread over the fleet, at the end; the tables'
# own check (every blob a kept version lists is stored, and nothing else) covers every cluster.
FOLLOWERS = 2
FOLLOW_EVERY = 10
SAMPLE = 6
LEASE = 3600.0  # the test's writer never loses its lease by time


def writer_repo(backend, directory, holder: str) -> tuple[Writer, TrustRepository]:
    state = backend.open()
    writer = Writer(state, holder, ttl=LEASE)
    assert writer.try_acquire()
    return writer, TrustRepository.open(directory, storage=TrustFiles(state, writer))


def replica(backend, tmp_path) -> TrustRepository:
    """A serving replica: no trust directory, no keys, only the state."""
    return TrustRepository(tmp_path / "no-trust-dir", storage=TrustFiles(backend.open()), online={})


def client(directory, tmp_path, repo: TrustRepository, cluster: str) -> TufVerifier:
    return TufVerifier(cluster, "dev", directory / "root.json", tmp_path / "agents" / cluster,
                       lambda: RepositoryFetcher(repo, []))


def kept_versions(tx) -> dict[str, list[tuple[int, bytes]]]:
    """Each role's stored versions, newest first, read by name from its newest version down."""
    out = {}
    for role, (version, data) in tx.trust_newest().items():
        out[role] = [(version, data)]
        if role in ("timestamp", "root"):
            continue
        v = version - 1
        while v >= 1 and (older := tx.trust_file(f"{v}.{role}.json")) is not None:
            out[role].append((v, older))
            v -= 1
    return out


def all_blobs(tx) -> set[str]:
    out, after = set(), ""
    while page := tx.blob_digests(after):
        out.update(page)
        after = page[-1]
    return out


def test_a_thousand_clusters_times_fifty_commits_keep_the_tables_bounded(backend, fast_dir, tmp_path):
    directory = fast_dir / "trust"
    admin.init(directory, {"dev": (1, 1)}, dev=True)
    writer, repo = writer_repo(backend, directory, "hub-a")
    served = replica(backend, tmp_path)
    clusters = [f"c{i:04d}-dev" for i in range(CLUSTERS)]
    followers = [client(directory, tmp_path, served, c) for c in clusters[:: CLUSTERS // FOLLOWERS]]
    most = {"rows": 0, "blobs": 0, "bytes": 0}
    for commit in range(COMMITS):
        with repo.batch():
            for group in range(GROUPS):
                repo.direct_many([(c, "dev") for c in clusters[group::GROUPS]], files_bound.blob(commit, group),
                                 revision=f"{commit:040x}", release=lambda _c, n=commit: n + 1)
        with writer.state.read() as tx:
            usage = tx.trust_usage()
        rows, blobs = usage["trust_files"][0], usage["blobs"][0]
        payload = usage["trust_files"][1] + usage["blobs"][1]
        assert rows <= MAX_ROWS, (commit, usage)
        assert blobs <= MAX_BLOBS, (commit, usage)
        assert payload <= MAX_METADATA_BYTES + MAX_BLOBS * len(files_bound.blob(commit, 0)), (commit, usage)
        most = {"rows": max(most["rows"], rows), "blobs": max(most["blobs"], blobs),
                "bytes": max(most["bytes"], payload)}
        if commit % FOLLOW_EVERY != FOLLOW_EVERY - 1:
            continue
        assert served.load()
        for agent in followers:
            got = agent.update()
            assert got is not None and agent.last_release == commit + 1, (commit, agent.cluster)
    print(f"\n{backend.name}: at most {most['rows']} metadata rows (bound {MAX_ROWS}), {most['blobs']} blobs "
          f"(bound {MAX_BLOBS}), {most['bytes']} payload bytes over {COMMITS} commits of {CLUSTERS} clusters")

    # Every kept version is the current or the previous one (root and the timestamp aside); every blob a kept
    # version lists is stored, and every stored blob is one a kept version lists.
    with writer.state.read() as tx:
        kept = kept_versions(tx)
        stored = all_blobs(tx)
    listed = set()
    for role, versions in kept.items():
        assert len(versions) <= (1 if role in ("timestamp", "root") else 2), (role, [v for v, _ in versions])
        for _version, data in versions:
            for info in (json.loads(data)["signed"].get("targets") or {}).values():
                listed.add(info["hashes"]["sha256"])
    assert stored == listed
    for hexdigest in stored:
        with writer.state.read() as tx:
            assert sha256_hex(tx.blob(hexdigest)) == hexdigest
    # The kept releases verify for fresh clients of a replica that has only the state.
    fresh = replica(backend, tmp_path / "fresh")
    for cluster in clusters[1 :: CLUSTERS // SAMPLE]:
        agent = client(directory, tmp_path / "fresh", fresh, cluster)
        got = agent.update()
        assert got is not None and agent.last_release == COMMITS, cluster
    assert all(trust.parse_release_path(repo.directed(c).path)[2] in stored for c in clusters)


def test_only_the_writer_collects_and_a_writer_that_lost_its_lease_removes_nothing(backend, tmp_path):
    directory = tmp_path / "trust"
    admin.init(directory, {"dev": (1, 1)}, dev=True)
    old, repo = writer_repo(backend, directory, "hub-a")
    clusters = [f"c{i}-dev" for i in range(4)]
    for commit in range(4):
        with repo.batch():
            repo.direct_many([(c, "dev") for c in clusters], files_bound.blob(commit, 0),
                             revision=f"{commit:040x}", release=lambda _c, n=commit: n + 1)
    orphan = files_bound.blob(99, 9)
    with old.write() as tx:  # what a writer's offer to CI leaves behind when that writer dies
        tx.put_blob(sha256_hex(orphan), orphan)
        tx.put_trust_file("1.snapshot.json", "snapshot", 1, b"{}")  # and a version a crash left
    with old.state.read() as tx:
        before = tx.trust_usage()

    assert replica(backend, tmp_path).collect_stored_garbage() == 0  # a serving replica never collects
    new_state = backend.open()
    old.state.release_lease(old.lease)  # taken over; the old writer does not know yet
    new = Writer(new_state, "hub-b", ttl=LEASE)
    assert new.try_acquire()
    with pytest.raises(Fenced):
        repo.collect_stored_garbage()
    with new_state.read() as tx:
        assert tx.trust_usage() == before

    taken = TrustRepository.open(directory, storage=TrustFiles(new_state, new))  # the new writer's full pass
    with new_state.read() as tx:
        assert tx.blob(sha256_hex(orphan)) is None
        assert tx.trust_file("1.snapshot.json") is None
        after = tx.trust_usage()
    assert after["blobs"][0] == before["blobs"][0] - 1 and after["trust_files"][0] < before["trust_files"][0]
    assert taken.collect_stored_garbage() == 0  # nothing left to collect
