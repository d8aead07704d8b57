"""Approvals of a promotion: who approved which freight for which move, and when; kept 24 hours.

An approval is for one app's move ``from -> to`` of one freight (its image
set, ``freight.freight_key``) and expires after ``APPROVAL_TTL``: it is for
today's freight, not forever. They live in the hub state (records of kind
``approval``, one per move and freight), so they survive a restart and every
replica sees them; ``approve`` writes the approval and its audit entry in
one transaction, the writer's (fenced: a hub that lost the lease records nothing); a coroutine awaits
``aapprove`` and ``aclear``, which write on the threads it is handed (``off_loop``: the hub's
state-write threads). Older hubs kept them in ``<state dir>/promotion-approvals.json``:
``import_previous`` takes that file in and renames it ``.imported``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import pathlib
from collections.abc import Callable

import structlog

from skerry.core.clock import Clock
from skerry.hub.promotion.audit import AuditLog
from skerry.hub.state import HubState, Tx
from skerry.hub.state.threads import OffLoop

log = structlog.get_logger("skerry.hub.promotion.approvals")

KIND = "approval"
APPROVAL_TTL = _dt.timedelta(hours=24)  # an approval is for this freight, today; not forever
MAX_IMPORT = 1000  # entries taken from a previous hub's file (it held at most this many)

Key = tuple[str, str, str, str]  # app, from env, to env, freight key


def _key(key: Key) -> str:
    return json.dumps(list(key), separators=(",", ":"))


class Approvals:
    def __init__(self, state: HubState, audit: AuditLog, clock: Clock,
                 write: Callable[[], contextlib.AbstractContextManager[Tx]] | None = None,
                 off_loop: OffLoop = asyncio.to_thread):
        self._state = state
        self._audit = audit
        self._clock = clock
        self._write = write or state.write  # the hub's: the writer's fenced transaction
        self._off_loop = off_loop

    def approve(self, key: Key, name: str, identity: str, **fields) -> None:
        """Record ``name``'s approval and its audit entry, together."""
        now = self._clock.now()
        with self._write() as tx:
            by = tx.record(KIND, _key(key), for_update=True) or {}
            by = {n: t for n, t in by.get("by", {}).items() if now - _dt.datetime.fromisoformat(t) <= APPROVAL_TTL}
            by[name] = now.isoformat()
            tx.put_record(KIND, _key(key), {"by": by})
            self._audit.record_in(tx, identity, "Approve", "recorded", approver=name, **fields)

    async def aapprove(self, key: Key, name: str, identity: str, **fields) -> None:
        """``approve`` from a coroutine: written off the event loop."""
        await self._off_loop(self.approve, key, name, identity, **fields)

    def of(self, key: Key) -> list[str]:
        """Who approved ``key`` within the last ``APPROVAL_TTL``, sorted."""
        now = self._clock.now()
        with self._state.read() as tx:
            doc = tx.record(KIND, _key(key)) or {}
        return sorted(n for n, t in doc.get("by", {}).items() if now - _dt.datetime.fromisoformat(t) <= APPROVAL_TTL)

    def clear(self, key: Key) -> None:
        """The move was committed: its approvals are used up."""
        with self._write() as tx:
            tx.put_record(KIND, _key(key), None)

    async def aclear(self, key: Key) -> None:
        """``clear`` from a coroutine: written off the event loop."""
        await self._off_loop(self.clear, key)

    def import_previous(self, path: pathlib.Path) -> int:
        path = pathlib.Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as e:
            # The older hub started without them in this case too; keep the file for a human to look at.
            log.warning("approvals file unreadable; not imported", file=str(path), error=str(e))
            return 0
        count = 0
        with self._state.write() as tx:
            for entry in raw.get("approvals", [])[:MAX_IMPORT]:
                try:
                    key = (entry["app"], entry["from"], entry["to"], entry["freight"])
                    by = {str(n): _dt.datetime.fromisoformat(t).isoformat() for n, t in entry["by"].items()}
                except (KeyError, TypeError, ValueError, AttributeError):
                    continue
                tx.put_record(KIND, _key(key), {"by": by})
                count += 1
        path.rename(path.with_name(path.name + ".imported"))
        return count
