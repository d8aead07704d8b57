"""The hub's trust repository is bounded by the fleet, not by its history.

1,000 clusters × 50 commits, published as the hub publishes them but without
rendering: each commit changes the two input sets the fleet is built from, so
each half of the fleet gets one new shared blob (stored once, ``direct_many``,
released by the hub's own dev key), all in one batch. After every commit the
repository's files and bytes must stay within the bounds below; before garbage
collection the same run left 50 times as many files (every role version, every
target file, every blob).
"""

from __future__ import annotations

import json
import os

from skerry.core import trust
from skerry.core.bundle import SHARED_CLUSTER, Bundle
from skerry.hub.trust import admin
from skerry.hub.trust.releasing import MAX_RELEASES_PER_CLUSTER
from skerry.hub.trust.repository import TrustRepository

CLUSTERS = 1000
COMMITS = 50
GROUPS = 2  # input sets: clusters built from the same one share a blob
BINS = 16 ** trust.BIN_HEX // trust.BIN_WIDTH
# Versioned roles: targets, director and its bins, release-dev and its bins, snapshot.
ROLES = 1 + (1 + BINS) + (1 + BINS) + 1
# The current and the previous version of each (a client on the previous snapshot finds every file it
# names), plus root v1 (every root version is kept) and timestamp.json.
MAX_METADATA_FILES = 2 * ROLES + 2
# Per cluster: the director names one release, the release side keeps it and the newest
# (MAX_RELEASES_PER_CLUSTER); the previous version of their bins may list one more.
MAX_TARGET_FILES = (MAX_RELEASES_PER_CLUSTER + 1) * CLUSTERS
# Blobs: one per target file's content; each group's clusters share them.
MAX_BLOBS = (MAX_RELEASES_PER_CLUSTER + 1) * GROUPS
# Bytes: a target entry is under 512 bytes of JSON (a 100-byte path, a SHA-256 hex, length, custom);
# per cluster at most 2 sides × 2 targets × 2 kept versions of the roles listing them; plus what does not
# grow with the fleet (keys, 2 × 64 bin delegations, signatures; measured 0.3 MiB) and the blobs.
ENTRY_BYTES = 512
FIXED_BYTES = 1 << 20


def blob(commit: int, group: int) -> bytes:
    return Bundle(SHARED_CLUSTER, f"{commit:040x}", "file:///fleet", (f"apps/{group}",), "kustomize", "v5", (
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"},
         "data": {"commit": str(commit)}},)).encode()


def usage(repo: TrustRepository) -> dict[str, int]:
    """Files per kind and the bytes they hold (a hard link's bytes are its blob's, counted once)."""
    out = {"metadata": 0, "targets": 0, "blobs": 0, "bytes": 0}
    for kind, base in (("metadata", repo.metadata_dir), ("targets", repo.targets_dir), ("blobs", repo.blobs_dir)):
        for directory, _dirs, files in os.walk(base):
            for name in files:
                out[kind] += 1
                if kind != "targets":
                    out["bytes"] += os.stat(os.path.join(directory, name)).st_size
    return out


def test_a_thousand_clusters_times_fifty_commits_stay_within_the_bound(fast_dir):
    admin.init(fast_dir / "trust", {"dev": (1, 1)}, dev=True)
    repo = TrustRepository.open(fast_dir / "trust")
    clusters = [f"c{i:04d}-dev" for i in range(CLUSTERS)]
    max_bytes = CLUSTERS * 2 * MAX_RELEASES_PER_CLUSTER * 2 * ENTRY_BYTES + FIXED_BYTES
    for commit in range(COMMITS):
        with repo.batch():
            for group in range(GROUPS):
                repo.direct_many([(c, "dev") for c in clusters[group::GROUPS]], blob(commit, group),
                                 revision=f"{commit:040x}", release=lambda _c, n=commit: n + 1)
        used = usage(repo)
        assert used["metadata"] <= MAX_METADATA_FILES, (commit, used)
        assert used["targets"] <= MAX_TARGET_FILES, (commit, used)
        assert used["blobs"] <= MAX_BLOBS, (commit, used)
        assert used["bytes"] <= max_bytes + MAX_BLOBS * len(blob(commit, 0)), (commit, used)
    assert all(repo.directed(c).custom["release"] == COMMITS for c in clusters)
    # nothing a kept role version names lacks its file, and every file left is one a kept version names
    named = set()
    for name in os.listdir(repo.metadata_dir):
        doc = json.loads((repo.metadata_dir / name).read_bytes())
        for path, info in (doc["signed"].get("targets") or {}).items():
            named.add(trust.consistent_name(path, info["hashes"]["sha256"]))
    on_disk = {os.path.relpath(os.path.join(d, f), repo.targets_dir) for d, _, fs in os.walk(repo.targets_dir) for f in fs}
    assert named == on_disk
    linked = {name.split("/")[-1].split(".")[0] for name in on_disk}
    assert {p.name.removesuffix(".json") for p in repo.blobs_dir.iterdir()} == linked
