"""The hub's repository is standard TUF: a stock python-tuf client, default configuration, reads it.

The repository directory is served as static files (``http.server`` on loopback) to an
``ngclient.Updater`` with its default ``UpdaterConfig`` and fetcher: consistent snapshots on,
targets fetched under their hash-prefixed names. Every target any role names has a file there;
two clusters built from the same inputs share one stored blob.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading

import pytest
from tuf.api.metadata import Metadata, Targets
from tuf.ngclient import Updater

from skerry.core import trust
from skerry.core.bundle import Bundle
from skerry.hub.trust import admin
from skerry.hub.trust.repository import TrustRepository


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
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield repo, f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()


def stock_updater(base: str, tmp_path, name: str, root: bytes) -> Updater:
    (tmp_path / name).mkdir()
    return Updater(metadata_dir=str(tmp_path / name), metadata_base_url=f"{base}/metadata/",
                   target_dir=str(tmp_path / name), target_base_url=f"{base}/targets/", bootstrap=root)


def test_a_stock_updater_with_default_config_downloads_a_clusters_bundle_from_the_static_repository(served):
    repo, base, tmp_path = served
    data = blob("one")
    directed = repo.direct_many([("oslo-prod", "prod"), ("bergen-prod", "prod")], data, revision="a" * 40,
                                release=lambda c: 7)
    assert all(d is not None for d in directed.values())
    updater = stock_updater(base, tmp_path, "client", (repo.directory / "root.json").read_bytes())
    updater.refresh()
    pointer = updater.get_targetinfo(trust.director_path("oslo-prod"))
    released = updater.get_targetinfo(pointer.custom["image"])
    assert (released.length, released.hashes) == (pointer.length, pointer.hashes) == (len(data), {
        "sha256": trust.parse_release_path(pointer.custom["image"])[2]})
    assert released.custom == {"cluster": "oslo-prod", "environment": "prod", "revision": "a" * 40}
    for info in (released, pointer):  # both names have the bundle behind them (hash-prefixed)
        path = updater.download_target(info, str(tmp_path / "client" / f"{len(info.path)}.json"))
        assert open(path, "rb").read() == data
    # the two clusters' files are one blob on disk
    names = [repo.targets_dir / trust.consistent_name(p, released.hashes["sha256"]) for p in (
        pointer.custom["image"], trust.release_path("prod", "bergen-prod", released.hashes["sha256"]))]
    assert len({os.stat(n).st_ino for n in names}) == 1


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
