"""The one implementation of the state protocol in SQL; the backends only open connections and transactions.

``SqlState`` holds everything both backends share: migrations, the writer
lease, fencing, and ``SqlTx`` (every query, written once with ``?``
placeholders and ``Dialect`` spellings; records and the change log in
``sql_records``, the trust tables in ``sql_trust``). What a release writes
per cluster (counters, records, change-log entries) goes many rows to a
statement (``next_releases``, ``put_records``: ``sql_records``), in the same
fenced transaction as everything else. A backend supplies ``_begin(write)``,
a context manager yielding ``run(sql, params) -> (rows, rowcount)`` inside one
transaction that commits on normal exit and rolls back on an exception, and
``_notify(run)`` (PostgreSQL: one NOTIFY per transaction; SQLite: nothing,
replicas poll).

Fencing (``write(lease)``): the lease row is read with ``FOR SHARE`` as the
transaction's first statement and re-read just before commit; both must show
the caller's epoch, unexpired on the database's clock. The share lock makes a
takeover (which locks the row ``FOR UPDATE``) wait until this transaction has
committed or rolled back, so every write of epoch N is ordered before epoch
N+1 exists; the second check refuses a transaction that ran (or was paused)
past the lease. On SQLite a write transaction holds the database's only write
lock (``BEGIN IMMEDIATE``), which gives the same ordering.

A transaction may outlast the lease by its size alone (a fleet-wide release
of 100,000 clusters takes tens of seconds), and nothing outside it can renew
the lease meanwhile: the share lock (PostgreSQL) or the write lock (SQLite)
holds the renewal back. So a write transaction renews the lease itself, in
the transaction, once a third of its time to live has passed since the
last renewal (``_renewing``), before its next statement: a transaction that
keeps working keeps its lease, one paused past the lease renews nothing and
is refused at commit as before (the renewal, too, requires a live lease).
Others see the longer lease only when it commits; a takeover that found it
expired meanwhile waits on the row lock and then finds it live.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from skerry.hub.state import schema
from skerry.hub.state.protocol import AuditEntry, Fenced, Lease, Report
from skerry.hub.state.sql_records import MAX_PAGE, RecordQueries, chunks, rows_of, to_json
from skerry.hub.state.sql_trust import TrustQueries

Run = Callable[[str, Sequence[Any]], tuple[list[tuple], int]]

LEASE_NAME = "writer"
# A write transaction renews its lease once this fraction of the lease's time to live has passed
# since the last renewal: two more chances before it would expire.
RENEW_INSIDE_AFTER = 1 / 3
# ``alive()`` makes a statement at most this often (and at most every third of a fenced transaction's lease,
# whose renewal is then due): far inside PostgreSQL's idle-in-transaction limit (``postgres``).
ALIVE_EVERY = 1.0


def _renewing(run: Run, lease: Lease, d: schema.Dialect, monotonic: Callable[[], float] = time.monotonic) -> Run:
    """``run`` that first renews ``lease`` in the same transaction when a third of its TTL has passed."""
    last = [monotonic()]

    def renewing(sql: str, params: Sequence[Any]) -> tuple[list[tuple], int]:
        if monotonic() - last[0] >= lease.ttl * RENEW_INSIDE_AFTER:
            rows, _ = run(
                f"UPDATE writer_lease SET expires = {d.now} + ? WHERE name = ? AND holder = ? AND epoch = ? "
                f"AND expires > {d.now} RETURNING expires",
                (float(lease.ttl), LEASE_NAME, lease.holder, lease.epoch),
            )
            if not rows:
                raise Fenced(f"writer lease epoch {lease.epoch} of {lease.holder!r} expired inside a transaction; "
                             "nothing committed")
            last[0] = monotonic()
        return run(sql, params)

    return renewing


class SqlTx(RecordQueries, TrustQueries):
    """One transaction (``skerry.hub.state.protocol.Tx``); records and the change log are ``RecordQueries``,
    the trust tables' queries ``TrustQueries``."""

    def __init__(self, run: Run, dialect: schema.Dialect, alive_every: float = ALIVE_EVERY):
        self._run = run
        self._d = dialect
        self._alive_every = alive_every
        self.notify = False
        self._report_seq: int | None = None
        self._floor: int | None = None  # release_floor, read once per transaction (it never changes)
        self._alive = time.monotonic()

    def alive(self) -> None:
        """Make a statement if none was made for ``ALIVE_EVERY`` (or a third of the lease) through this call:
        a long computation inside the transaction (a release's director pass and trust signing over 100,000
        clusters) calls it as it goes, however often (it decides by time), so the transaction renews its
        lease when due (``_renewing``) and PostgreSQL does not end it as idle."""
        if time.monotonic() - self._alive >= self._alive_every:
            self._run("SELECT 1", ())
            self._alive = time.monotonic()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        rows, _ = self._run(sql, params)
        return rows[0] if rows else None

    # --- fencing ------------------------------------------------------------------------------

    def fence(self, lease: Lease, *, lock: bool) -> None:
        row = self._one(
            f"SELECT holder, epoch, expires > {self._d.now} FROM writer_lease WHERE name = ?"
            + (self._d.lock_share if lock else ""),
            (LEASE_NAME,),
        )
        if row is None or row[1] != lease.epoch or row[0] != lease.holder:
            raise Fenced(
                f"writer lease epoch {lease.epoch} of {lease.holder!r} was taken over "
                f"(now epoch {row[1] if row else '?'} of {row[0] if row else '?'!r}); nothing committed"
            )
        if not row[2]:
            raise Fenced(f"writer lease epoch {lease.epoch} of {lease.holder!r} expired; nothing committed")

    # --- releases -----------------------------------------------------------------------------

    def next_release(self, cluster: str) -> int:
        return self.next_releases([cluster])[cluster]

    def next_releases(self, clusters: Iterable[str]) -> dict[str, int]:
        """Each cluster's next counter (one per distinct cluster), ``ROWS_PER_STATEMENT`` clusters a statement."""
        wanted = list(dict.fromkeys(clusters))  # (an upsert may not touch one row twice)
        first = self.release_floor() + 1
        out: dict[str, int] = {}
        for part in chunks(wanted):
            rows, _ = self._run(
                f"INSERT INTO release_counters (cluster, last) VALUES {rows_of('(?, ?)', len(part))} "
                "ON CONFLICT (cluster) DO UPDATE SET last = release_counters.last + 1 RETURNING cluster, last",
                [v for cluster in part for v in (cluster, first)],
            )
            out.update((r[0], int(r[1])) for r in rows)
        return out

    def raise_release(self, cluster: str, release: int) -> None:
        self._run(
            "INSERT INTO release_counters (cluster, last) VALUES (?, ?) ON CONFLICT (cluster) DO UPDATE "
            "SET last = CASE WHEN release_counters.last < excluded.last THEN excluded.last "
            "ELSE release_counters.last END",
            (cluster, int(release)),
        )

    def last_release(self, cluster: str) -> int | None:
        row = self._one("SELECT last FROM release_counters WHERE cluster = ?", (cluster,))
        return None if row is None else int(row[0])

    def release_floor(self) -> int:
        if self._floor is None:
            self._floor = int(self.get_meta("release_floor") or 0)
        return self._floor

    # --- enrollment ---------------------------------------------------------------------------

    def redeem_token(self, token_id: str, expires: float, now: float) -> bool:
        self._run("DELETE FROM spent_tokens WHERE expires <= ?", (float(now),))
        _, count = self._run(
            "INSERT INTO spent_tokens (token_id, expires) VALUES (?, ?) ON CONFLICT (token_id) DO NOTHING",
            (token_id, float(expires)),
        )
        return count == 1

    def spent_tokens(self, now: float) -> dict[str, float]:
        rows, _ = self._run("SELECT token_id, expires FROM spent_tokens WHERE expires > ?", (float(now),))
        return {r[0]: float(r[1]) for r in rows}

    def revoke(self, kind: str, key: str, at: float) -> None:
        if kind not in ("cluster", "fingerprint"):
            raise ValueError(f"revocation kind must be cluster or fingerprint, not {kind!r}")
        self._run(
            "INSERT INTO revocations (kind, key, at) VALUES (?, ?, ?) ON CONFLICT (kind, key) DO UPDATE "
            "SET at = CASE WHEN revocations.at < excluded.at THEN excluded.at ELSE revocations.at END",
            (kind, key, float(at)),
        )
        self.changed("revocation", f"{kind}/{key}")

    def revocations(self) -> dict[str, dict[str, float]]:
        rows, _ = self._run("SELECT kind, key, at FROM revocations", ())
        out: dict[str, dict[str, float]] = {"clusters": {}, "fingerprints": {}}
        for kind, key, at in rows:
            out[kind + "s"][key] = float(at)
        return out

    def prune_revocations(self, before: float) -> int:
        _, count = self._run("DELETE FROM revocations WHERE at <= ?", (float(before),))
        return count

    # --- reports ------------------------------------------------------------------------------

    def put_report(self, cluster: str, generation: int, body: bytes) -> bool:
        return self.put_reports({cluster: (generation, body)}) == 1

    def put_reports(self, reports: Mapping[str, tuple[int, bytes]]) -> int:
        """``put_report`` of each cluster, many to a statement; how many were stored."""
        if not reports:
            return 0
        if self._report_seq is None:  # one number per transaction; its row lock orders them like commits
            self._report_seq = self._next("reports")
        stored = 0
        for part in chunks(list(reports.items())):
            _, count = self._run(
                f"INSERT INTO reports (cluster, generation, body, seq) VALUES {rows_of('(?, ?, ?, ?)', len(part))} "
                "ON CONFLICT (cluster) DO UPDATE SET generation = excluded.generation, body = excluded.body, "
                "seq = excluded.seq WHERE reports.generation < excluded.generation",
                [v for cluster, (gen, body) in part for v in (cluster, int(gen), bytes(body), self._report_seq)],
            )
            stored += count
        return stored

    def reports(self) -> list[Report]:
        rows, _ = self._run("SELECT cluster, generation, body FROM reports ORDER BY cluster", ())
        return [Report(r[0], int(r[1]), bytes(r[2])) for r in rows]

    def reports_since(self, seq: int, limit: int = MAX_PAGE) -> tuple[list[Report], int]:
        """Reports stored by transactions after ``seq``, and the position to ask from next time.

        Pages end on a transaction's boundary, so a position never splits one (a page may hold more
        than ``limit`` rows when one transaction stored more)."""
        rows, _ = self._run(
            "SELECT cluster, generation, body, seq FROM reports WHERE seq > ? AND seq <= "
            "(SELECT COALESCE(MAX(s), ?) FROM (SELECT seq AS s FROM reports WHERE seq > ? ORDER BY seq LIMIT ?) p) "
            "ORDER BY seq, cluster",
            (int(seq), int(seq), int(seq), min(int(limit), MAX_PAGE)),
        )
        last = max((int(r[3]) for r in rows), default=int(seq))
        return [Report(r[0], int(r[1]), bytes(r[2])) for r in rows], last

    # --- audit, records -----------------------------------------------------------------------

    def _next(self, name: str, count: int = 1) -> int:
        """Take the next ``count`` numbers of sequence ``name``; returns the last of them."""
        row = self._one("UPDATE sequences SET value = value + ? WHERE name = ? RETURNING value", (int(count), name))
        assert row is not None
        return int(row[0])

    def audit(self, doc: Mapping) -> int:
        seq = self._next("audit")
        self._run("INSERT INTO audit (seq, doc) VALUES (?, ?)", (seq, to_json(doc)))
        return seq

    def audit_entries(self, limit: int, after: int = 0) -> list[AuditEntry]:
        """The last ``limit`` entries after ``after``, oldest first."""
        rows, _ = self._run(
            "SELECT seq, doc FROM audit WHERE seq > ? ORDER BY seq DESC LIMIT ?",
            (int(after), min(int(limit), MAX_PAGE)),
        )
        return [AuditEntry(int(r[0]), json.loads(r[1])) for r in reversed(rows)]

    # --- meta ---------------------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE name = ?", (name,))
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        self._run(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, str(value)),
        )


