"""The hub-state contract on both backends: fencing, takeovers, counters, tokens, reports, the change log."""

from __future__ import annotations

import threading
import time

import pytest

from skerry.hub.state import Fenced
from skerry.hub.state.feed import ChangeFeed

# The lease lengths below are real seconds on the database's clock (which cannot be injected: it is
# the clock of record). Short leases keep the tests fast; DEADLINE bounds every wait.
SHORT = 0.3
LONG = 30.0
DEADLINE = 20.0


def take_over(state, holder: str, ttl: float = LONG):
    """Acquire the lease as soon as the current one expires (polls the database clock)."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        lease = state.acquire_lease(holder, ttl)
        if lease is not None:
            return lease
        time.sleep(0.05)
    raise AssertionError(f"{holder} never got the lease")


def wait_expired(state, lease):
    """Until the database says ``lease`` is over (renewal is refused)."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        with state.read() as tx:
            expired = tx._one(f"SELECT expires <= {state.dialect.now} FROM writer_lease")[0]
        if expired:
            return
        time.sleep(0.05)
    raise AssertionError("lease never expired")


def test_one_live_writer_at_a_time(backend):
    a, b = backend.open(), backend.open()
    lease_a = a.acquire_lease("hub-a", LONG)
    assert lease_a is not None and lease_a.epoch >= 1
    assert b.acquire_lease("hub-b", LONG) is None
    renewed = a.renew_lease(lease_a, LONG)
    assert renewed.epoch == lease_a.epoch and renewed.expires >= lease_a.expires
    a.release_lease(lease_a)
    lease_b = b.acquire_lease("hub-b", LONG)
    assert lease_b is not None and lease_b.epoch == lease_a.epoch + 1


def test_fenced_write_after_takeover_is_refused(backend):
    a, b = backend.open(), backend.open()
    lease_a = a.acquire_lease("hub-a", SHORT)
    with a.write(lease_a) as tx:
        tx.put_record("promotion", "web", {"by": "a", "step": 1})
    lease_b = take_over(b, "hub-b")
    assert lease_b.epoch == lease_a.epoch + 1
    with pytest.raises(Fenced):
        with a.write(lease_a) as tx:
            tx.put_record("promotion", "web", {"by": "a", "step": 2})
    with pytest.raises(Fenced):
        a.renew_lease(lease_a, LONG)
    with b.read() as tx:
        assert tx.records("promotion") == {"web": {"by": "a", "step": 1}}
    with b.write(lease_b) as tx:
        tx.put_record("promotion", "web", {"by": "b", "step": 2})
    with a.read() as tx:
        assert tx.records("promotion")["web"] == {"by": "b", "step": 2}


def test_writer_paused_past_its_lease_commits_nothing_and_the_takeover_waits_for_it(backend):
    a, b = backend.open(), backend.open()
    lease_a = a.acquire_lease("hub-a", SHORT)
    with a.write(lease_a) as tx:
        before = tx.next_release("oslo")
    got: dict = {}

    def takeover():
        got["lease"] = take_over(b, "hub-b")
        got["at"] = time.monotonic()

    with pytest.raises(Fenced):
        with a.write(lease_a) as tx:  # the fence check at the start passes: the lease is live
            tx.next_release("oslo")
            tx.audit({"act": "release", "cluster": "oslo"})
            wait_expired(b, lease_a)  # "paused" until its lease is over, inside the transaction
            thread = threading.Thread(target=takeover)
            thread.start()
            time.sleep(0.5)
            assert "lease" not in got, "the takeover did not wait for the in-flight transaction"
            finished = time.monotonic()
    thread.join(DEADLINE)
    assert got["lease"].epoch == lease_a.epoch + 1 and got["at"] >= finished
    with b.read() as tx:
        assert tx.last_release("oslo") == before  # the paused writer's increment never committed
        assert tx.audit_entries(10) == []


def test_release_counters_strictly_increase_across_writers_and_restarts(backend):
    a = backend.open()
    with a.read() as tx:
        floor = int(tx.get_meta("release_floor"))
    assert floor >= int(time.time() * 1000) - 3_600_000  # made from the clock at schema creation
    lease = a.acquire_lease("hub-a", LONG)
    seen = []
    with a.write(lease) as tx:
        seen += [tx.next_release("oslo") for _ in range(3)]
    assert seen[0] == floor + 1  # above every unix-millisecond counter an older hub handed out
    a.release_lease(lease)
    b = backend.open()
    lease_b = b.acquire_lease("hub-b", LONG)
    with b.write(lease_b) as tx:
        seen.append(tx.next_release("oslo"))
        tx.raise_release("oslo", seen[-1] + 100)  # e.g. a counter the TUF director kept
        tx.raise_release("oslo", 5)  # never lowers it
        seen.append(tx.next_release("oslo"))
    b.release_lease(lease_b)
    a.close()
    again = backend.open()  # a restarted hub
    lease_c = again.acquire_lease("hub-a", LONG)
    with again.write(lease_c) as tx:
        seen.append(tx.next_release("oslo"))
        other = tx.next_release("bergen")
    assert seen == sorted(set(seen)) and seen[-2] == seen[-3] + 101
    assert other == floor + 1  # counters are per cluster


