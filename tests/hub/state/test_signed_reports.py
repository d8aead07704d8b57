"""Signed agent reports in the hub state, on both backends: nonces any replica issues and any other accepts,
a replay refused by every replica, a restart that forgets neither nonces nor reports, and an older report
that never replaces a newer one."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from skerry.core import report as report_format
from skerry.core.clock import FixedClock
from skerry.core.errors import VerificationError
from skerry.hub.trust.attest import MAX_OPEN_NONCES, NONCE_TTL, AttestationBoard, StateBook

CLUSTER = "oslo-prod"


@pytest.fixture
def clock():
    return FixedClock(dt.datetime(2030, 1, 2, 9, 0, tzinfo=dt.UTC))


def replica(backend, clock) -> AttestationBoard:
    """One hub process's board: its own connections to the shared state."""
    return AttestationBoard(clock, StateBook(backend.open()))


def signed(pki, nonce: str, counter: int, *, digest: str = "sha256:a", ready: bool = True):
    doc = {"cluster": CLUSTER, "nonce": nonce, "counter": counter, "applied_digest": digest, "release": 1,
           "revision": "", "ready": ready, "health": [], "drift": {}, "observed_unix_ms": 0}
    files = pki.agent(CLUSTER)
    data, signature = report_format.sign(doc, files.key.read_bytes())
    return data, signature, files.cert.read_bytes()


def refused(board: AttestationBoard, report) -> str:
    with pytest.raises(VerificationError) as e:
        board.submit(*report, submitter=CLUSTER)
    return e.value.reason


def test_a_report_answering_one_replicas_nonce_is_accepted_by_another_and_a_replay_by_none(backend, pki, clock):
    a, b = replica(backend, clock), replica(backend, clock)
    report = signed(pki, *a.issue(CLUSTER))
    assert b.submit(*report, submitter=CLUSTER).cluster == CLUSTER
    assert refused(a, report) == "ReplayedReport"
    assert refused(b, report) == "ReplayedReport"
    assert a.latest(CLUSTER).data == report[0] and a.gate(CLUSTER, "sha256:a")


def test_nonces_and_the_newest_report_survive_a_restart(backend, pki, clock):
    before = replica(backend, clock)
    kept = signed(pki, *before.issue(CLUSTER))
    before.submit(*kept, submitter=CLUSTER)
    waiting = signed(pki, *before.issue(CLUSTER), digest="sha256:b")
    for state in backend.opened:
        state.close()
    backend.opened.clear()

    after = replica(backend, clock)  # the restarted hub
    assert after.latest(CLUSTER).data == kept[0] and after.gate(CLUSTER, "sha256:a")
    assert refused(after, kept) == "ReplayedReport"
    after.submit(*waiting, submitter=CLUSTER)  # issued before the restart, answered after it
    assert after.gate(CLUSTER, "sha256:b")
    nonce, counter = after.issue(CLUSTER)
    assert counter == 3  # counters go on from where they were


def test_an_older_report_never_overwrites_a_newer_one(backend, pki, clock):
    a, b = replica(backend, clock), replica(backend, clock)
    older = signed(pki, *a.issue(CLUSTER), digest="sha256:old")
    newer = signed(pki, *b.issue(CLUSTER), digest="sha256:new")
    b.submit(*newer, submitter=CLUSTER)
    a.submit(*older, submitter=CLUSTER)  # valid (its nonce was open), but it answers an earlier nonce
    for board in (a, b, replica(backend, clock)):
        assert board.latest(CLUSTER).data == newer[0]
        assert board.gate(CLUSTER, "sha256:new") and not board.gate(CLUSTER, "sha256:old")


def test_two_replicas_accepting_one_report_at_once_accept_it_once(backend, pki, clock):
    boards = [replica(backend, clock) for _ in range(2)]
    report = signed(pki, *boards[0].issue(CLUSTER))
    outcomes: list[str] = []
    start = threading.Barrier(len(boards))

    def submit(board):
        start.wait()
        try:
            board.submit(*report, submitter=CLUSTER)
            outcomes.append("accepted")
        except VerificationError as e:
            outcomes.append(e.reason)

    threads = [threading.Thread(target=submit, args=(board,)) for board in boards]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["ReplayedReport", "accepted"]


def test_open_nonces_are_bounded_per_cluster_and_expire(backend, pki, clock):
    a, b = replica(backend, clock), replica(backend, clock)
    first = signed(pki, *a.issue(CLUSTER))
    for _ in range(MAX_OPEN_NONCES):  # a caller asking for nonces it never answers pushes the oldest out
        b.issue(CLUSTER)
    assert refused(a, first) == "ReplayedReport"
    stale = signed(pki, *a.issue(CLUSTER))
    clock.advance(NONCE_TTL.total_seconds() + 1)
    assert refused(b, stale) == "ReplayedReport"
    fresh = signed(pki, *b.issue(CLUSTER))
    assert a.submit(*fresh, submitter=CLUSTER).report["counter"] == MAX_OPEN_NONCES + 3
