"""State that moved into the hub state, tested through its owners on both backends, and the upgrade import."""

from __future__ import annotations

import json
import threading

import pytest

from skerry.agent.enroll import make_csr
from skerry.core.errors import ConfigError, PermissionDenied
from skerry.hub.enrollment.service import DIR_NAME, Enrollment

DEADLINE = 20.0


def test_two_replicas_redeeming_one_token_at_once_issue_exactly_one_certificate(backend, tmp_path):
    # Two hub processes: the same enrollment keys (a shared secret volume), each its own connections.
    replicas = [Enrollment.open(tmp_path, backend.open()), Enrollment.open(tmp_path, backend.open())]
    token, _ = replicas[0].tokens.issue("oslo-prod")
    csr = make_csr("oslo-prod")[0]
    barrier = threading.Barrier(2)
    issued, refused = [], []

    def enroll(enrollment):
        barrier.wait()
        try:
            issued.append(enrollment.enroll(token, csr))
        except PermissionDenied as e:
            refused.append(str(e))

    threads = [threading.Thread(target=enroll, args=(r,)) for r in replicas]
    [t.start() for t in threads]
    [t.join(DEADLINE) for t in threads]
    assert len(issued) == 1 and issued[0].cluster == "oslo-prod"
    assert len(refused) == 1 and "was already used; tokens are single-use" in refused[0]


def test_first_start_after_an_upgrade_imports_spent_tokens_losing_none(backend, tmp_path):
    d = tmp_path / DIR_NAME
    d.mkdir()
    old = Enrollment.open(tmp_path, backend.open())
    spent, claims = old.tokens.issue("oslo-prod")
    fresh, _ = old.tokens.issue("oslo-prod")
    # What an older hub left: spent tokens in a JSON file next to the key.
    (d / "used-tokens.json").write_text(json.dumps({claims.token_id: claims.expires, "0" * 32: 1.0}))
    upgraded = Enrollment.open(tmp_path, backend.open())
    assert not (d / "used-tokens.json").exists() and (d / "used-tokens.json.imported").exists()
    with pytest.raises(PermissionDenied, match="already used"):
        upgraded.enroll(spent, make_csr("oslo-prod")[0])
    assert upgraded.enroll(fresh, make_csr("oslo-prod")[0]).cluster == "oslo-prod"
    # a restart does not import again, and the record stays
    again = Enrollment.open(tmp_path, backend.open())
    with pytest.raises(PermissionDenied, match="already used"):
        again.enroll(fresh, make_csr("oslo-prod")[0])


def test_a_corrupt_legacy_token_record_is_refused_not_forgotten(backend, tmp_path):
    d = tmp_path / DIR_NAME
    d.mkdir()
    (d / "used-tokens.json").write_text("{not json")
    with pytest.raises(ConfigError, match="used-tokens.json is corrupt"):
        Enrollment.open(tmp_path, backend.open())
    assert (d / "used-tokens.json").exists()


def test_revocations_live_in_the_state_reach_every_replica_and_are_exported_for_the_sealer(backend, tmp_path):
    from skerry.core.revocation import read_file
    from skerry.hub.enrollment.revocation import Revocations

    a = Revocations(tmp_path / "a", backend.open())
    b = Revocations(tmp_path / "b", backend.open())  # another replica, its own export
    a.revoke_cluster("oslo-prod")
    a.revoke_fingerprint("AB:" * 31 + "AB")
    assert b.reload() and set(b.clusters) == {"oslo-prod"} and set(b.fingerprints) == {"ab" * 32}
    assert not b.reload()  # nothing new
    sealer_view = read_file(tmp_path / "b" / "revocations.json")  # the exported file
    assert sealer_view.clusters == b.clusters and sealer_view.fingerprints == b.fingerprints


def test_first_start_after_an_upgrade_imports_the_revocation_file_losing_none(backend, tmp_path):
    from skerry.hub.enrollment.revocation import Revocations

    d = tmp_path / DIR_NAME
    d.mkdir()
    (d / "revocations.json").write_text(
        json.dumps({"clusters": {"oslo-prod": 1.7e9}, "fingerprints": {"cd" * 32: 1.7e9}})
    )
    upgraded = Revocations(d, backend.open())
    assert upgraded.clusters == {"oslo-prod": 1.7e9} and upgraded.fingerprints == {"cd" * 32: 1.7e9}
    replica = Revocations(tmp_path / "elsewhere", backend.open())  # sees it through the state, not the file
    assert replica.clusters == {"oslo-prod": 1.7e9}


def test_an_approval_and_its_audit_entry_commit_together_and_reach_another_replica(backend):
    import datetime as dt

    from skerry.core.clock import FixedClock
    from skerry.hub.promotion.approvals import Approvals
    from skerry.hub.promotion.audit import AuditLog

    clock = FixedClock(dt.datetime(2030, 1, 2, 9, 0, tzinfo=dt.UTC))
    a, b = backend.open(), backend.open()
    audit_a = AuditLog(a, clock=clock)
    here, there = Approvals(a, audit_a, clock), Approvals(b, AuditLog(b, clock=clock), clock)
    key = ("web", "dev", "prod", "sha256:f")
    here.approve(key, "bob", "operator:bob", app="web")
    there.approve(key, "carol", "operator:carol", app="web")
    assert here.of(key) == there.of(key) == ["bob", "carol"]
    assert [(e["identity"], e["method"], e["outcome"]) for e in audit_a.entries] == [
        ("operator:bob", "Approve", "recorded"), ("operator:carol", "Approve", "recorded"),
    ]
    clock.advance(25 * 3600)  # an approval is for today's freight
    assert here.of(key) == []
    there.approve(key, "dave", "operator:dave")
    here.clear(key)
    assert there.of(key) == []