def test_two_replicas_redeeming_one_token_at_once_spend_it_once(backend):
    replicas = [backend.open(), backend.open()]
    barrier = threading.Barrier(2)
    results = []

    def redeem(state):
        barrier.wait()
        with state.write() as tx:
            results.append(tx.redeem_token("t-1", expires=2e9, now=1e9))

    for _ in range(5):  # several rounds: a race that loses only sometimes is still a race
        results.clear()
        threads = [threading.Thread(target=redeem, args=(s,)) for s in replicas]
        [t.start() for t in threads]
        [t.join(DEADLINE) for t in threads]
        assert sorted(results) == ([False, True] if _ == 0 else [False, False])
    with replicas[0].write() as tx:
        assert tx.redeem_token("t-2", expires=1e9 + 10, now=1e9)
        assert tx.spent_tokens(now=1e9) == {"t-1": 2e9, "t-2": 1e9 + 10}
        # expired entries are dropped when the next token is redeemed
        assert tx.redeem_token("t-3", expires=3e9, now=1e9 + 20)
        assert set(tx.spent_tokens(now=1e9 + 20)) == {"t-1", "t-3"}


def test_an_older_report_never_overwrites_a_newer_one(backend):
    a, b = backend.open(), backend.open()
    with a.write() as tx:
        assert tx.put_report("oslo", 5, b"five")
    with b.write() as tx:
        assert not tx.put_report("oslo", 3, b"three")
        assert not tx.put_report("oslo", 5, b"five again")
    with a.write() as tx:
        assert tx.put_report("oslo", 6, b"six")
    with b.read() as tx:
        assert [(r.cluster, r.generation, r.body) for r in tx.reports()] == [("oslo", 6, b"six")]


def test_a_replica_reads_each_report_another_stored_once_and_never_half_a_transaction(backend):
    a, b = backend.open(), backend.open()
    with b.read() as tx:
        _, position = tx.reports_since(-1)
    with a.write() as tx:  # one transaction, three clusters
        for cluster in ("bergen", "oslo", "tromso"):
            assert tx.put_report(cluster, 5, cluster.encode())
    with b.read() as tx:
        rows, position = tx.reports_since(position, limit=1)  # a page ends on a transaction's boundary
        assert sorted(r.cluster for r in rows) == ["bergen", "oslo", "tromso"]
        assert tx.reports_since(position) == ([], position)
    with a.write() as tx:
        assert not tx.put_report("bergen", 4, b"older")  # refused: not new to anyone
        assert tx.put_report("oslo", 6, b"six")
    with b.read() as tx:
        rows, position = tx.reports_since(position)
        assert [(r.cluster, r.generation, r.body) for r in rows] == [("oslo", 6, b"six")]


def test_an_act_and_its_audit_entry_commit_together_or_not_at_all(backend):
    a = backend.open()
    lease = a.acquire_lease("hub-a", LONG)
    with pytest.raises(RuntimeError):
        with a.write(lease) as tx:
            tx.put_record("approval", "web/prod", {"by": "alice"})
            tx.audit({"method": "Approve", "identity": "alice"})
            raise RuntimeError("the act failed after both writes")
    with a.write(lease) as tx:
        tx.put_record("approval", "web/prod", {"by": "bob"})
        tx.audit({"method": "Approve", "identity": "bob"})
    with a.read() as tx:
        assert tx.records("approval") == {"web/prod": {"by": "bob"}}
        assert [e.doc["identity"] for e in tx.audit_entries(10)] == ["bob"]


def test_change_log_follower_sees_every_change_once_in_order(backend):
    writer, follower = backend.open(), backend.open()
    feed = ChangeFeed(follower)
    lease = writer.acquire_lease("hub-a", LONG)
    with writer.write(lease) as tx:  # one transaction: a batch, one wake-up
        for i in range(3):
            tx.put_record("promotion", f"p{i}", {"i": i})
    with writer.write() as tx:
        tx.revoke("cluster", "oslo", 1e9)
    seen = []
    end = time.monotonic() + DEADLINE
    while len(seen) < 4 and time.monotonic() < end:
        seen += feed.wait(0.5)
    assert [(c.kind, c.key) for c in seen] == [
        ("promotion", "p0"), ("promotion", "p1"), ("promotion", "p2"), ("revocation", "cluster/oslo"),
    ]
    assert [c.seq for c in seen] == list(range(seen[0].seq, seen[0].seq + 4))
    assert feed.poll() == []
