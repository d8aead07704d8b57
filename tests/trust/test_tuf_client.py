"""The agent's TUF client on its own: what a refresh verifies, skips, persists and reports.

A real trust repository (``skerry keys init`` layout, hub online keys) and a
real ``TufVerifier`` (stock python-tuf ``Updater``). ``RepositoryFetcher``
serves the repository's own files in-process — the bytes the hub's
``TrustService.Fetch`` serves; the gRPC transport is covered end to end in
tests/e2e/test_trust_attacks.py — and records what the agent fetched. An
``update`` gets the digest the hub's stream event names, as the agent's does.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from securesystemslib.signer import SSlibKey
from tuf.api import exceptions as tuf_errors

from skerry.agent.trust import TufVerifier, classify
from skerry.agent.tuf_fetch import InMemoryFetcher
from skerry.core import trust
from skerry.core.bundle import Bundle
from skerry.core.canonical import sha256_digest, sha256_hex
from skerry.core.errors import VerificationError
from skerry.hub.trust import admin
from skerry.hub.trust import keys as keyfiles
from skerry.hub.trust.repository import _SERIALIZER, TrustRepository
from tests.trust.fetchers import RepositoryFetcher

CLUSTER = "oslo-prod"


class World:
    def __init__(self, tmp_path, expiry=None):
        self.dir = tmp_path / "trust"
        self.made = admin.init(self.dir, {"prod": (3, 2)}, expiry=expiry)
        self.repo = TrustRepository.open(self.dir, expiry=expiry)
        self.fetched: list[str] = []
        self.verifier = TufVerifier(CLUSTER, "prod", self.dir / "root.json", tmp_path / "agent",
                                    lambda: RepositoryFetcher(self.repo, self.fetched))
        self.n = 0

    def release(self, cluster: str = CLUSTER) -> bytes:
        self.n += 1
        objs = ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "namespace": "n"},
                 "data": {"v": str(self.n)}},)
        data = Bundle(cluster, f"{self.n:040x}", "file:///f", ("o",), "kustomize", "v5", objs).encode()
        md = self.repo.release_proposal("prod", cluster, data, f"{self.n:040x}")
        for ref in self.made["release-prod"][:2]:
            md.sign(keyfiles.load_signer(ref), append=True)
        self.repo.submit_release("release-prod", md.to_bytes(_SERIALIZER))
        self.repo.direct(cluster, "prod", data, revision=f"{self.n:040x}", release=100 + self.n)
        return data

    def update(self, data: bytes, verifier: TufVerifier | None = None):
        """A refresh on the hub's event naming ``data``'s digest."""
        return (verifier or self.verifier).update(digest=sha256_digest(data))


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


@pytest.fixture
def verifications(monkeypatch):
    counted = {"n": 0}
    original = SSlibKey.verify_signature

    def counting(self, signature, data):
        counted["n"] += 1
        return original(self, signature, data)

    monkeypatch.setattr(SSlibKey, "verify_signature", counting)
    return counted


def test_snapshot_and_timestamp_pin_each_role_file_by_length_and_sha256(world):
    world.release()
    snapshot = world.repo.md["snapshot"].signed
    for name, meta in snapshot.meta.items():
        raw = world.repo.fetch(f"metadata/{meta.version}.{name}")
        meta.verify_length_and_hashes(raw)
        assert meta.length and meta.hashes
    ts = world.repo.md["timestamp"].signed.snapshot_meta
    ts.verify_length_and_hashes(world.repo.fetch(f"metadata/{ts.version}.snapshot.json"))


def test_stale_cached_roles_are_dropped_by_hash_before_any_signature_is_checked(world, verifications):
    assert world.update(world.release()) is not None
    data = world.release()
    verifications["n"] = 0
    verified = world.update(data)
    assert verified is not None and verified.release == 102
    # root 1, timestamp 2 (cached + new), snapshot 2 (cached + new), targets 1, director 1,
    # its bin 1, release-prod 3 (unchanged bin delegations, signed by all 3 keys at init) and the
    # release bin 2 (new only: the cached, stale ones fail their snapshot hash first)
    assert verifications["n"] == 13


def test_an_idle_refresh_fetches_only_the_timestamp_and_the_next_root_and_writes_nothing(world, verifications):
    world.update(world.release())
    state = world.verifier.state_dir / "trust-state.json"
    before = state.stat().st_mtime_ns
    world.fetched.clear()
    verifications["n"] = 0
    assert world.verifier.update() is None
    assert world.fetched == ["metadata/timestamp.json", "metadata/2.root.json"]
    assert verifications["n"] == 0
    assert state.stat().st_mtime_ns == before


def test_a_new_timestamp_with_the_same_bundle_runs_a_full_refresh_then_idles_on_it(world):
    from skerry.core.canonical import sha256_hex

    world.update(world.release())
    world.repo._new_timestamp()  # what the hub's re-signing at half-life does
    new = sha256_hex(world.repo.fetch("metadata/timestamp.json"))
    world.fetched.clear()
    assert world.verifier.update() is None
    # fetched once: the idle check's copy is what the Updater then verifies (no second round trip)
    assert world.fetched.count("metadata/timestamp.json") == 1
    state = json.loads((world.verifier.state_dir / "trust-state.json").read_bytes())
    assert state["timestamp"] == new  # verified in full and recorded
    world.fetched.clear()
    assert world.verifier.update() is None
    assert world.fetched == ["metadata/timestamp.json", "metadata/2.root.json"]


def test_a_root_rotation_is_followed_even_when_the_timestamp_did_not_change(world):
    world.update(world.release())
    admin.rotate_root(world.dir, [keyfiles.load_signer(world.made["root"][0])],
                      [keyfiles.generate_key(world.dir / "offline" / "root-2.key")])
    world.repo.load()  # the hub has not re-published its timestamp
    assert world.verifier.update() is None
    root = json.loads((world.verifier.metadata_dir / "root.json").read_bytes())
    assert root["signed"]["version"] == 2


def test_the_valid_until_horizon_is_the_nearest_expiry_of_the_trusted_roles(world):
    data = world.release()
    world.update(data)
    path = trust.release_path("prod", CLUSTER, sha256_hex(data))
    roles = ["root", "timestamp", "snapshot", "targets", trust.DIRECTOR_ROLE, trust.director_bin(path),
             trust.release_role("prod"), trust.release_bin("prod", path)]
    assert world.verifier.valid_until == min(world.repo.md[r].signed.expires for r in roles)


def test_an_idle_agent_still_freezes_when_its_trusted_metadata_expires(tmp_path):
    w = World(tmp_path, expiry={"timestamp": dt.timedelta(seconds=3)})
    assert w.update(w.release()) is not None
    assert w.verifier.update() is None  # idle, fresh
    time.sleep(max(0.0, (w.verifier.valid_until - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
    with pytest.raises(VerificationError) as err:
        w.verifier.update()  # the same (now expired) timestamp: no shortcut past the horizon
    assert err.value.reason == "Freeze"


def test_the_bundle_is_verified_in_memory_and_not_kept_in_the_tuf_target_dir(world):
    data = world.release()
    verified = world.update(data)
    assert verified.raw == data
    assert not list(world.verifier.targets_dir.iterdir())


def test_a_fetch_longer_than_its_cap_is_cut_off_as_endless_data():
    class Endless(InMemoryFetcher):
        def _fetch(self, url):
            while True:
                yield b"x" * 4096

    with pytest.raises(tuf_errors.DownloadLengthMismatchError) as err:
        Endless().download_bytes("skerry:/metadata/timestamp.json", trust.MAX_TIMESTAMP_BYTES)
    assert classify(err.value, "metadata/timestamp.json")[0] == "EndlessData"


def test_clusters_whose_bundles_share_a_director_bin_each_get_only_their_own_bundle(tmp_path):
    w = World(tmp_path)
    released: dict[str, tuple[str, bytes]] = {}  # director bin -> the first cluster and bundle in it
    for i in range(200):
        cluster = f"c{i}-prod"
        data = w.release(cluster)
        path = trust.release_path("prod", cluster, sha256_hex(data))
        mate = released.setdefault(trust.director_bin(path), (cluster, data))
        if mate[0] != cluster:
            break
    pair = {mate[0]: mate[1], cluster: data}
    director = w.repo.md[trust.DIRECTOR_ROLE].signed
    assert director.delegations.roles[trust.director_bin(path)].path_hash_prefixes == trust.bin_prefixes(
        trust.bin_of(path))  # standard path_hash_prefixes
    agents = {c: TufVerifier(c, "prod", w.dir / "root.json", tmp_path / f"agent-{c}",
                             lambda: RepositoryFetcher(w.repo, w.fetched)) for c in pair}
    for c, bundle in pair.items():
        verified = w.update(bundle, agents[c])
        assert verified.bundle.cluster == c and verified.raw == bundle
    w.repo._new_timestamp()
    w.fetched.clear()
    assert agents[mate[0]].update() is None  # nothing new for it: it keeps its release, downloads nothing
    assert not [p for p in w.fetched if p.startswith("targets/")]


def test_without_an_event_the_agent_finds_its_bundle_by_walking_the_director_bins(world):
    first = world.release()
    assert world.verifier.update().raw == first  # no event, no state: every bin is walked
    second = world.release()
    world.fetched.clear()
    assert world.verifier.update().raw == second  # the path applied last is no longer directed: walked again
    assert world.verifier.update() is None
    world.fetched.clear()
    world.repo._new_timestamp()
    assert world.verifier.update() is None  # still directed: one bin a side, no walk
    assert len([p for p in world.fetched if "clusters-" in p]) <= 1


def test_an_event_naming_a_bundle_the_director_does_not_list_changes_nothing(world):
    data = world.release()
    world.update(data)
    other = Bundle(CLUSTER, "b" * 40, "file:///f", ("o",), "kustomize", "v5", ()).encode()
    world.repo._new_timestamp()
    assert world.update(other) is None  # the director still names the applied bundle: nothing to do


def test_after_a_refused_refresh_the_old_timestamp_is_not_taken_as_unchanged(world):
    world.update(world.release())
    good = world.repo.fetch("metadata/timestamp.json")
    world.repo._new_timestamp()  # a newer timestamp python-tuf verifies and persists ...
    newer = world.repo.fetch("metadata/timestamp.json")
    (world.verifier.metadata_dir / "timestamp.json").write_bytes(newer)  # ... before a later step is refused
    (world.dir / "repository" / "metadata" / "timestamp.json").write_bytes(good)  # the mirror replays the old one
    with pytest.raises(VerificationError) as err:
        world.verifier.update()
    assert err.value.reason == "Rollback"


def test_a_forged_timestamp_after_the_idle_check_is_named_bad_signature(world):
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata

    world.update(world.release())
    path = world.dir / "repository" / "metadata" / "timestamp.json"
    ts = Metadata.from_bytes(path.read_bytes())
    ts.signed.version += 1
    ts.signatures.clear()
    ts.sign(CryptoSigner.generate_ed25519())
    path.write_bytes(ts.to_bytes(_SERIALIZER))
    with pytest.raises(VerificationError) as err:
        world.verifier.update()
    assert err.value.reason == "BadSignature"  # not the root probe's path: the reused timestamp is named
