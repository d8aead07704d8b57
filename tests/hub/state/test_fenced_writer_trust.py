"""A writer that was fenced, and later writes again, publishes only what the state holds.

Each writer host keeps its own copy of the trust directory: an export of the state, where ``skerry keys``
also leaves offline changes for the hub to take in (``TrustRepository.reload``, the trust loop: a file
there newer than the state's is an offline change). A writer whose lease lapsed, unknown to it, takes
CI's last release signature (the threshold is reached: it publishes the release) and has the commit
refused. Another process writes meanwhile; then the first becomes the writer again.

Reproduced before the fix: the export was written before the commit, so the refused publication's
release role stayed in the directory as a version the state never had, and the next term's trust loop
published it as an "offline change" (while the state still held the signatures as collecting). Now the
export is written once the state committed it.
"""

from __future__ import annotations

import shutil
import time

import pytest

from skerry.hub.state import Fenced
from skerry.hub.trust import admin
from skerry.hub.trust.keys import load_signer
from skerry.hub.trust.publishing import VERSIONED
from skerry.hub.trust.repository import _SERIALIZER
from tests.hub.state.test_trust_in_state import CLUSTER, Hub, bundle


class HostTrust:
    """One writer host's copy of a trust directory whose release keys the hub does not hold (CI signs)."""

    release_keys = ()

    def __init__(self, made, directory):
        shutil.copytree(made, directory)
        self.dir = directory


def exported_beyond(hub: Hub) -> dict[str, int]:
    """Versions in the host's export that the state does not hold: role -> version."""
    with hub.state.read() as tx:
        stored = {role: version for role, (version, _) in tx.trust_newest().items()}
    beyond = {}
    for path in hub.repo.metadata_dir.iterdir():
        m = VERSIONED.match(path.name)
        if m is not None and int(m["v"]) > stored.get(m["role"], 0):
            beyond[m["role"]] = int(m["v"])
    return beyond


def test_a_release_signed_under_a_lapsed_lease_is_not_published_later_as_an_offline_change(backend, tmp_path):
    made = admin.init(tmp_path / "trust", {"prod": (2, 2)})
    keys = [load_signer(p) for p in sorted(made["release-prod"])]
    first = Hub(backend, HostTrust(tmp_path / "trust", tmp_path / "host-a"), "hub-a")
    data = bundle("c1").encode()
    role = first.repo.proposal_role("prod", CLUSTER, data)
    md = first.repo.release_proposal("prod", CLUSTER, data, "c1")
    md.sign(keys[0])
    assert not first.repo.submit_release(role, md.to_bytes(_SERIALIZER)).published
    first.writer.ttl = 0.3
    first.writer.renew()
    time.sleep(0.6)  # its lease runs out (a pause); it does not know yet
    second = Hub(backend, HostTrust(tmp_path / "trust", tmp_path / "host-b"), "hub-b")
    assert second.writer.is_writer

    md.signatures.clear()
    md.sign(keys[1])
    with pytest.raises(Fenced):  # the threshold is reached on the lapsed writer: its publication is refused
        first.repo.submit_release(role, md.to_bytes(_SERIALIZER))
    assert exported_beyond(first) == {}, "the export holds a version the state never committed"

    second.writer.release()  # a clean stop: the first writes again, a new term from the state
    assert first.writer.try_acquire()
    first.repo.become(first.repo.reloaded())
    with first.state.read() as tx:
        before = tx.trust_newest()
    assert not first.repo.reload_due()
    first.repo.reload()  # the trust loop's look for offline changes (`skerry keys`): there are none
    with first.state.read() as tx:
        after = tx.trust_newest()
    assert after == before, "what it signed under the lapsed lease was published as an offline change"
    assert len(first.repo.pending(role).signatures) == 2  # still collected, for the writer to publish
    for name, (version, raw) in after.items():  # and what it serves is what the state holds
        assert first.repo.held(f"metadata/{'timestamp.json' if name == 'timestamp' else f'{version}.{name}.json'}") == raw
