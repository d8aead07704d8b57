"""The TUF metadata a watch event pushes: an agent's refresh after a release fetches nothing it was pushed.

A real trust repository and ``TufVerifier`` (stock python-tuf ``Updater``); the hub side is
``MetadataPush`` with the servicer's own encoding (``metadata_event``), decoded back as the agent's
stream assembler receives it. ``RepositoryFetcher`` records every fetch that still happens.
"""

from __future__ import annotations

import pytest

from skerry.api.v1 import bundle_pb2, hub_pb2
from skerry.core.canonical import sha256_digest
from skerry.core.errors import VerificationError
from skerry.hub.servicer import metadata_event
from skerry.hub.trust.push import MAX_PUSH_BYTES, MetadataPush
from tests.trust.test_tuf_client import CLUSTER, World


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def event(world: World, push: MetadataPush, data: bytes) -> bundle_pb2.SignedBundle:
    """The bundle event as the agent's stream hands it over: pushed files gathered into ``metadata``."""
    wires, root_version = push.files_for(CLUSTER)
    signed = bundle_pb2.SignedBundle(cluster=CLUSTER, bundle=data, digest=sha256_digest(data), root_version=root_version)
    for wire in wires:
        signed.metadata.append(hub_pb2.WatchBundlesResponse.FromString(wire).metadata)
    return signed


def test_a_refresh_after_a_release_fetches_nothing_the_hub_pushed(world):
    push = MetadataPush(world.repo, metadata_event)
    world.release()
    world.verifier.update()  # the first refresh trusts root, targets, director, release-prod
    data = world.release()
    world.fetched.clear()
    verified = world.verifier.verify_message(event(world, push, data))
    assert verified is not None and verified.raw == data
    assert world.fetched == []  # timestamp, snapshot, both bins, the root probe and the blob: none fetched


def test_without_a_push_the_same_refresh_makes_its_round_trips(world):
    world.release()
    world.verifier.update()
    data = world.release()
    world.fetched.clear()
    verified = world.verifier.verify_message(bundle_pb2.SignedBundle(cluster=CLUSTER, bundle=data,
                                                                     digest=sha256_digest(data)))
    assert verified is not None
    fetched = set(world.fetched)
    assert "metadata/timestamp.json" in fetched
    assert any(p.endswith(".snapshot.json") for p in fetched)
    assert any(".clusters-" in p for p in fetched) and any(".releases-prod-" in p for p in fetched)


def test_the_push_names_the_files_of_one_timestamp_and_the_newest_root(world):
    push = MetadataPush(world.repo, metadata_event)
    world.release()
    wires, root_version = push.files_for(CLUSTER)
    names = [hub_pb2.WatchBundlesResponse.FromString(w).metadata.path for w in wires]
    snapshot = world.repo.md["snapshot"].signed
    assert names[0] == "timestamp.json" and names[1] == f"{snapshot.version}.snapshot.json"
    for name in names[2:]:
        version, role = name.split(".", 1)
        assert snapshot.meta[role].version == int(version)  # the bins at the versions this snapshot lists
    assert root_version == world.repo.root.version
    world.release()  # a new publish: the push follows the new timestamp
    assert push.files_for(CLUSTER)[0][0] != wires[0]


def test_a_tampered_pushed_file_is_refused_like_a_fetched_one(world):
    push = MetadataPush(world.repo, metadata_event)
    world.release()
    world.verifier.update()
    data = world.release()
    signed = event(world, push, data)
    bin_file = next(f for f in signed.metadata if ".clusters-" in f.path)
    at = bin_file.data.index(b'"sig":"') + 7  # one hex digit of the signature, same length
    bin_file.data = bin_file.data[:at] + (b"0" if bin_file.data[at:at + 1] != b"0" else b"1") + bin_file.data[at + 1:]
    with pytest.raises(VerificationError) as e:
        world.verifier.verify_message(signed)
    assert e.value.reason  # named (the snapshot pins each bin's hash)


def test_a_probe_for_a_root_above_the_pushed_root_version_is_not_fetched_but_a_lower_claim_is_ignored(world):
    push = MetadataPush(world.repo, metadata_event)
    world.release()
    world.verifier.update()
    data = world.release()
    signed = event(world, push, data)
    signed.root_version = 0  # no claim: the agent probes the hub for the next root as before
    world.fetched.clear()
    world.verifier.verify_message(signed)
    assert any(p.endswith(".root.json") for p in world.fetched)


def test_a_push_over_its_cap_is_left_out(world, monkeypatch):
    push = MetadataPush(world.repo, metadata_event)
    world.release()
    monkeypatch.setattr("skerry.hub.trust.push.MAX_PUSH_BYTES", 10)
    assert push.files_for(CLUSTER)[0] == ()
    monkeypatch.setattr("skerry.hub.trust.push.MAX_PUSH_BYTES", MAX_PUSH_BYTES)
    assert push.files_for(CLUSTER)[0] != ()
