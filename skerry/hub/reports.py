"""Agents' latest reports and their soak clocks, kept in the hub state so a restart forgets neither.

The status board (``skerry.hub.status``) holds each cluster's latest report in
memory and the health tracker (``promotion.gates.HealthTracker``) the moment
each cluster became healthy on its bundle: the soak clock promotion gates
read. Both used to start empty after a restart, so every soak began again.
``ReportJournal`` writes them behind: ``note`` keeps the newest per cluster in
memory, ``flush`` (the hub calls it every ``FLUSH_SECONDS`` and on stop)
commits them in one transaction, one row per cluster (table ``reports``),
and ``load`` reads them back on start. ``fresh`` and ``adopt`` (every
``FLUSH_SECONDS``) take in what other replicas stored since: each flush has a
position in the state (its transaction's number), so a replica reads only
what is new.

What is kept: the report without its per-object list (up to 20,000 entries:
the next report brings it back) plus ``healthy_since`` for its digest. Order:
a row's generation is the agent's ``observed_unix_ms``, and the state never
lets an older generation overwrite a newer one, whichever hub writes.
A crash loses at most the reports of the last ``FLUSH_SECONDS``; agents
report again, and a soak clock already stored is kept.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import threading
from collections.abc import Sequence
from typing import Protocol

import structlog

from skerry.core.conditions import Condition
from skerry.hub.state import HubState
from skerry.hub.status import ClusterStatus

log = structlog.get_logger("skerry.hub.reports")

FLUSH_SECONDS = 1.0  # a crash loses at most this much of the agents' reports (they report again)


@dataclasses.dataclass(frozen=True)
class StoredReport:
    status: ClusterStatus
    healthy_digest: str
    healthy_since: _dt.datetime | None


def _encode(status: ClusterStatus, healthy: tuple[str, _dt.datetime | None] | None) -> bytes:
    doc = dataclasses.asdict(dataclasses.replace(status, objects=()))
    doc["received_at"] = status.received_at.isoformat() if status.received_at else None
    doc["healthy"] = [healthy[0], healthy[1].isoformat() if healthy[1] else None] if healthy else None
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _decode(body: bytes) -> StoredReport:
    doc = json.loads(body)
    healthy = doc.pop("healthy", None) or ["", None]
    received = doc.pop("received_at", None)
    conditions = tuple(Condition(**c) for c in doc.pop("conditions", ()))
    doc.pop("objects", None)
    status = ClusterStatus(
        **doc, conditions=conditions, received_at=_dt.datetime.fromisoformat(received) if received else None
    )
    since = _dt.datetime.fromisoformat(healthy[1]) if healthy[1] else None
    return StoredReport(status, healthy[0], since)


class Board(Protocol):
    """The status board reports are followed into (``promotion.health.TrackingStatusBoard``)."""

    def get(self, cluster: str) -> ClusterStatus | None: ...

    def restore(self, stored: Sequence[StoredReport]) -> None: ...


class ReportJournal:
    def __init__(self, state: HubState):
        self._state = state
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, bytes]] = {}
        self._seq = -1  # position in the state's reports (``follow``)

    def note(self, status: ClusterStatus, healthy: tuple[str, _dt.datetime | None] | None) -> None:
        """Remember the cluster's newest report and soak clock until the next ``flush``."""
        with self._lock:
            self._pending[status.cluster] = (status.observed_unix_ms, _encode(status, healthy))

    def flush(self) -> int:
        """Commit what was noted since the last flush, in one transaction; returns the rows written."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            with self._state.write() as tx:
                return tx.put_reports(batch)
        except BaseException:
            with self._lock:  # not committed: keep them for the next flush (newer notes win)
                self._pending = {**batch, **self._pending}
            raise

    def load(self) -> list[StoredReport]:
        """Every stored report (a start); ``fresh`` goes on from here."""
        self._seq = -1  # rows stored before reports had positions are at 0
        return self.fresh()

    def fresh(self) -> list[StoredReport]:
        """The reports stored (by any replica) since the last ``load`` or ``fresh``."""
        out = []
        while True:
            with self._state.read() as tx:
                rows, self._seq = tx.reports_since(self._seq)
            if not rows:
                return out
            for row in rows:
                try:
                    out.append(_decode(row.body))
                except (ValueError, TypeError, KeyError) as e:
                    log.warning("stored report unreadable; the agent's next report replaces it", cluster=row.cluster,
                                error=str(e))

    def exchange(self) -> list[StoredReport]:
        """``flush``, then ``fresh``: this replica's reports out, the others' in (the hub's loop, each second)."""
        self.flush()
        return self.fresh()

    @staticmethod
    def adopt(board: Board, stored: Sequence[StoredReport]) -> int:
        """Take into ``board`` (on its thread) those of ``stored`` newer than what it holds: an agent reports
        to one replica, every replica shows it, and the writer's soak clocks run on it. How many it took."""
        taken = [r for r in stored
                 if (held := board.get(r.status.cluster)) is None or r.status.observed_unix_ms > held.observed_unix_ms]
        board.restore(taken)
        return len(taken)
