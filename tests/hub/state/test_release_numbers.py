"""Release numbers people read (r1, r2...) on a hub state whose counters sit above unix milliseconds.

The hub signs the number beside the counter in the director's target; the agent shows the number and
keeps comparing the counter, so rollback protection is what it was.
"""

from __future__ import annotations

import json
import time

import pytest

from skerry.agent.trust import TufVerifier
from skerry.core.bundle import Bundle
from skerry.core.errors import VerificationError
from skerry.hub.bundles.store import BUNDLE_RECORD, HubStore
from skerry.hub.state.trust_files import TrustFiles
from skerry.hub.trust.repository import TrustRepository
from skerry.hub.writer import Releases, Writer
from tests.trust.fetchers import RepositoryFetcher

OSLO, BERGEN = "oslo-numbers", "bergen-numbers"


def bundle(cluster: str, revision: str) -> Bundle:
    return Bundle(cluster=cluster, revision=revision, source_url="/srv/fleet", paths=("overlays/prod",),
                  engine="kustomize", engine_version="v5.5.0",
                  objects=({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                            "data": {"n": revision}},))


class Hub:
    """One hub process's publishing half on the state: writer, trust repository, store."""

    def __init__(self, backend, dev_trust, holder: str = "hub-a"):
        self.state = backend.open()
        self.writer = Writer(self.state, holder)
        self.files = TrustFiles(self.state, self.writer)
        assert self.writer.try_acquire()
        self.repo = TrustRepository.open(dev_trust.dir, release_keys=dev_trust.release_keys, storage=self.files)
        self.store = HubStore(self.repo, environment_of=lambda _c: "prod",
                              releases=Releases(self.writer, self.files))
        with self.state.read() as tx:
            self.store.restore(tx.records(BUNDLE_RECORD), tx.blob)

    def floor(self) -> int:
        with self.state.read() as tx:
            return tx.release_floor()


def agent(dev_trust, tmp_path, repo: TrustRepository, cluster: str = OSLO) -> TufVerifier:
    return TufVerifier(cluster, "prod", dev_trust.root, tmp_path / f"agent-{cluster}",
                       lambda: RepositoryFetcher(repo, []))


def test_a_fresh_states_releases_read_r1_r2_per_cluster_and_the_agent_reads_the_same(backend, dev_trust, tmp_path):
    hub = Hub(backend, dev_trust)
    first = hub.store.publish(OSLO, bundle(OSLO, "c1"))
    second = hub.store.publish(OSLO, bundle(OSLO, "c2"))
    other = hub.store.publish(BERGEN, bundle(BERGEN, "c1"))
    assert [first.label, second.label, other.label] == ["r1", "r2", "r1"]
    # the counters behind them stay above every unix-millisecond counter an older hub handed out
    assert first.release > int(time.time() * 1000) - 3_600_000 and second.release == first.release + 1

    client = agent(dev_trust, tmp_path, hub.repo)
    got = client.update()
    assert (got.release, got.number, got.label) == (second.release, 2, "r2")
    assert (client.last_release, client.last_number) == (second.release, 2)
    with hub.state.read() as tx:
        assert tx.record(BUNDLE_RECORD, OSLO)["number"] == 2


def test_a_restarted_hub_keeps_numbering_where_it_was(backend, dev_trust, tmp_path):
    before = Hub(backend, dev_trust)
    before.store.publish(OSLO, bundle(OSLO, "c1"))
    before.store.publish(OSLO, bundle(OSLO, "c2"))
    before.writer.release()

    after = Hub(backend, dev_trust, "hub-b")
    assert after.store.current(OSLO).label == "r2"  # from the stored record
    assert after.store.publish(OSLO, bundle(OSLO, "c2")) is None  # unchanged content: no new release
    assert after.store.publish(OSLO, bundle(OSLO, "c3")).label == "r3"


def test_after_an_import_from_millisecond_counters_numbers_stay_small_and_the_agent_moves_on(
    backend, dev_trust, tmp_path
):
    hub = Hub(backend, dev_trust)
    # An agent that applied releases of a hub from before the state database: a unix-millisecond counter.
    held = hub.floor() - 60_000
    state_dir = tmp_path / f"agent-{OSLO}"
    state_dir.mkdir()
    (state_dir / "trust-state.json").write_text(json.dumps(
        {"cluster": OSLO, "release": held, "digest": "sha256:" + "0" * 64}))
    client = agent(dev_trust, tmp_path, hub.repo)
    assert client.last_number == 0  # no number known for what it held

    signed = hub.store.publish(OSLO, bundle(OSLO, "c1"))
    got = client.update()
    assert signed.label == got.label == "r1" and got.release > held


def test_an_agent_still_refuses_a_lower_counter_whatever_the_number_says(backend, dev_trust, tmp_path):
    hub = Hub(backend, dev_trust)
    signed = hub.store.publish(OSLO, bundle(OSLO, "c1"))
    # An agent that holds a higher counter (a state restored from an old backup): the hub's r1 is a rollback.
    state_dir = tmp_path / f"agent-{OSLO}"
    state_dir.mkdir()
    higher = signed.release + 5
    (state_dir / "trust-state.json").write_text(json.dumps(
        {"cluster": OSLO, "release": higher, "digest": "sha256:" + "0" * 64, "number": 6}))
    client = agent(dev_trust, tmp_path, hub.repo)
    with pytest.raises(VerificationError) as refused:
        client.update()
    assert refused.value.reason == "ReleaseRollback"
    assert f"r1 (counter {signed.release})" in str(refused.value) and f"r6 (counter {higher})" in str(refused.value)
    assert (client.last_release, client.last_number) == (higher, 6)  # nothing of it was taken
