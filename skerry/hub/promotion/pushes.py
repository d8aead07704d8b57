"""Promotion pushes in flight: stored before they are made, settled by asking the Git remote, never lost.

A promotion's commit (and a rollback's, and an auto-rollback's) is pushed to the Git remote and then
recorded in the hub state; the two cannot be one transaction. A writer that died between them (or
lost its lease there) used to leave a commit on the remote that no record named and nobody followed.
So before every push attempt the writer stores, in its fenced transaction, what it is about to push
with the promotion's record (``intend``): the act (``ACTS``), and the exact commit
(``mirror.Prepared``: its id, parent and branch, and all it takes to make it again, id included).
A writer that cannot store that (fenced, the database away) pushes nothing. The update that records
the push's outcome replaces it, in one transaction with the act's audit entry.

The next writer, or the same hub restarted, ``recover``s every push left stored before it resumes
following rollouts. The Git repository is the truth, so it asks the remote (``PromotionMirror.finish``):

* the commit is on its branch: the push happened. It records what the dead writer would have (the
  promotion or rollback committed, then followed; the auto-rollback done) with its audit entry.
* the branch still ends at the commit's parent: the push never happened (or has not yet: a writer
  paused past its lease may still be about to make it). It makes the same commit again (the same
  id) and pushes it, so a late push of the old writer's changes nothing, then records it as above.
* the branch moved past the parent without it: it never can be pushed (pushes are never forced).
  A promotion or rollback fails, saying so; an auto-rollback's promotion is followed again, and rolls
  back again while its clusters are unhealthy.

So one act makes at most one commit. A push whose remote cannot be asked (unreachable) stays stored,
and is asked about again (``Rollouts.settle_later``); its promotion is followed once it is settled.
Pushes carry the writer term that stored them (``term``: a process and its count of terms, ended by
``Promoter.close``); ``recover`` leaves the current term's alone, as they are this writer's own acts,
maybe in flight (a promotion may arrive while a new writer's first sync runs, before it resumes). A push that fails in
the writer itself (an error, not a rejection: a connection lost after the remote took it) is asked
about at once (``landed``) before the promotion is failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import structlog

from skerry.core.errors import SourceError
from skerry.hub.promotion.audit import HUB, AuditLog
from skerry.hub.promotion.mirror import Prepared, PromotionMirror
from skerry.hub.promotion.records import Record, RecordBook
from skerry.hub.promotion.settings import PromotionSettings

log = structlog.get_logger("skerry.hub.promotion")

# The acts that push, and the audit method each is recorded under.
ACTS = {"promote": "Promote", "rollback": "Rollback", "auto-rollback": "AutoRollback"}


@dataclasses.dataclass(frozen=True)
class Push:
    """One push a writer is about to make for a promotion record."""

    act: str  # a key of ACTS
    prepared: Prepared
    reason: str = ""  # an auto-rollback's: the clusters that turned unhealthy
    term: str = ""  # the writer term that stored it (``Pushes.term``)

    def to_doc(self) -> dict[str, Any]:
        return {"act": self.act, "prepared": self.prepared.to_doc(), "reason": self.reason, "term": self.term}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Push:
        if doc.get("act") not in ACTS:
            raise ValueError(f"unknown act {doc.get('act')!r}")
        return cls(doc["act"], Prepared.from_doc(doc["prepared"]), str(doc.get("reason", "")),
                   str(doc.get("term", "")))


class Intent:
    """``before_push`` for one act's commit: stores each push before it is made; ``prepared``: the last stored."""

    def __init__(self, pushes: Pushes, rec: Record, act: str, reason: str):
        self._pushes, self.rec, self._act, self._reason = pushes, rec, act, reason
        self.prepared: Prepared | None = None

    def __call__(self, prepared: Prepared) -> None:
        push = Push(self._act, prepared, self._reason, self._pushes.term)
        self._pushes.book.intend(self.rec, push.to_doc())
        self.prepared = prepared