def test_first_start_after_an_upgrade_imports_approvals_and_the_audit_file_in_order(backend, tmp_path):
    import datetime as dt

    from skerry.core.clock import FixedClock
    from skerry.hub.promotion.approvals import Approvals
    from skerry.hub.promotion.audit import AuditLog

    clock = FixedClock(dt.datetime(2030, 1, 2, 9, 0, tzinfo=dt.UTC))
    lines = [{"time": f"2030-01-01T0{i}:00:00+00:00", "identity": "x", "method": "Promote", "outcome": str(i)}
             for i in range(3)]
    (tmp_path / "promotion-audit.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    (tmp_path / "promotion-approvals.json").write_text(json.dumps({"approvals": [
        {"app": "web", "from": "dev", "to": "prod", "freight": "f", "by": {"bob": "2030-01-02T08:00:00+00:00"}},
    ]}))
    state = backend.open()
    audit = AuditLog(state, clock=clock)
    approvals = Approvals(state, audit, clock)
    assert audit.import_previous(tmp_path / "promotion-audit.jsonl") == 3
    assert approvals.import_previous(tmp_path / "promotion-approvals.json") == 1
    audit.record("y", "GetFreight", "ok")
    assert [e["outcome"] for e in audit.entries] == ["0", "1", "2", "ok"]
    assert approvals.of(("web", "dev", "prod", "f")) == ["bob"]
    assert not (tmp_path / "promotion-audit.jsonl").exists()
    assert (tmp_path / "promotion-approvals.json.imported").exists()


def test_reports_and_soak_clocks_survive_a_restart_and_an_older_report_never_wins(backend):
    import datetime as dt

    from skerry.core.clock import FixedClock
    from skerry.hub.promotion.gates import HealthTracker
    from skerry.hub.promotion.service import TrackingStatusBoard
    from skerry.hub.reports import ReportJournal
    from skerry.hub.status import ClusterStatus, Condition, ObjectStatus

    clock = FixedClock(dt.datetime(2030, 1, 2, 9, 0, tzinfo=dt.UTC))
    ready = (Condition("Ready", "True", "Applied"),)

    def status(ms: int, digest: str = "sha256:a") -> ClusterStatus:
        return ClusterStatus(cluster="oslo", applied_version=7, applied_digest=digest, conditions=ready,
                             objects=(ObjectStatus("", "v1", "ConfigMap", "ns", "c", "applied"),),
                             observed_unix_ms=ms, received_at=clock.now())

    first = backend.open()
    journal = ReportJournal(first)
    board = TrackingStatusBoard(HealthTracker(), clock, journal=journal)
    assert board.report(status(1000))
    since = board.tracker.healthy_since("oslo", "sha256:a")
    clock.advance(600)
    assert board.report(status(2000))  # still healthy on the same digest: the clock keeps running
    assert journal.flush() == 1
    # Another replica holds an older report of the same cluster: storing it changes nothing.
    late = ReportJournal(backend.open())
    late.note(status(1500, "sha256:old"), ("sha256:old", None))
    assert late.flush() == 0

    restarted = TrackingStatusBoard(HealthTracker(), clock, journal=ReportJournal(backend.open()))
    restarted.restore(ReportJournal(backend.open()).load())
    assert restarted.tracker.healthy_since("oslo", "sha256:a") == since  # the soak did not start again
    held = restarted.get("oslo")
    assert held.observed_unix_ms == 2000 and held.conditions == ready and held.objects == ()


def test_approvals_and_acts_audits_are_the_writers_a_process_without_the_lease_records_neither(backend):
    import datetime as dt

    from skerry.core.clock import FixedClock
    from skerry.hub.promotion.approvals import Approvals
    from skerry.hub.promotion.audit import AuditLog
    from skerry.hub.state import Fenced
    from skerry.hub.writer import Writer

    clock = FixedClock(dt.datetime(2030, 1, 2, 9, 0, tzinfo=dt.UTC))
    writer, standby = Writer(backend.open(), "hub-a"), Writer(backend.open(), "hub-b")
    assert writer.try_acquire() and not standby.try_acquire()
    audit = AuditLog(standby.state, clock=clock, write=standby.write)
    approvals = Approvals(standby.state, audit, clock, write=standby.write)
    key = ("web", "dev", "prod", "sha256:f")
    with pytest.raises(Fenced):
        approvals.approve(key, "bob", "operator:bob", app="web")
    with pytest.raises(Fenced):
        audit.record("skerry-hub", "Promote", "committed", app="web")
    audit.record_refusal("operator:eve", "Approve", "denied", reason="not an approver")  # no act: any process
    assert approvals.of(key) == []
    assert [(e["identity"], e["outcome"]) for e in audit.entries] == [("operator:eve", "denied")]
    mine = Approvals(writer.state, AuditLog(writer.state, clock=clock, write=writer.write), clock, write=writer.write)
    mine.approve(key, "bob", "operator:bob", app="web")
    assert approvals.of(key) == ["bob"]
