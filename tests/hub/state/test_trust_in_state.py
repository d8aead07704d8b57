"""The TUF repository lives in the hub state: any process serves it, only the writer's fenced commit publishes it."""

from __future__ import annotations

import dataclasses
import time

import pytest

from skerry.agent.trust import TufVerifier
from skerry.core.bundle import SHARED_CLUSTER, Bundle
from skerry.core.canonical import sha256_hex
from skerry.hub.bundles.store import BUNDLE_RECORD, HubStore
from skerry.hub.replica import Follower
from skerry.hub.state import Fenced
from skerry.hub.state.feed import ChangeFeed
from skerry.hub.state.trust_files import CHANGE_KIND, TrustFiles
from skerry.hub.trust import admin
from skerry.hub.trust.keys import load_signer
from skerry.hub.trust.repository import _SERIALIZER, TrustRepository
from skerry.hub.writer import Releases, Writer
from tests.trust.fetchers import RepositoryFetcher

CLUSTER = "oslo-prod"


def bundle(revision: str) -> Bundle:
    return Bundle(cluster=CLUSTER, revision=revision, source_url="/srv/fleet", paths=("overlays/prod",),
                  engine="kustomize", engine_version="v5.5.0",
                  objects=({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                            "data": {"n": revision}},))


class Hub:
    """One hub process's publishing half: its own connections, writer, repository (from the state) and store."""

    def __init__(self, backend, dev_trust, holder: str):
        self.state = backend.open()
        self.writer = Writer(self.state, holder)
        self.files = TrustFiles(self.state, self.writer)
        self.writer.try_acquire()
        self.repo = TrustRepository.open(dev_trust.dir, release_keys=dev_trust.release_keys, storage=self.files)
        self.pause = 0.0
        self.store = HubStore(self.repo, environment_of=self._environment, releases=Releases(self.writer, self.files))

    def _environment(self, cluster: str) -> str:
        time.sleep(self.pause)
        return "prod"


def replica(backend, tmp_path) -> TrustRepository:
    """A serving replica: no trust directory, no keys, only the state."""
    return TrustRepository(tmp_path / "no-trust-dir", storage=TrustFiles(backend.open()), online={})


def agent(dev_trust, tmp_path, repo: TrustRepository) -> TufVerifier:
    return TufVerifier(CLUSTER, "prod", dev_trust.root, tmp_path / "agent", lambda: RepositoryFetcher(repo, []))


def test_a_replica_without_a_trust_directory_serves_what_the_writer_published(backend, dev_trust, tmp_path):
    hub = Hub(backend, dev_trust, "hub-a")
    first = hub.store.publish(CLUSTER, bundle("c1"))
    served = replica(backend, tmp_path)
    feed = ChangeFeed(served._storage.state)
    client = agent(dev_trust, tmp_path, served)
    got = client.update()
    assert got.digest == first.digest and client.last_release == first.release
    assert served.fetch("metadata/timestamp.json") == hub.repo.fetch("metadata/timestamp.json")

    second = hub.store.publish(CLUSTER, bundle("c2"))
    assert any(c.kind == CHANGE_KIND for c in feed.poll())  # the replica learns of it from the change log
    assert served.load()
    assert client.update().digest == second.digest and client.last_release == second.release


def test_a_writer_paused_past_its_lease_signs_but_commits_nothing_and_forgets_it(backend, dev_trust, tmp_path):
    old = Hub(backend, dev_trust, "hub-a")
    first = old.store.publish(CLUSTER, bundle("c1"))
    with old.state.read() as tx:
        before = tx.trust_newest()
    old.writer.ttl = 0.3
    old.writer.renew()
    old.pause = 0.6  # inside the release's transaction, after its first fence check: the lease runs out
    with pytest.raises(Fenced):
        old.store.publish_shared([CLUSTER], dataclasses.replace(bundle("c2"), cluster=SHARED_CLUSTER))
    assert not old.writer.is_writer
    with old.state.read() as tx:
        assert tx.trust_newest() == before  # none of the files it signed
        assert tx.record(BUNDLE_RECORD, CLUSTER)["release"] == first.release
        assert tx.last_release(CLUSTER) == first.release
    assert old.repo.fetch("metadata/timestamp.json") == before["timestamp"][1]  # it forgot what it signed
    assert old.store.current(CLUSTER) == first

    new = Hub(backend, dev_trust, "hub-b")
    with new.state.read() as tx:
        new.store.restore(tx.records(BUNDLE_RECORD))
    second = new.store.publish(CLUSTER, bundle("c2"))
    assert second.release == first.release + 1
    client = agent(dev_trust, tmp_path, replica(backend, tmp_path))
    assert client.update().digest == second.digest


def test_release_signatures_below_threshold_outlive_the_process_that_collected_them(backend, tmp_path):
    made = admin.init(tmp_path / "trust", {"prod": (2, 2)})
    keys = [load_signer(p) for p in sorted(made["release-prod"])]

    class TwoKeys:
        dir, release_keys = tmp_path / "trust", ()

    first = Hub(backend, TwoKeys, "hub-a")
    data = bundle("c1").encode()
    role = first.repo.proposal_role("prod", CLUSTER, data)
    md = first.repo.release_proposal("prod", CLUSTER, data, "c1")
    md.sign(keys[0])
    assert not first.repo.submit_release(role, md.to_bytes(_SERIALIZER)).published
    first.writer.release()
    first.state.close()

    second = Hub(backend, TwoKeys, "hub-b")  # another process: it sees the collected signature
    assert len(second.repo.pending(role).signatures) == 1
    md.signatures.clear()
    md.sign(keys[1])
    result = second.repo.submit_release(role, md.to_bytes(_SERIALIZER))
    assert result.published and result.signatures == 2
    assert second.repo.pending(role) is None
    served = replica(backend, tmp_path)
    assert served.release_target("prod", CLUSTER, sha256_hex(data)) is not None


async def test_signatures_a_replica_collects_up_to_the_threshold_are_published_by_the_writer(backend, tmp_path):
    made = admin.init(tmp_path / "trust", {"prod": (2, 2)})
    keys = [load_signer(p) for p in sorted(made["release-prod"])]

    class TwoKeys:
        dir, release_keys = tmp_path / "trust", ()

    writer = Hub(backend, TwoKeys, "hub-a")
    follower = Follower(writer.state, writer.store, writer.repo, writer=writer.writer)
    feed = ChangeFeed(writer.state)
    served = replica(backend, tmp_path)  # stores signatures; may not publish
    data = bundle("c1").encode()
    role = writer.repo.proposal_role("prod", CLUSTER, data)
    for key in keys:
        md = writer.repo.release_proposal("prod", CLUSTER, data, "c1")
        md.sign(key)
        if key is keys[0]:
            assert not served.submit_release(role, md.to_bytes(_SERIALIZER)).published
        else:
            with pytest.raises(Fenced):  # the threshold is reached on a replica: it is not the writer
                served.submit_release(role, md.to_bytes(_SERIALIZER))
    assert len(served.pending(role).signatures) == 2  # kept, for the writer
    assert writer.repo.release_target("prod", CLUSTER, sha256_hex(data)) is None
    await follower.apply(feed.poll())
    assert writer.repo.release_target("prod", CLUSTER, sha256_hex(data)) is not None
    assert writer.repo.pending(role) is None
    assert served.load() and served.release_target("prod", CLUSTER, sha256_hex(data)) is not None
