"""A publication keeps the transaction it runs in alive: the repository beats the heartbeat it is handed between
units of its work, so no stretch without a beat grows with the fleet.

A release publishes inside the writer's database transaction; at 100,000 clusters its trust work (directing
every cluster, releasing and signing every changed bin, linking every target file) ran longer than the
15 s writer lease without a statement, so the lease lapsed and the release was refused at commit
(bench/fleet_ha.py). The heartbeat (``Tx.alive`` in the hub) decides by time whether to renew; the repository
only has to call it between units. Here it records, beside every signature the repository makes, when it
was called: a signature, a cluster directed, a target linked each come after a beat.

Where the time went (bench/fleet_ha.py's state run, 20,000 clusters, SQLite, load 2-4, before the fix): the
longest stretch without a statement was 7.8 s, 6.1 s of it linking the release's 20,000 target files (at
100,000 clusters and load 18-35: 61 s). Signing wrote each role as it went (a statement each).
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable, Iterable

from securesystemslib.signer import Signer

from skerry.core.bundle import SHARED_CLUSTER, Bundle
from skerry.hub.trust import admin
from skerry.hub.trust.keys import load_signer
from skerry.hub.trust.repository import ONLINE_ROLES, TrustRepository

CLUSTERS = [f"beat-{i:03d}-dev" for i in range(200)]  # every one of the 64 director bins, many times over


class RecordingSigner(Signer):
    """A real key that notes each signature it makes in ``events`` (beside the heartbeat's notes); ``seconds``
    a signature stands for a loaded machine signing a bin of a 100,000-cluster fleet (a fake delay)."""

    def __init__(self, signer: Signer, events: list[str], seconds: float = 0.0):
        self._signer = signer
        self._events = events
        self._seconds = seconds

    @property
    def public_key(self):
        return self._signer.public_key

    def sign(self, payload: bytes):
        time.sleep(self._seconds)
        self._events.append("sign")
        return self._signer.sign(payload)

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri, public_key, secrets_handler=None):
        raise NotImplementedError("made from a signer, not a URI")


def signing_through(directory: pathlib.Path, wrap: Callable[[Signer], Signer],
                    release_keys: Iterable[tuple[str, pathlib.Path]], storage=None) -> TrustRepository:
    """The trust directory's repository whose online keys and ``release_keys`` (env, key file) sign through
    ``wrap``."""
    keyids = TrustRepository(directory, online={}).role_keyids
    online: dict[str, list[Signer]] = {}
    for path in sorted((directory / "keys").glob("*.key")):
        signer = load_signer(path)
        for role in ONLINE_ROLES:
            if signer.public_key.keyid in keyids(role):
                online.setdefault(role, []).append(wrap(signer))
    release: dict[str, list[Signer]] = {}
    for env, path in release_keys:
        release.setdefault(env, []).append(wrap(load_signer(path)))
    return TrustRepository(directory, online=online, release_signers=release, storage=storage)


def recording_repository(tmp_path, events: list[str]) -> TrustRepository:
    made = admin.init(tmp_path / "trust", {"dev": (1, 1)})
    return signing_through(tmp_path / "trust", lambda signer: RecordingSigner(signer, events),
                           [("dev", path) for path in made["release-dev"]])


def shared(revision: str) -> bytes:
    return Bundle(SHARED_CLUSTER, revision * 40, "file:///fleet", ("apps",), "kustomize", "v5", (
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"},
         "data": {"r": revision}},)).encode()


def test_a_fleet_wide_release_beats_before_every_signature_and_every_cluster(tmp_path):
    events: list[str] = []
    repo = recording_repository(tmp_path, events)
    for revision in ("a", "b"):  # the second one also drops every cluster's previous target
        events.clear()
        directed = repo.direct_many([(c, "dev") for c in CLUSTERS], shared(revision), revision=revision * 40,
                                    release=lambda _c: 7, alive=lambda: events.append("beat"))
        assert all(d is not None for d in directed.values())
        signatures = events.count("sign")
        # a version of each release bin and director bin the 200 clusters fall in, the snapshot and the timestamp
        assert signatures > 64
        assert events[0] == "beat"
        assert "sign, sign" not in ", ".join(events), "two signatures without a beat between them"
        # per cluster: its release (looked up, grouped), its direction, its target file linked
        assert events.count("beat") >= 4 * len(CLUSTERS) + signatures


def test_without_a_heartbeat_a_publication_beats_nothing_and_later_ones_none_of_an_earlier_one(tmp_path):
    events: list[str] = []
    repo = recording_repository(tmp_path, events)
    repo.direct_many([(c, "dev") for c in CLUSTERS[:3]], shared("a"), revision="a" * 40, release=lambda _c: 1,
                     alive=lambda: events.append("beat"))
    events.clear()
    repo.direct_many([(c, "dev") for c in CLUSTERS[:3]], shared("b"), revision="b" * 40, release=lambda _c: 2)
    repo.refresh()
    assert "beat" not in events and "sign" in events  # the batch's heartbeat ended with it
