"""The one implementation of the state protocol in SQL; the backends only open connections and transactions.

``SqlState`` holds everything both backends share: migrations, the writer
lease, fencing, and ``SqlTx`` (every query, written once with ``?``
placeholders and ``Dialect`` spellings). A backend supplies ``_begin(write)``,
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
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from skerry.hub.state import schema
from skerry.hub.state.protocol import AuditEntry, Change, Fenced, Lease, Report

Run = Callable[[str, Sequence[Any]], tuple[list[tuple], int]]

LEASE_NAME = "writer"
# The change log keeps this many entries; a replica further behind reloads everything.
MAX_CHANGES = 100_000
# Pruning runs on every this-many-th change, so it costs one DELETE per batch, not per row.
PRUNE_EVERY = 1_000
# Bounds on what one call returns (callers page with ``after``).
MAX_PAGE = 10_000
# TUF roles whose every stored version is kept: a client walks the root chain from the root it holds;
# ``timestamp.json`` is one row, rewritten in place.
KEEP_EVERY_VERSION = ("root", "timestamp")


def _json(doc: Mapping) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


class SqlTx:
    """One transaction (``skerry.hub.state.protocol.Tx``)."""

    def __init__(self, run: Run, dialect: schema.Dialect):
        self._run = run
        self._d = dialect
        self.notify = False

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
        row = self._one(
            "INSERT INTO release_counters (cluster, last) "
            "VALUES (?, (SELECT CAST(value AS BIGINT) FROM meta WHERE name = 'release_floor') + 1) "
            "ON CONFLICT (cluster) DO UPDATE SET last = release_counters.last + 1 RETURNING last",
            (cluster,),
        )
        assert row is not None
        return int(row[0])

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
        _, count = self._run(
            "INSERT INTO reports (cluster, generation, body) VALUES (?, ?, ?) ON CONFLICT (cluster) DO UPDATE "
            "SET generation = excluded.generation, body = excluded.body "
            "WHERE reports.generation < excluded.generation",
            (cluster, int(generation), bytes(body)),
        )
        return count == 1

    def reports(self) -> list[Report]:
        rows, _ = self._run("SELECT cluster, generation, body FROM reports ORDER BY cluster", ())
        return [Report(r[0], int(r[1]), bytes(r[2])) for r in rows]

    # --- signed reports (``skerry.hub.trust.attest``) -----------------------------------------

    def issue_nonce(self, cluster: str, nonce: str, issued: float, *, keep: int, expired: float) -> int:
        """Open ``nonce`` for ``cluster`` with the cluster's next counter; only the newest ``keep`` stay open,
        and none issued at or before ``expired``. Returns the counter."""
        row = self._one(
            "INSERT INTO nonce_counters (cluster, last) VALUES (?, 1) "
            "ON CONFLICT (cluster) DO UPDATE SET last = nonce_counters.last + 1 RETURNING last",
            (cluster,),
        )
        assert row is not None
        counter = int(row[0])
        self._run("INSERT INTO nonces (cluster, nonce, counter, issued) VALUES (?, ?, ?, ?)",
                  (cluster, nonce, counter, float(issued)))
        self._run("DELETE FROM nonces WHERE cluster = ? AND (counter <= ? OR issued <= ?)",
                  (cluster, counter - int(keep), float(expired)))
        return counter

    def spend_nonce(self, cluster: str, nonce: str) -> tuple[int, float] | None:
        """Take ``nonce`` out of ``cluster``'s open nonces: ``(counter, issued)``, or None if it is not open
        (never issued, spent before, or dropped). Two replicas spending one nonce at once: one gets it."""
        row = self._one("DELETE FROM nonces WHERE cluster = ? AND nonce = ? RETURNING counter, issued",
                        (cluster, nonce))
        return None if row is None else (int(row[0]), float(row[1]))

    def put_attestation(self, cluster: str, counter: int, received: float, data: bytes, signature: bytes,
                        certificate: bytes) -> bool:
        """Keep the signed report unless one with a counter >= ``counter`` is kept; True if kept."""
        _, count = self._run(
            "INSERT INTO attestations (cluster, counter, received, data, signature, certificate) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (cluster) DO UPDATE SET counter = excluded.counter, "
            "received = excluded.received, data = excluded.data, signature = excluded.signature, "
            "certificate = excluded.certificate WHERE attestations.counter < excluded.counter",
            (cluster, int(counter), float(received), bytes(data), bytes(signature), bytes(certificate)),
        )
        return count == 1

    def attestation(self, cluster: str) -> tuple[int, float, bytes, bytes, bytes] | None:
        """``(counter, received, data, signature, certificate)`` of the cluster's kept signed report."""
        row = self._one("SELECT counter, received, data, signature, certificate FROM attestations WHERE cluster = ?",
                        (cluster,))
        return None if row is None else (int(row[0]), float(row[1]), bytes(row[2]), bytes(row[3]), bytes(row[4]))

    # --- audit, records -----------------------------------------------------------------------

    def _next(self, name: str) -> int:
        row = self._one("UPDATE sequences SET value = value + 1 WHERE name = ? RETURNING value", (name,))
        assert row is not None
        return int(row[0])

    def audit(self, doc: Mapping) -> int:
        seq = self._next("audit")
        self._run("INSERT INTO audit (seq, doc) VALUES (?, ?)", (seq, _json(doc)))
        return seq

    def audit_entries(self, limit: int, after: int = 0) -> list[AuditEntry]:
        """The last ``limit`` entries after ``after``, oldest first."""
        rows, _ = self._run(
            "SELECT seq, doc FROM audit WHERE seq > ? ORDER BY seq DESC LIMIT ?",
            (int(after), min(int(limit), MAX_PAGE)),
        )
        return [AuditEntry(int(r[0]), json.loads(r[1])) for r in reversed(rows)]

    def put_record(self, kind: str, key: str, doc: Mapping | None) -> None:
        if doc is None:
            self._run("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))
        else:
            self._run(
                "INSERT INTO records (kind, key, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc",
                (kind, key, _json(doc)),
            )
        self.changed(kind, key)

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

    # --- change log ---------------------------------------------------------------------------

    def changed(self, kind: str, key: str) -> int:
        # The sequence row stays locked until commit, so sequence order is commit order: a reader
        # that saw N never later finds a smaller number committed (no gap to skip over).
        seq = self._next("changes")
        self._run(f"INSERT INTO changes (seq, kind, key, at) VALUES (?, ?, ?, {self._d.now})", (seq, kind, key))
        if seq % PRUNE_EVERY == 0:
            self._run("DELETE FROM changes WHERE seq <= ?", (seq - MAX_CHANGES,))
        self.notify = True
        return seq

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

    # --- the TUF repository -------------------------------------------------------------------

    def put_trust_file(self, name: str, role: str, version: int, data: bytes) -> None:
        """Store one metadata file; a name is never rewritten except by a newer version (``timestamp.json``)."""
        self._run(
            "INSERT INTO trust_files (name, role, version, data) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET role = excluded.role, version = excluded.version, data = excluded.data "
            "WHERE trust_files.version < excluded.version",
            (name, role, int(version), bytes(data)),
        )

    def trust_file(self, name: str) -> bytes | None:
        row = self._one("SELECT data FROM trust_files WHERE name = ?", (name,))
        return None if row is None else bytes(row[0])

    def trust_newest(self) -> dict[str, tuple[int, bytes]]:
        """Each role's newest stored version: ``{role: (version, bytes)}``."""
        rows, _ = self._run(
            "SELECT t.role, t.version, t.data FROM trust_files t JOIN (SELECT role, MAX(version) AS v FROM "
            "trust_files GROUP BY role) m ON t.role = m.role AND t.version = m.v",
            (),
        )
        return {r[0]: (int(r[1]), bytes(r[2])) for r in rows}

    def drop_trust_versions(self, role: str, below: int) -> int:
        """Remove ``role``'s stored versions below ``below`` (root and the timestamp keep theirs)."""
        if role in KEEP_EVERY_VERSION:
            return 0
        _, count = self._run("DELETE FROM trust_files WHERE role = ? AND version < ?", (role, int(below)))
        return count

    def collect_trust_versions(self) -> int:
        """Remove every version older than the previous one of each role (root and the timestamp excepted)."""
        kept = ", ".join("?" for _ in KEEP_EVERY_VERSION)
        _, count = self._run(
            f"DELETE FROM trust_files WHERE role NOT IN ({kept}) AND version < "
            "(SELECT MAX(m.version) FROM trust_files m WHERE m.role = trust_files.role) - 1",
            KEEP_EVERY_VERSION,
        )
        return count

    def put_blob(self, hexdigest: str, data: bytes) -> None:
        self._run("INSERT INTO blobs (digest, data) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING",
                  (hexdigest, bytes(data)))

    def blob(self, hexdigest: str) -> bytes | None:
        row = self._one("SELECT data FROM blobs WHERE digest = ?", (hexdigest,))
        return None if row is None else bytes(row[0])

    def drop_blobs(self, digests: Sequence[str]) -> int:
        return sum(self._run("DELETE FROM blobs WHERE digest = ?", (d,))[1] for d in digests)

    def blob_digests(self, after: str = "", limit: int = MAX_PAGE) -> list[str]:
        """Stored blob digests in order, after ``after`` (callers page)."""
        rows, _ = self._run("SELECT digest FROM blobs WHERE digest > ? ORDER BY digest LIMIT ?",
                            (after, min(int(limit), MAX_PAGE)))
        return [r[0] for r in rows]

    def trust_usage(self) -> dict[str, tuple[int, int]]:
        """Rows and payload bytes of the TUF tables: ``{"trust_files": (rows, bytes), "blobs": (rows, bytes)}``."""
        out = {}
        for table in ("trust_files", "blobs"):
            row = self._one(f"SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM {table}", ())
            out[table] = (int(row[0]), int(row[1])) if row else (0, 0)
        return out

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
            tx = SqlTx(run, self.dialect)
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
            return Lease(holder=holder, epoch=int(rows[0][0]), expires=float(rows[0][1]))

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
        return Lease(holder=lease.holder, epoch=lease.epoch, expires=float(rows[0][0]))

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
