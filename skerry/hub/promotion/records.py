"""Promotion records: the record of each promotion, in memory for watchers and in the hub state for a restart.

``Record`` is what ``WatchPromotion`` streams (its gates, changes, per-cluster progress and state);
``RecordBook`` keeps the records of this process (at most ``MAX_RECORDS``), stores each update and
wakes the watchers.

A promotion is a commit plus a rollout the hub follows: it waits for the
render, watches the target clusters' reports, holds the soak, and rolls the
commit back if a cluster turns unhealthy within it (``auto-rollback``). That
follow used to live in one task's memory: a restarted hub forgot the promotion
and its auto-rollback never fired. ``RecordStore`` writes each record (records
of kind ``promotion``) on every update, with its follow state while it is
followed: the freight to roll back to, whether to, the soak, the wall-clock
deadline and when the target last became healthy. ``unfinished`` gives back
the records a previous process was following, for ``Promoter.resume``.

Writes go through ``write`` (the writer's fenced transaction in the hub; from a coroutine
``asave``, on the threads ``off_loop`` names: the hub's state-write threads), so a
process that lost the writer lease cannot record, or resume, anything. A
record may carry the push its writer is about to make (``pushing``, stored
before the push: ``skerry.hub.promotion.pushes``); the update that records the
push's outcome drops it, in one transaction with its audit entry (``audit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as _dt
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from skerry.core.clock import Clock
from skerry.core.errors import NotFound, SkerryError
from skerry.hub.promotion import freight as fr
from skerry.hub.promotion.gates import Gate
from skerry.hub.state import HubState, Tx
from skerry.hub.state.threads import OffLoop

log = structlog.get_logger("skerry.hub.promotion")

KIND = "promotion"
MAX_RECORDS = 1000  # promotions kept in memory for WatchPromotion; oldest finished ones go first
WATCH_WAKE = 5.0  # seconds a watcher waits for a change before looking again
# An update whose caller is cancelled (a clean stop ends the rollouts; a caller hangs up) is still made, its turn
# and its store, within this long: a stop waits for it rather than lose it, and still ends well inside a pod's
# termination grace (30 s by default, shared with draining the streams). Past it, the state keeps the record's
# update before, with its follow state: the next start resumes the rollout from there.
CANCELLED_UPDATE_SECONDS = 5.0
FINAL = frozenset({"approved", "blocked", "done", "failed", "rolled-back", "timed-out", "pushed-for-review", "ready"})


@dataclasses.dataclass
class ClusterProgress:
    cluster: str
    state: str = "pending"
    target_digest: str = ""
    applied_digest: str = ""
    message: str = ""
    # The target and the applied release as people read them (``r7``; display only).
    target_release: str = ""
    applied_release: str = ""


@dataclasses.dataclass
class Record:
    id: str
    app: str
    from_env: str
    to_env: str
    kind: str
    state: str
    requested_by: str
    commit: str = ""
    branch: str = ""
    gates: list[Gate] = dataclasses.field(default_factory=list)
    changes: list[fr.ImageChange] = dataclasses.field(default_factory=list)
    clusters: list[ClusterProgress] = dataclasses.field(default_factory=list)
    approved_by: list[str] = dataclasses.field(default_factory=list)
    message: str = ""
    rollback_commit: str = ""
    updated: _dt.datetime | None = None
    version: int = 0

    @property
    def final(self) -> bool:
        return self.state in FINAL


@dataclasses.dataclass
class Follow:
    """What following one rollout needs to go on in another process."""

    previous: tuple[fr.Image, ...]
    auto_rollback: bool
    soak: float
    deadline: _dt.datetime
    verified_since: _dt.datetime | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "previous": [dataclasses.asdict(i) for i in self.previous],
            "auto_rollback": self.auto_rollback,
            "soak": self.soak,
            "deadline": self.deadline.isoformat(),
            "verified_since": self.verified_since.isoformat() if self.verified_since else None,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Follow:
        since = doc.get("verified_since")
        return cls(
            previous=tuple(fr.Image(**i) for i in doc["previous"]),
            auto_rollback=bool(doc["auto_rollback"]),
            soak=float(doc["soak"]),
            deadline=_dt.datetime.fromisoformat(doc["deadline"]),
            verified_since=_dt.datetime.fromisoformat(since) if since else None,
        )


def record_to_doc(rec) -> dict[str, Any]:
    doc = dataclasses.asdict(rec)
    doc["updated"] = rec.updated.isoformat() if rec.updated else None
    return doc


def record_from_doc(doc: dict[str, Any], record_type, progress_type):
    doc = dict(doc)
    doc["gates"] = [Gate(**g) for g in doc.get("gates", ())]
    doc["changes"] = [fr.ImageChange(**c) for c in doc.get("changes", ())]
    doc["clusters"] = [progress_type(**c) for c in doc.get("clusters", ())]
    doc["updated"] = _dt.datetime.fromisoformat(doc["updated"]) if doc.get("updated") else None
    return record_type(**doc)


class RecordStore:
    def __init__(self, state: HubState, write: Callable[[], contextlib.AbstractContextManager[Tx]] | None = None,
                 off_loop: OffLoop = asyncio.to_thread):
        self._state = state
        self._write = write or state.write
        self._off_loop = off_loop

    def save(self, rec, follow: Follow | None, *, pushing: dict[str, Any] | None = None,
             audit: Callable[[Tx], Any] | None = None) -> None:
        """Store ``rec`` with its follow state, the push it is about to make if any, and (``audit``, writing
        the act's audit entry) in one transaction."""
        doc = {"record": record_to_doc(rec), "follow": follow.to_doc() if follow and not rec.final else None}
        if pushing is not None:
            doc["pushing"] = pushing
        with self._write() as tx:
            tx.put_record(KIND, rec.id, doc)
            if audit is not None:
                audit(tx)

    async def asave(self, rec, follow: Follow | None, *, audit: Callable[[Tx], Any] | None = None) -> None:
        """``save`` from a coroutine: written off the event loop."""
        await self._off_loop(self.save, rec, follow, audit=audit)

    def pushing(self, record_type, progress_type) -> list[tuple[Any, Follow | None, dict[str, Any]]]:
        """Records whose writer stored a push and not its outcome (oldest first): (record, follow, push)."""
        with self._state.read() as tx:
            docs = tx.records(KIND)
        out = []
        for doc in docs.values():
            if doc.get("pushing") is not None:
                follow = Follow.from_doc(doc["follow"]) if doc.get("follow") else None
                out.append((record_from_doc(doc["record"], record_type, progress_type), follow, doc["pushing"]))
        return sorted(out, key=lambda item: item[0].updated or _dt.datetime.min.replace(tzinfo=_dt.UTC))

    def unfinished(self, record_type, progress_type) -> list[tuple[Any, Follow]]:
        """Records a previous process was following (oldest first); not those with a push to settle first."""
        with self._state.read() as tx:
            docs = tx.records(KIND)
        out = []
        for doc in docs.values():
            if doc.get("follow") is None or doc.get("pushing") is not None:
                continue
            rec = record_from_doc(doc["record"], record_type, progress_type)
            if not rec.final:
                out.append((rec, Follow.from_doc(doc["follow"])))
        return sorted(out, key=lambda pair: pair[0].updated or _dt.datetime.min.replace(tzinfo=_dt.UTC))


class RecordBook:
    """This process's promotion records and the follow state of those still followed.

    Every ``update`` is stored (with its follow state) before it shows (in the record, to watchers), off
    the event loop and one at a time (never an older over a newer); a store that fails (fenced, or the
    database gone) is one line, the record lives on in memory and its next update stores it whole. An
    update whose caller is cancelled, waiting its turn or storing, is still made (``CANCELLED_UPDATE_SECONDS``).
    """

    def __init__(self, clock: Clock, store: RecordStore | None = None):
        self.records: dict[str, Record] = {}
        self.follows: dict[str, Follow] = {}
        self.store = store
        self._clock = clock
        self._changed = asyncio.Condition()
        self._storing = asyncio.Lock()

    def new(self, **fields: Any) -> Record:
        rec = Record(id=uuid.uuid4().hex[:16], updated=self._clock.now(), **fields)
        self.add(rec)
        return rec

    def add(self, rec: Record) -> None:
        if len(self.records) >= MAX_RECORDS:
            for rid in [r.id for r in self.records.values() if r.final][: len(self.records) - MAX_RECORDS + 1]:
                del self.records[rid]
        self.records[rec.id] = rec

    async def update(self, rec: Record, *, audit: Callable[[Tx], Any] | None = None, **changes: Any) -> None:
        """Change ``rec``, store it (and ``audit``'s entry, in the same transaction), wake the watchers; if the
        caller is cancelled meanwhile, the update is still made (within ``CANCELLED_UPDATE_SECONDS``), then
        the cancellation goes on."""
        making = asyncio.ensure_future(self._update(rec, audit, changes))
        try:
            await asyncio.shield(making)
        except asyncio.CancelledError:
            if not making.done():
                await self._made_anyway(rec, making)
            raise

    async def _made_anyway(self, rec: Record, making: asyncio.Future) -> None:
        """Wait (bounded) for an update whose caller was cancelled; past the bound it is dropped, one line."""
        try:
            async with asyncio.timeout(CANCELLED_UPDATE_SECONDS):
                await asyncio.shield(making)
        except TimeoutError:
            making.cancel()
            log.error("promotion record update not stored before the stop; the next start resumes from the one "
                      "before", id=rec.id, waited=CANCELLED_UPDATE_SECONDS)
        except Exception:  # noqa: BLE001 - the caller is going away: it can only be logged
            log.exception("promotion record update failed", id=rec.id)

    async def _update(self, rec: Record, audit: Callable[[Tx], Any] | None, changes: dict[str, Any]) -> None:
        async with self._storing:  # one at a time, each made from the one before
            new = dataclasses.replace(rec, **changes, updated=self._clock.now(), version=rec.version + 1)
            if self.store is not None:
                try:  # a write: off the event loop, and before the change shows
                    await self.store.asave(new, None if new.final else self.follows.get(rec.id), audit=audit)
                except SkerryError as e:  # Fenced or the database gone: the record lives on in memory
                    log.error("promotion record not stored; stored whole with its next update", id=rec.id,
                              reason=e.reason, error=str(e))
            for field in (*changes, "updated", "version"):
                setattr(rec, field, getattr(new, field))
            if rec.final:
                self.follows.pop(rec.id, None)
        async with self._changed:
            self._changed.notify_all()

    def get(self, promotion_id: str) -> Record:
        rec = self.records.get(promotion_id)
        if rec is None:
            raise NotFound(f"no promotion {promotion_id!r} on this hub (records are kept in memory)")
        return rec

    async def watch(self, rec: Record) -> AsyncIterator[Record]:
        """``rec`` now and after every change, until it is final."""
        seen = -1
        while True:
            if rec.version != seen:
                seen = rec.version
                yield rec
                if rec.final:
                    return
            async with self._changed:
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for (3.11) can lose a cancel
                    async with asyncio.timeout(WATCH_WAKE):
                        await self._changed.wait()

    def intend(self, rec: Record, pushing: dict[str, Any]) -> None:
        """Store the push ``rec``'s writer is about to make, fenced, before it makes it. Blocking; raises
        (and so nothing is pushed) if it cannot be stored."""
        if self.store is not None:
            self.store.save(rec, self.follows.get(rec.id), pushing=pushing)

    def unfinished(self) -> list[tuple[Record, Follow]]:
        """What a previous process was following (none without a store)."""
        return self.store.unfinished(Record, ClusterProgress) if self.store is not None else []

    def pushing(self) -> list[tuple[Record, Follow | None, dict[str, Any]]]:
        """Pushes a previous process stored and did not settle (none without a store)."""
        return self.store.pushing(Record, ClusterProgress) if self.store is not None else []
