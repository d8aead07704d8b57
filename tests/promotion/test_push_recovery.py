"""A writer that loses its lease at its push leaves nothing lost: the next writer asks the remote and settles it.

Two writers of one hub state in turn (each its own connection, lease and Git mirror), on SQLite and on a real
PostgreSQL, and the real bare remote. The remote's own hook (a test hook, ``hand_over_at``) hands the writer
lease from ``hub-a`` to ``hub-b`` at an exact point of hub-a's push, once: after the push landed
(``post-receive``), or before, declining it (``pre-receive``). From there hub-a can store nothing, as if it had
died there; ``hub-b``'s ``resume`` must find the push hub-a stored before making it, ask the remote, and record
and follow it (landed), make and push the very same commit (declined), or fail it (the branch moved since),
never committing twice. Promotion, rollback and auto-rollback commits alike. A remote that cannot be asked at
the takeover is asked again until it can. And a push that fails in the writer itself after the remote took it
(another test hook kills the ``git push``) is asked about at once and recorded as committed, not failed. A
writer that resumes while its own push is in flight (held by a third test hook) leaves it to its act.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator

import pytest

from skerry.core.errors import SourceError
from skerry.hub.promotion.approvals import Approvals
from skerry.hub.promotion.audit import AuditLog
from skerry.hub.promotion.records import KIND, RecordStore
from skerry.hub.promotion.service import Promoter
from skerry.hub.source.git import GitSource
from skerry.hub.state import Fenced, open_state
from skerry.hub.writer import Writer

from .helpers import git, operator
from .test_promote import PROD_K, ready_for_prod, until

LEASE_TTL = 300.0  # never runs out in a test: only the hook hands it over
SETTLE_RETRY = 0.05  # how soon a push whose remote could not be asked is asked about again

# Run by git in the remote at one point of a push (once: it removes itself), in a process of its own.
HOOK = """#!{python}
# test hook: the writer lease passes from {holder} to hub-b here, as if {holder} died at this point of its push
import os, sys
from skerry.hub.state import Lease, open_state
cfg = {cfg!r}
state = open_state(cfg["spec"], state_dir=cfg["state_dir"], dsn=cfg["dsn"])
state.release_lease(Lease(cfg["holder"], cfg["epoch"], 0.0))
taken = state.acquire_lease("hub-b", cfg["ttl"])
state.close()
os.remove(__file__)
sys.exit(1 if cfg["decline"] or taken is None else 0)
"""

# Run by git in the remote once the push landed (once): kills the pushing ``git push``, so the push fails in the
# writer although the remote took it (as a connection lost after the remote updated the branch).
KILL_PUSHER = """#!{python}
# test hook: the push fails in the writer after the remote took it
import os, signal
pid = os.getppid()
while pid > 1:
    with open(f"/proc/{{pid}}/cmdline", "rb") as f:
        argv = f.read().split(b"\\0")
    if argv[:2] == [b"git", b"push"]:
        break
    with open(f"/proc/{{pid}}/stat") as f:
        pid = int(f.read().rsplit(")", 1)[1].split()[1])
os.remove(__file__)
os.kill(pid, signal.SIGKILL)
"""

# Run by git in the remote before a push lands (once): holds the push until the test lets it go.
HOLD_PUSH = """#!{python}
# test hook: the push waits here until {release} exists
import os, pathlib, time
pathlib.Path({started!r}).touch()
while not os.path.exists({release!r}):
    time.sleep(0.02)