class SqlState:
    """Shared logic of both backends (``HubState``); subclasses set ``dialect``, ``url`` and the hooks."""

    dialect: schema.Dialect
    url: str

    def _begin(self, write: bool) -> contextlib.AbstractContextManager[Run]:
        raise NotImplementedError

    def _notify(self, run: Run) -> None:
        """Wake other processes' ``wait_for_changes`` when this transaction commits."""

    # --- transactions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self, lease: Lease | None = None) -> Iterator[SqlTx]:
        with self._begin(True) as run:
            renews = lease is not None and lease.ttl > 0
            tx = SqlTx(_renewing(run, lease, self.dialect) if renews else run, self.dialect,
                       min(ALIVE_EVERY, lease.ttl * RENEW_INSIDE_AFTER) if renews else ALIVE_EVERY)
            if lease is not None:
                tx.fence(lease, lock=True)
            yield tx
            if lease is not None:
                tx.fence(lease, lock=False)  # a writer paused past its lease computed, but commits nothing
            if tx.notify:
                self._notify(run)

    @contextlib.contextmanager
    def read(self) -> Iterator[SqlTx]:
        with self._begin(False) as run:
            yield SqlTx(run, self.dialect)

    # --- schema -------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply the missing migrations; refuse a schema newer than this code. Returns the version."""
        with self._begin(True) as run:
            run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)", ())
        while True:
            with self._begin(True) as run:
                # Serialise concurrent starters: the version row is written in the same transaction.
                self._lock_schema(run)
                rows, _ = run("SELECT MAX(version) FROM schema_version", ())
                found = int(rows[0][0] or 0) if rows else 0
                schema.check_version(found, self.url)
                if found == schema.VERSION:
                    return found
                for statement in schema.statements(schema.MIGRATIONS[found], self.dialect):
                    run(statement, ())
                run("INSERT INTO schema_version (version) VALUES (?)", (found + 1,))

    def _lock_schema(self, run: Run) -> None:
        """Hold a lock so two processes never run the same migration (SQLite: BEGIN IMMEDIATE does)."""

    # --- the writer lease ---------------------------------------------------------------------

    def acquire_lease(self, holder: str, ttl: float) -> Lease | None:
        d = self.dialect
        with self._begin(True) as run:
            rows, _ = run(
                f"SELECT holder, epoch, expires > {d.now} FROM writer_lease WHERE name = ?" + d.lock_update,
                (LEASE_NAME,),
            )
            current, epoch, live = rows[0]
            if live and current != holder:
                return None
            rows, _ = run(
                f"UPDATE writer_lease SET holder = ?, epoch = epoch + 1, expires = {d.now} + ? "
                "WHERE name = ? RETURNING epoch, expires",
                (holder, float(ttl), LEASE_NAME),
            )
            return Lease(holder=holder, epoch=int(rows[0][0]), expires=float(rows[0][1]), ttl=float(ttl))

    def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        d = self.dialect
        with self._begin(True) as run:
            rows, _ = run(
                f"UPDATE writer_lease SET expires = {d.now} + ? WHERE name = ? AND holder = ? AND epoch = ? "
                f"AND expires > {d.now} RETURNING expires",
                (float(ttl), LEASE_NAME, lease.holder, lease.epoch),
            )
        if not rows:
            raise Fenced(f"writer lease epoch {lease.epoch} of {lease.holder!r} was lost before its renewal")
        return Lease(holder=lease.holder, epoch=lease.epoch, expires=float(rows[0][0]), ttl=float(ttl))

    def current_lease(self) -> Lease | None:
        """The live writer lease as the database holds it (None if nobody holds one)."""
        with self._begin(False) as run:
            rows, _ = run(
                f"SELECT holder, epoch, expires FROM writer_lease WHERE name = ? AND expires > {self.dialect.now}",
                (LEASE_NAME,),
            )
        return Lease(holder=rows[0][0], epoch=int(rows[0][1]), expires=float(rows[0][2])) if rows else None

    def release_lease(self, lease: Lease) -> None:
        with self._begin(True) as run:
            run(
                "UPDATE writer_lease SET expires = 0 WHERE name = ? AND holder = ? AND epoch = ?",
                (LEASE_NAME, lease.holder, lease.epoch),
            )
