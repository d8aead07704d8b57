"""A blob shared by more targets than the file system allows links to one file still gives every target a file.

Each target file of the trust directory is a hard link to its blob. ext4 allows 65,000 links per
file, and a bundle shared by a fleet of 100,000 clusters has two targets per cluster
(bench/fleet_ha.py found the whole fleet-wide release refused with ``Too many links``). The test
runs on the real file system of the temporary directory: it brings one blob to the file system's
own limit, then directs clusters to it.
"""

from __future__ import annotations

import errno
import os

import pytest

from skerry.core import trust
from skerry.core.bundle import SHARED_CLUSTER, Bundle
from skerry.core.canonical import sha256_hex
from skerry.hub.trust import admin
from skerry.hub.trust.repository import TrustRepository

# Look for a limit up to here (ext4: 65,000); a file system without one below it cannot show the fault.
MAX_PROBE = 70_000
CLUSTERS = 5


def fill_links(blob: os.PathLike, directory: os.PathLike) -> int | None:
    """Hard-link ``blob`` until the file system refuses; how many links it took (None: no limit found)."""
    os.makedirs(directory)
    for i in range(MAX_PROBE):
        try:
            os.link(blob, os.path.join(directory, str(i)))
        except OSError as e:
            if e.errno == errno.EMLINK:
                return i
            raise
    return None


def test_targets_beyond_the_link_limit_get_their_own_copy(tmp_path):
    admin.init(tmp_path / "trust", {"dev": (1, 1)}, dev=True)
    repo = TrustRepository.open(tmp_path / "trust")
    data = Bundle(SHARED_CLUSTER, "a" * 40, "file:///fleet", ("apps",), "kustomize", "v5", (
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}},)).encode()
    hexdigest = sha256_hex(data)
    blob = repo.blobs_dir / f"{hexdigest}.json"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    if fill_links(blob, tmp_path / "fill") is None:
        pytest.skip(f"this file system allows more than {MAX_PROBE} links per file")
    for name in os.listdir(tmp_path / "fill")[:3]:  # room for three links: the rest overflows
        os.unlink(tmp_path / "fill" / name)
    clusters = [f"c{i}-dev" for i in range(CLUSTERS)]

    with repo.batch():
        repo.direct_many([(c, "dev") for c in clusters], data, revision="a" * 40, release=lambda _c: 1)

    for cluster in clusters:
        path = repo.directed(cluster).path
        target = repo.targets_dir / trust.consistent_name(path, hexdigest)
        assert target.read_bytes() == data