class Pushes:
    """Storing pushes before they are made, and settling the ones a previous writer left (module docstring)."""

    def __init__(self, *, book: RecordBook, mirror: PromotionMirror, audit: AuditLog, followed_branch: str):
        self.book = book
        self.mirror = mirror
        self.audit = audit
        self.followed_branch = followed_branch
        # This process's current writer term: ``recover`` leaves alone the pushes stored in it (acts of this
        # very writer, maybe in flight), and settles every push of an earlier term or another process.
        self._process = uuid.uuid4().hex[:16]
        self._terms = 1
        self.term = f"{self._process}/1"

    def end_term(self) -> None:
        """This process stopped writing (it lost the lease, or stops): what it stored so far is a previous
        writer's to whoever writes next, itself included."""
        self._terms += 1
        self.term = f"{self._process}/{self._terms}"

    def intend(self, rec: Record, act: str, reason: str = "") -> Intent:
        """The ``before_push`` of ``rec``'s commit: stores the push with the record (fenced; blocking)."""
        return Intent(self, rec, act, reason)

    async def landed(self, intent: Intent) -> str | None:
        """After a push failed here: its commit if the remote has it all the same, else None (also when nothing
        was stored, so nothing pushed, or when the remote cannot be asked)."""
        if intent.prepared is None:
            return None
        try:
            async with self.mirror.lock:
                there = await asyncio.to_thread(self.mirror.has, intent.prepared)
        except SourceError as e:
            log.error("cannot ask the remote about a failed push", id=intent.rec.id, error=str(e))
            return None
        return intent.prepared.commit if there else None

    async def recover(self, settings: PromotionSettings) -> tuple[list[str], int]:
        """Settle every push a previous writer stored and did not record; call before resuming. The ids settled,
        and how many are left (their remote could not be asked)."""
        settled, left = [], 0
        for rec, follow, doc in await asyncio.to_thread(self.book.pushing):  # (a state read)
            try:
                push = Push.from_doc(doc)
            except (KeyError, TypeError, ValueError) as e:
                log.error("stored promotion push unreadable; left as it is", id=rec.id, error=str(e))
                continue
            if push.term == self.term:  # this writer's own act, in flight
                continue
            try:
                async with self.mirror.lock:
                    landed = await asyncio.to_thread(self.mirror.finish, push.prepared, settings)
            except SourceError as e:  # the remote cannot be asked: the next writer asks again
                log.error("cannot settle a promotion's push yet; asking again later", id=rec.id,
                          commit=push.prepared.commit[:12], error=str(e))
                left += 1
                continue
            self.book.add(rec)
            if follow is not None:
                self.book.follows[rec.id] = follow
            await self._record(rec, push, landed)
            settled.append(rec.id)
        return settled, left

    async def _record(self, rec: Record, push: Push, landed: bool) -> None:
        commit, branch = push.prepared.commit, push.prepared.branch
        outcome = "committed" if landed else "never-pushed"

        def audit(tx) -> None:
            self.audit.record_in(tx, HUB, ACTS[push.act], outcome, id=rec.id, app=rec.app, env=rec.to_env,
                                 commit=commit, branch=branch, requested_by=rec.requested_by, recovered=True)

        gone = f"{commit[:12]} was never pushed: {branch} moved past {push.prepared.parent[:12]} without it"
        if push.act == "auto-rollback":
            if landed:
                await self.book.update(rec, state="rolled-back", rollback_commit=commit,
                                       message=f"rolled back: {push.reason}", audit=audit)
            else:  # followed again: it rolls back again while the clusters are unhealthy
                await self.book.update(rec, message=f"auto-rollback {gone}; following again", audit=audit)
        elif landed:
            review = branch != self.followed_branch
            await self.book.update(
                rec, commit=commit, branch=branch, state="pushed-for-review" if review else "committed",
                message=f"pushed to {branch} for review" if review else "committed; following the rollout",
                audit=audit)
        else:
            await self.book.update(rec, state="failed", message=f"{gone}; nothing committed", audit=audit)
