"""Shared blobs in TUF mode: clusters built from the same inputs get one blob, stored and hashed once,
a director entry and a release target each, in one publishing batch; agents verify the streamed blob."""

from __future__ import annotations

from skerry.agent.trust import TufVerifier
from skerry.core import trust
from skerry.core.bundle import SHARED_CLUSTER, Bundle
from skerry.core.canonical import sha256_hex
from skerry.hub.bundles.store import HubStore
from skerry.hub.trust import admin
from skerry.hub.trust import keys as keyfiles
from skerry.hub.trust.repository import _SERIALIZER, TrustRepository
from tests.trust.fetchers import RepositoryFetcher

DEV = [f"d{i}-dev" for i in range(12)]
PROD = ["oslo-prod", "bergen-prod"]


def shared(value: str) -> Bundle:
    return Bundle(SHARED_CLUSTER, "a" * 40, "file:///fleet", ("apps/web",), "kustomize", "v5", (
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {"v": value}},))


def world(tmp_path):
    made = admin.init(tmp_path / "trust", {"dev": (1, 1), "prod": (3, 2)})
    repo = TrustRepository.open(tmp_path / "trust", release_keys=[("dev", made["release-dev"][0])])
    store = HubStore(director=repo, environment_of=lambda c: c.rsplit("-", 1)[1])
    repo.on_change(lambda role: trust.is_release_side(role) and store.retry_pending())
    store.declare([*DEV, *PROD])
    return made, repo, store


def test_one_blob_one_snapshot_and_an_entry_per_cluster_for_a_fleet_wide_release(tmp_path):
    _, repo, store = world(tmp_path)
    snapshot = repo.md["snapshot"].signed.version
    bundle = shared("one")
    released = store.publish_shared(DEV, bundle)
    assert sorted(released) == sorted(DEV)
    assert repo.md["snapshot"].signed.version == snapshot + 1  # one batch: one snapshot, one timestamp
    current = [store.current(c) for c in DEV]
    assert len({id(c.bundle) for c in current}) == 1 and len({id(c.shared) for c in current}) == 1
    hexdigest = sha256_hex(current[0].bundle)
    assert [p.name for p in repo.blobs_dir.iterdir()] == [f"{hexdigest}.json"]  # stored once
    for cluster in DEV:
        pointer = repo.directed(cluster)
        assert pointer.hashes == {"sha256": hexdigest}
        assert pointer.custom["render"] == "kustomize v5"  # provenance beside the bundle, not in it
        assert repo.release_target("dev", cluster, hexdigest).custom["cluster"] == cluster
    assert store.publish_shared(DEV, bundle) == []  # same content: nothing new, no new snapshot
    assert repo.md["snapshot"].signed.version == snapshot + 1


def test_clusters_whose_release_side_has_not_signed_wait_then_share_the_blob(tmp_path):
    made, repo, store = world(tmp_path)
    bundle = shared("prod")
    assert store.publish_shared(PROD, bundle) == []
    assert all(store.pending(c) is not None and "awaits signatures" in store.error(c).message for c in PROD)
    data = store.pending(PROD[0])[1]
    for cluster in PROD:  # CI signs each cluster's release (2 of 3 keys) in its bin
        md = repo.release_proposal("prod", cluster, data, bundle.revision)
        for ref in made["release-prod"][:2]:
            md.sign(keyfiles.load_signer(ref), append=True)
        repo.submit_release("release-prod", md.to_bytes(_SERIALIZER))
    assert all(store.current(c) is not None and store.current(c).bundle is data for c in PROD)


def test_an_agent_verifies_the_streamed_shared_blob_without_downloading_it(tmp_path):
    _, repo, store = world(tmp_path)
    store.publish_shared(DEV, shared("one"))
    fetched: list[str] = []
    agent = TufVerifier("d3-dev", "dev", repo.directory / "root.json", tmp_path / "agent",
                        lambda: RepositoryFetcher(repo, fetched))

    class Event:  # what the agent's stream hands over: the shared blob's bytes, reassembled
        bundle = store.current("d3-dev").bundle

    verified = agent.verify_message(Event)
    assert verified.bundle.cluster == "d3-dev" and verified.raw == Event.bundle
    assert not [p for p in fetched if p.startswith("targets/")]
    assert verified.metadata and b'"engine": "kustomize"' in verified.metadata  # provenance: the director's word
