"""``SqlTx``'s queries of JSON records and the change log, written for batches.

A fleet-wide release writes a record and logs a change per cluster (100,000
of them in one fenced transaction), and every replica reads those records
back. On PostgreSQL each statement is a network round trip, and one
statement per row made a release take minutes there (``bench/fleet_ha.py``:
~4 statements per cluster) where SQLite, in-process, took 43 s. So rows go
``ROWS_PER_STATEMENT`` to a statement: a multi-row ``VALUES`` list to write,
an ``IN`` list to read, the same SQL on both backends. (psycopg's
``executemany`` pipelines, which saves the waiting but not the work: the
server still runs one statement per row, and ``RETURNING`` rows come back
one result set per row.) A batch stays one transaction: fenced and atomic
like a single write (``skerry.hub.state.sql``).

Change-log numbers of a batch come from one bump of the ``changes`` sequence
(``value + n``): its row lock orders them with every other transaction's,
exactly as one bump per row did. Pruning runs where the numbers cross a
multiple of ``PRUNE_EVERY`` and deletes what that single bump would have.

A mixin like ``sql_trust``: ``SqlTx`` gives it ``_run``, ``_one`` and ``_next``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from skerry.hub.state.protocol import Change

# Rows per statement: SQLite allows 32,766 parameters a statement, PostgreSQL 65,535; 1,000 rows of
# up to four columns stay far below both, and a statement of 1,000 rows is one round trip, not 1,000.
ROWS_PER_STATEMENT = 1_000
# The change log keeps this many entries; a replica further behind reloads everything.
MAX_CHANGES = 100_000
# Pruning runs on every this-many-th change, so it costs one DELETE per batch, not per row.
PRUNE_EVERY = 1_000
# Bounds on what one call returns (callers page with ``after``).
MAX_PAGE = 10_000


def to_json(doc: Mapping) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def chunks(items: Sequence, size: int = ROWS_PER_STATEMENT) -> Iterator[Sequence]:
    """``items`` in slices of at most ``size``: one statement each."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def rows_of(row: str, count: int) -> str:
    """``row`` (``(?, ?)``) ``count`` times, comma-separated: a multi-row ``VALUES`` or ``IN`` list."""
    return ", ".join([row] * count)


class RecordQueries:
    _run: Callable[[str, Sequence[Any]], tuple[list[tuple], int]]
    _one: Callable[..., tuple | None]
    _next: Callable[..., int]
    _d: Any  # the dialect (``schema.Dialect``)
    notify: bool

    # --- records ------------------------------------------------------------------------------

    def put_record(self, kind: str, key: str, doc: Mapping | None) -> None:
        self.put_records(kind, {key: doc})

    def put_records(self, kind: str, docs: Mapping[str, Mapping | None]) -> None:
        """Store (a document) or delete (None) each key's record, and log a change for each, in order."""
        if not docs:
            return
        stored = [(key, doc) for key, doc in docs.items() if doc is not None]
        gone = [key for key, doc in docs.items() if doc is None]
        for part in chunks(stored):  # encoded a statement's worth at a time: statements keep coming (the lease)
            rows = [(kind, key, to_json(doc)) for key, doc in part]
            self._run(
                f"INSERT INTO records (kind, key, doc) VALUES {rows_of('(?, ?, ?)', len(rows))} "
                "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc",
                [v for row in rows for v in row],
            )
        for keys in chunks(gone):
            self._run(f"DELETE FROM records WHERE kind = ? AND key IN ({rows_of('?', len(keys))})", (kind, *keys))
        self.changed_many(kind, list(docs))

    def record(self, kind: str, key: str, *, for_update: bool = False) -> dict | None:
        """One document; ``for_update`` locks it until commit (a read-modify-write by two replicas)."""
        row = self._one(
            "SELECT doc FROM records WHERE kind = ? AND key = ?" + (self._d.lock_update if for_update else ""),
            (kind, key),
        )
        return None if row is None else json.loads(row[0])

    def records(self, kind: str) -> dict[str, dict]:
        rows, _ = self._run("SELECT key, doc FROM records WHERE kind = ? ORDER BY key", (kind,))
        return {r[0]: json.loads(r[1]) for r in rows}

    def records_of(self, kind: str, keys: Iterable[str]) -> dict[str, dict]:
        """The documents of ``keys`` that exist (a key without a record is left out)."""
        wanted = list(dict.fromkeys(keys))
        out: dict[str, dict] = {}
        for part in chunks(wanted):
            rows, _ = self._run(
                f"SELECT key, doc FROM records WHERE kind = ? AND key IN ({rows_of('?', len(part))})", (kind, *part)
            )
            out.update((r[0], json.loads(r[1])) for r in rows)
        return out

    # --- change log ---------------------------------------------------------------------------

    def changed(self, kind: str, key: str) -> int:
        return self.changed_many(kind, [key])

    def changed_many(self, kind: str, keys: Sequence[str]) -> int:
        """Log a change per key, numbered in order; returns the last number (the current one if none)."""
        if not keys:
            return self.last_change()
        # The sequence row stays locked until commit, so sequence order is commit order: a reader
        # that saw N never later finds a smaller number committed (no gap to skip over).
        last = self._next("changes", len(keys))
        first = last - len(keys) + 1
        for start in range(0, len(keys), ROWS_PER_STATEMENT):
            part = keys[start:start + ROWS_PER_STATEMENT]
            self._run(
                f"INSERT INTO changes (seq, kind, key, at) VALUES {rows_of(f'(?, ?, ?, {self._d.now})', len(part))}",
                [v for i, key in enumerate(part) for v in (first + start + i, kind, key)],
            )
        prune_at = last - last % PRUNE_EVERY
        if prune_at >= first:
            self._run("DELETE FROM changes WHERE seq <= ?", (prune_at - MAX_CHANGES,))
        self.notify = True
        return last

    def changes_since(self, seq: int, limit: int = MAX_PAGE) -> list[Change]:
        rows, _ = self._run(
            "SELECT seq, kind, key FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
            (int(seq), min(int(limit), MAX_PAGE)),
        )
        return [Change(int(r[0]), r[1], r[2]) for r in rows]

    def oldest_change(self) -> int:
        """The smallest sequence number still in the log (0 if it is empty)."""
        row = self._one("SELECT MIN(seq) FROM changes", ())
        return int(row[0]) if row and row[0] is not None else 0

    def last_change(self) -> int:
        row = self._one("SELECT value FROM sequences WHERE name = 'changes'", ())
        return int(row[0]) if row else 0
