"""Every promotion call, allowed or not, as one audit entry: who, what, on which app, and the outcome.

Entries live in the hub state (``skerry.hub.state``: table ``audit``, ordered
by a sequence number) and are logged with structlog. ``record`` commits an
entry on its own; ``record_in(tx, ...)`` writes it inside the transaction of
the act it records, so the act and its entry commit together or not at all
(an approval is never stored without the line that says who gave it); a
coroutine awaits ``arecord``, which writes off the event loop (a database away
must not hold every agent's stream), on the threads it is handed (``off_loop``: the hub's
state-write threads, ``skerry.hub.state.threads``). In the
hub both go through the writer's fenced transaction (``write``); a refused
call's entry (``record_refusal``) may be written by any hub process. Entries
hold names, environments, digests and commit ids; never file contents.

Older hubs appended JSON lines to ``<state dir>/promotion-audit.jsonl``:
``import_previous`` takes that file in, in order, on the first start after an
upgrade, and renames it ``.imported``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
from collections.abc import Callable
from typing import Any

import structlog

from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import ConfigError
from skerry.hub.state import HubState, Tx
from skerry.hub.state.threads import OffLoop

log = structlog.get_logger("skerry.hub.promotion.audit")
HUB = "skerry-hub"  # who the audit log names for what the hub does by itself
MAX_FIELD = 2048  # one audited value; gate messages can name many clusters
RECENT = 1000  # how many entries ``entries`` returns (the CLI's and tests' view)
# An older hub's audit file is at most this big to import (it grew without bound); bigger is refused.
MAX_PREVIOUS_BYTES = 256 * 1024 * 1024


class AuditLog:
    def __init__(self, state: HubState, *, clock: Clock | None = None,
                 write: Callable[[], contextlib.AbstractContextManager[Tx]] | None = None,
                 off_loop: OffLoop = asyncio.to_thread):
        self._state = state
        self._clock = clock or SystemClock()
        self._write = write or state.write  # the hub's: the writer's fenced transaction
        self._off_loop = off_loop
        self._refusals: set[asyncio.Future] = set()  # entries of refused calls being written

    def _entry(self, identity: str, method: str, outcome: str, fields: dict[str, Any]) -> dict[str, Any]:
        entry = {"time": self._clock.now().isoformat(), "identity": identity, "method": method, "outcome": outcome}
        for k, v in fields.items():
            text = v if isinstance(v, (int, float, bool)) or v is None else str(v)
            if isinstance(text, str) and len(text) > MAX_FIELD:
                text = text[: MAX_FIELD - 3] + "..."
            entry[k] = text
        return entry

    def record_in(self, tx: Tx, identity: str, method: str, outcome: str, **fields: Any) -> dict[str, Any]:
        """Write the entry in ``tx``: it commits with the act, or not at all."""
        entry = self._entry(identity, method, outcome, fields)
        tx.audit(entry)
        log.info("audit", **entry)
        return entry

    def record(self, identity: str, method: str, outcome: str, **fields: Any) -> dict[str, Any]:
        """An act's entry: written by the writer only (fenced), like the act it records."""
        with self._write() as tx:
            return self.record_in(tx, identity, method, outcome, **fields)

    async def arecord(self, identity: str, method: str, outcome: str, **fields: Any) -> dict[str, Any]:
        """``record`` from a coroutine: written off the event loop."""
        return await self._off_loop(self.record, identity, method, outcome, **fields)

    def record_refusal(self, identity: str, method: str, outcome: str, **fields: Any) -> dict[str, Any]:
        """A refused call's entry: no act, so any hub process that refused it writes it (unfenced)."""
        with self._state.write() as tx:
            return self.record_in(tx, identity, method, outcome, **fields)

    def record_refusal_off_loop(self, identity: str, method: str, outcome: str, **fields: Any) -> None:
        """``record_refusal`` from code on the event loop that cannot wait (a server's interceptor): written on
        the ``off_loop`` threads; if that fails, one line says which entry was lost (the refusal itself was
        answered and logged)."""
        def written(done: asyncio.Future) -> None:
            self._refusals.discard(done)
            if not done.cancelled() and done.exception() is not None:
                log.error("audit entry of a refused call not written", identity=identity, method=method,
                          error=str(done.exception()))

        writing = asyncio.ensure_future(self._off_loop(self.record_refusal, identity, method, outcome, **fields))
        self._refusals.add(writing)  # held until written: the loop keeps only a weak reference to a task
        writing.add_done_callback(written)

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The last ``RECENT`` entries, oldest first."""
        with self._state.read() as tx:
            return [dict(e.doc) for e in tx.audit_entries(RECENT)]

    def import_previous(self, path: pathlib.Path) -> int:
        """Take in an older hub's JSON-lines audit file, in order; returns the number of entries."""
        path = pathlib.Path(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        if size > MAX_PREVIOUS_BYTES:
            raise ConfigError(f"{path}: {size} bytes, over {MAX_PREVIOUS_BYTES}: archive it and move it away")
        entries = []
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entries.append(dict(json.loads(line)))
            except (ValueError, TypeError) as e:
                raise ConfigError(f"{path} line {number} is not a JSON object ({e}); fix or move the file") from e
        with self._state.write() as tx:
            for entry in entries:
                tx.audit(entry)
        path.rename(path.with_name(path.name + ".imported"))
        return len(entries)
