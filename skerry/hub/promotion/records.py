"""Promotion records and what following each rollout needs, kept in the hub state so a restart resumes it.

A promotion is a commit plus a rollout the hub follows: it waits for the
render, watches the target clusters' reports, holds the soak, and rolls the
commit back if a cluster turns unhealthy within it (``auto-rollback``). That
follow used to live in one task's memory: a restarted hub forgot the promotion
and its auto-rollback never fired. ``RecordStore`` writes each record (records
of kind ``promotion``) on every update, with its follow state while it is
followed: the freight to roll back to, whether to, the soak, the wall-clock
deadline and when the target last became healthy. ``unfinished`` gives back
the records a previous process was following, for ``Promoter.resume``.

Writes go through ``write`` (the writer's fenced transaction in the hub), so a
process that lost the writer lease cannot record, or resume, anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
from collections.abc import Callable
from typing import Any

from skerry.hub.promotion import freight as fr
from skerry.hub.promotion.gates import Gate
from skerry.hub.state import HubState, Tx

KIND = "promotion"


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
    def __init__(self, state: HubState, write: Callable[[], contextlib.AbstractContextManager[Tx]] | None = None):
        self._state = state
        self._write = write or state.write

    def save(self, rec, follow: Follow | None) -> None:
        doc = {"record": record_to_doc(rec), "follow": follow.to_doc() if follow and not rec.final else None}
        with self._write() as tx:
            tx.put_record(KIND, rec.id, doc)

    def unfinished(self, record_type, progress_type) -> list[tuple[Any, Follow]]:
        """Records a previous process was following (oldest first)."""
        with self._state.read() as tx:
            docs = tx.records(KIND)
        out = []
        for doc in docs.values():
            if doc.get("follow") is None:
                continue
            rec = record_from_doc(doc["record"], record_type, progress_type)
            if not rec.final:
                out.append((rec, Follow.from_doc(doc["follow"])))
        return sorted(out, key=lambda pair: pair[0].updated or _dt.datetime.min.replace(tzinfo=_dt.UTC))
