"""The hub's repository is standard TUF: a stock python-tuf client, default configuration, reads it.

The repository directory is served as static files (``http.server`` on loopback) to an
``ngclient.Updater`` with its default ``UpdaterConfig`` and fetcher: consistent snapshots on,
targets fetched under their hash-prefixed names. The director and the release side name the same
target (path, length, hashes), as Uptane's director and image repositories do; every target any
role names has a file there; two clusters built from the same inputs share one stored blob.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import pathlib
import threading

import pytest
from tuf.api.metadata import Metadata, Targets
from tuf.ngclient import Updater

from skerry.core import trust
from skerry.core.bundle import Bundle
from skerry.core.canonical import sha256_hex
from skerry.hub.trust import admin
from skerry.hub.trust.repository import TrustRepository

# socketserver polls for shutdown() this often (0.5 s by default: half a second of every teardown)
SHUTDOWN_POLL_SECONDS = 0.05


def blob(value: str) -> bytes:
    return Bundle("", "a" * 40, "file:///fleet", ("apps/web",), "kustomize", "v", (
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {"v": value}},
    )).encode()


@pytest.fixture()
def served(tmp_path):
    admin.init(tmp_path / "trust", {"dev": (1, 1), "prod": (3, 2)}, dev=True)
    repo = TrustRepository.open(tmp_path / "trust")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "trust" / "repository"))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), daemon=True).start()
    try:
        yield repo, f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()  # the listening socket


def stock_updater(base: str, tmp_path, name: str, root: bytes) -> Updater:
    (tmp_path / name).mkdir()
    return Updater(metadata_dir=str(tmp_path / name), metadata_base_url=f"{base}/metadata/",
                   target_dir=str(tmp_path / name), target_base_url=f"{base}/targets/", bootstrap=root)


def same_target(repo: TrustRepository, path: str) -> tuple:
    """Both sides' entry at ``path``, as (path, length, hashes) each: the director's bin and the release bin."""
    env = trust.parse_release_path(path)[0]
    directed = repo.md[trust.director_bin(path)].signed.targets[path]
    released = repo.md[repo.release_holder(env, path)].signed.targets[path]
    return (directed.path, directed.length, directed.hashes), (released.path, released.length, released.hashes)


def test_a_stock_updater_with_default_config_downloads_a_clusters_bundle_from_the_static_repository(served):
    repo, base, tmp_path = served
    data = blob("one")
    directed = repo.direct_many([("oslo-prod", "prod"), ("bergen-prod", "prod")], data, revision="a" * 40,
                                release=lambda c: 7)
    path = directed["oslo-prod"].path
    assert path == trust.release_path("prod", "oslo-prod", sha256_hex(data))
    updater = stock_updater(base, tmp_path, "client", (repo.directory / "root.json").read_bytes())
    updater.refresh()
    info = updater.get_targetinfo(path)  # the first role in pre-order that lists it: the director's bin
    assert (info.length, info.hashes, info.custom["release"]) == (len(data), {"sha256": sha256_hex(data)}, 7)
    downloaded = updater.download_target(info, str(tmp_path / "client" / "bundle.json"))
    assert pathlib.Path(downloaded).read_bytes() == data
    # director and release side name the same target: path, length and hashes
    director_side, release_side = same_target(repo, path)
    assert director_side == release_side == (path, len(data), {"sha256": sha256_hex(data)})
    assert repo.release_target("prod", "oslo-prod", sha256_hex(data)).custom == {
        "cluster": "oslo-prod", "environment": "prod", "revision": "a" * 40}
    # the two clusters' files are one blob on disk
    names = [repo.targets_dir / trust.consistent_name(d.path, sha256_hex(data)) for d in directed.values()]
    assert len({os.stat(n).st_ino for n in names}) == 1


def test_the_director_lists_one_target_per_cluster_the_release_side_also_lists(served):
    repo, _, _ = served
    for i, value in enumerate(("one", "two", "three")):
        repo.direct_many([(f"c{n}-dev", "dev") for n in range(20)], blob(value), revision="a" * 40,
                         release=lambda c, i=i: 10 + i)
    listed = [(path, role) for role, md in repo.md.items() if trust.is_director_bin(role) for path in md.signed.targets]
    assert sorted(trust.parse_release_path(p)[1] for p, _ in listed) == sorted(f"c{n}-dev" for n in range(20))
    for path, role in listed:
        assert role == trust.director_bin(path)
        director_side, release_side = same_target(repo, path)
        assert director_side == release_side
        assert path == trust.release_path("dev", trust.parse_release_path(path)[1], sha256_hex(blob("three")))


def test_no_target_of_any_role_lacks_a_file_behind_it(served):
    repo, _, _ = served
    for i, value in enumerate(("one", "two", "three")):
        repo.direct_many([(f"c{n}-dev", "dev") for n in range(20)], blob(value), revision="a" * 40,
                         release=lambda c, i=i: 10 + i)
    roles = 0
    for name in os.listdir(repo.metadata_dir):
        doc = json.loads((repo.metadata_dir / name).read_bytes())
        if doc["signed"]["_type"] != "targets":
            continue
        roles += 1
        for path, info in Metadata[Targets].from_dict(doc).signed.targets.items():
            assert (repo.targets_dir / trust.consistent_name(path, info.hashes["sha256"])).exists(), (name, path)
    assert roles > 3