os.remove(__file__)
"""


class Writers:
    """``hub-a`` (the harness's promoter, holding the lease) and, once handed over, ``hub-b``."""

    def __init__(self, h, dsn: str | None):  # h: the conftest's Harness
        self.h = h
        self.spec, self.dsn = ("postgresql", dsn) if dsn else ("", None)
        self.states = []
        self.old, h.promoter = self._promoter("hub-a")

    def _promoter(self, holder: str) -> tuple[Writer, Promoter]:
        h = self.h
        state = open_state(self.spec, state_dir=h.tmp / "hub-state", dsn=self.dsn)
        self.states.append(state)
        writer = Writer(state, holder, ttl=LEASE_TTL)
        assert writer.try_acquire(), f"{holder} could not take the writer lease"
        audit = AuditLog(state, clock=h.clock, write=writer.write)
        return writer, Promoter(
            source=GitSource(str(h.remote), cache_dir=h.tmp / holder / "promotion"),  # each hub its own mirror
            fleet=h.syncer, store=h.store, statuses=h.statuses, tracker=h.tracker, audit=audit,
            settings=dataclasses.replace(h.promoter.settings, settle_retry=SETTLE_RETRY), clock=h.clock, approvals=Approvals(state, audit, h.clock, write=writer.write),
            records=RecordStore(state, write=writer.write),
        )

    def hand_over_at(self, hook: str) -> None:
        """At ``hook`` of hub-a's next push the lease passes to hub-b (``pre-receive`` also declines the push)."""
        lease = self.old.lease
        cfg = {"spec": self.spec, "state_dir": str(self.h.tmp / "hub-state"), "dsn": self.dsn,
               "holder": lease.holder, "epoch": lease.epoch, "ttl": LEASE_TTL, "decline": hook == "pre-receive"}
        path = self.h.remote / "hooks" / hook
        path.write_text(HOOK.format(python=sys.executable, holder=lease.holder, cfg=cfg))
        path.chmod(0o755)

    @contextlib.asynccontextmanager
    async def next_writer(self) -> AsyncIterator[Promoter]:
        """hub-b's promoter; stopped, with the harness, at the end."""
        _, promoter = self._promoter("hub-b")
        try:
            yield promoter
        finally:
            await promoter.close()
            await self.h.stop()

    def stored(self) -> dict[str, dict]:
        with self.states[0].read() as tx:
            return tx.records(KIND)

    def audited(self, method: str, promotion_id: str) -> list[dict]:
        with self.states[0].read() as tx:
            return [dict(e.doc) for e in tx.audit_entries(1000)
                    if e.doc["method"] == method and e.doc.get("id") == promotion_id]

    def close(self) -> None:
        for state in self.states:
            state.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def writers(request, harness):
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgresql" else None
    w = Writers(harness, dsn)
    yield w
    w.close()


def the_push(w: Writers) -> tuple[str, dict]:
    """The one record in the state with a push stored and not settled: (id, the push)."""
    (rid, doc), = [(rid, doc) for rid, doc in w.stored().items() if doc.get("pushing")]
    return rid, doc["pushing"]


async def test_a_promotion_pushed_but_never_recorded_is_recorded_and_followed_by_the_next_writer(writers):
    w, h = writers, writers.h
    await ready_for_prod(h)
    head = h.remote_head()
    w.hand_over_at("post-receive")
    with pytest.raises(Fenced):
        await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    pushed = h.remote_head()
    assert git(h.remote, "rev-parse", f"{pushed}~1") == head and 'newTag: "1.27.0"' in h.remote_file(PROD_K)
    rid, push = the_push(w)  # hub-a stored the exact commit before pushing it; never that it pushed it
    assert push["act"] == "promote" and push["prepared"]["commit"] == pushed
    h.start_loop()
    async with w.next_writer() as nxt:
        assert await nxt.resume() == [rid]  # recorded as committed, then followed
        rec = nxt.records[rid]
        assert rec.commit == pushed and rec.branch == "main"
        await until(lambda: h.store.current("oslo-prod").revision == pushed, "the promoted bundle")
        h.report("oslo-prod")
        await until(lambda: rec.state == "verifying", "prod's soak")
        h.clock.advance(61)
        await until(lambda: rec.state == "done", "done")
        assert h.remote_head() == pushed  # one act, one commit
        (entry,) = w.audited("Promote", rid)
        assert entry["outcome"] == "committed" and entry["recovered"] and entry["commit"] == pushed
        assert "pushing" not in w.stored()[rid]


async def declined_promotion(w: Writers) -> str:
    """hub-a promotes; the remote declines its push as the lease passes to hub-b. The head it was made on."""
    h = w.h
    await ready_for_prod(h)
    head = h.remote_head()
    w.hand_over_at("pre-receive")
    with pytest.raises(SourceError):  # declined; and hub-a can no longer record that it failed
        await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    assert h.remote_head() == head  # nothing landed
    return head


async def test_a_promotion_whose_push_never_landed_is_pushed_by_the_next_writer_as_the_very_same_commit(writers):
    w, h = writers, writers.h
    head = await declined_promotion(w)
    rid, push = the_push(w)
    async with w.next_writer() as nxt:
        assert await nxt.resume() == [rid]
        made = push["prepared"]["commit"]
        assert h.remote_head() == made and git(h.remote, "rev-parse", f"{made}~1") == head
        assert nxt.records[rid].commit == made and 'newTag: "1.27.0"' in h.remote_file(PROD_K)
        assert [e["outcome"] for e in w.audited("Promote", rid)] == ["committed"]


async def test_a_promotion_whose_push_never_landed_and_can_no_longer_land_fails_committing_nothing(writers):
    w, h = writers, writers.h
    await declined_promotion(w)
    other = h.edit(PROD_K, "count: 3", "count: 5", "prod: 5 replicas (someone else)")  # the branch moves on
    rid, _ = the_push(w)
    async with w.next_writer() as nxt:
        assert await nxt.resume() == []  # nothing to follow
        rec = nxt.records[rid]
        assert rec.state == "failed" and not rec.commit and "never pushed" in rec.message
        assert h.remote_head() == other and 'newTag: "1.25.3"' in h.remote_file(PROD_K)
        assert [e["outcome"] for e in w.audited("Promote", rid)] == ["never-pushed"]


async def test_a_push_whose_remote_cannot_be_asked_is_settled_and_followed_once_it_can(writers):
    w, h = writers, writers.h
    head = await declined_promotion(w)
    rid, push = the_push(w)
    away = h.remote.with_name("remote-away.git")
    h.remote.rename(away)  # the remote is unreachable when hub-b takes over
    async with w.next_writer() as nxt:
        assert await nxt.resume() == []  # nothing settled, nothing followed yet; the push stays stored
        assert w.stored()[rid]["pushing"] == push
        away.rename(h.remote)
        await until(lambda: rid in nxt.records and nxt.records[rid].state == "rolling-out", "the push settled, followed")
        made = push["prepared"]["commit"]
        assert nxt.records[rid].commit == made and h.remote_head() == made
        assert git(h.remote, "rev-parse", f"{made}~1") == head
        assert [e["outcome"] for e in w.audited("Promote", rid)] == ["committed"]


async def test_a_rollback_pushed_but_never_recorded_is_recorded_and_followed_by_the_next_writer(writers):
    w, h = writers, writers.h
    await ready_for_prod(h)
    before = h.remote_head()
    promoted = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    await h.promoter.close()
    w.hand_over_at("post-receive")
    back = await h.promoter.rollback(operator("bob"), "web", "prod", before)  # its record was never stored
    await h.promoter.close()
    pushed = h.remote_head()
    assert back.commit == pushed and git(h.remote, "rev-parse", f"{pushed}~1") == promoted.commit
    assert w.stored()[back.id]["pushing"]["act"] == "rollback"
    async with w.next_writer() as nxt:
        assert back.id in await nxt.resume()
        again = nxt.records[back.id]
        assert again.kind == "rollback" and again.commit == pushed and h.remote_head() == pushed
        assert [e["outcome"] for e in w.audited("Rollback", back.id)] == ["committed"]


async def test_an_auto_rollback_pushed_but_never_recorded_is_recorded_by_the_next_writer_not_made_again(writers):
    w, h = writers, writers.h
    await ready_for_prod(h)
    h.start_loop()
    before = h.remote_file(PROD_K)
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    await until(lambda: rec.clusters and h.store.current("oslo-prod").revision == rec.commit, "the promoted bundle")
    w.hand_over_at("post-receive")
    h.report("oslo-prod", ready=False)  # unhealthy within the soak: hub-a rolls back, and can record nothing
    await until(lambda: rec.state == "rolled-back", "hub-a's auto-rollback")
    await h.promoter.close()
    reverted = h.remote_head()
    assert rec.rollback_commit == reverted and w.stored()[rec.id]["pushing"]["act"] == "auto-rollback"
    async with w.next_writer() as nxt:
        assert await nxt.resume() == []  # rolled back: nothing left to follow, nothing to revert again
        again = nxt.records[rec.id]
        assert again.state == "rolled-back" and again.rollback_commit == reverted
        assert h.remote_head() == reverted and git(h.remote, "rev-parse", f"{reverted}~1") == rec.commit
        assert h.remote_file(PROD_K) == before
        assert [e["outcome"] for e in w.audited("AutoRollback", rec.id)] == ["committed"]



async def test_a_push_that_failed_in_the_writer_after_the_remote_took_it_is_recorded_as_committed(harness):
    h = harness
    await ready_for_prod(h)
    hook = h.remote / "hooks" / "post-receive"
    hook.write_text(KILL_PUSHER.format(python=sys.executable))
    hook.chmod(0o755)
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")  # the push failed, yet it landed
    try:
        assert not hook.exists(), "the hook did not run"
        assert rec.state == "committed" and rec.commit == h.remote_head()
        assert 'newTag: "1.27.0"' in h.remote_file(PROD_K)
        assert [e["outcome"] for e in h.audit.entries if e["method"] == "Promote" and e.get("id") == rec.id] == [
            "committed"]
    finally:
        await h.stop()


async def test_a_writer_resuming_leaves_its_own_push_in_flight_to_the_act_that_makes_it(harness):
    h = harness
    await ready_for_prod(h)
    started, release = h.tmp / "push-started", h.tmp / "push-release"
    hook = h.remote / "hooks" / "pre-receive"
    hook.write_text(HOLD_PUSH.format(python=sys.executable, started=str(started), release=str(release)))
    hook.chmod(0o755)
    promoting = asyncio.create_task(h.promoter.promote(operator("alice"), "web", "dev", "prod"))
    try:
        await until(started.exists, "the push to reach the remote")
        assert await h.promoter.resume() == []  # its own act's push, stored in this term: not settled here
        release.touch()
        rec = await promoting
        assert rec.state == "committed" and rec.commit == h.remote_head()
        entries = [e for e in h.audit.entries if e["method"] == "Promote" and e.get("id") == rec.id]
        assert [(e["outcome"], e.get("recovered")) for e in entries] == [("committed", None)]
    finally:
        release.touch()
        await h.stop()
