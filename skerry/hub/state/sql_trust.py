"""``SqlTx``'s queries of the trust tables: the TUF repository's files and blobs, signed-report nonces and
the newest signed report per cluster (tables in ``skerry.hub.state.schema``). A mixin: ``SqlTx`` gives it
``_run`` and ``_one``, and the one connection and transaction they run in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# TUF roles whose every stored version is kept: a client walks the root chain from the root it holds;
# ``timestamp.json`` is one row, rewritten in place.
KEEP_EVERY_VERSION = ("root", "timestamp")
# Bound on the digests one ``blob_digests`` call returns (callers page with ``after``).
MAX_DIGESTS = 10_000


class TrustQueries:
    _run: Callable[[str, Sequence[Any]], tuple[list[tuple], int]]
    _one: Callable[..., tuple | None]

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

    def blob_digests(self, after: str = "", limit: int = MAX_DIGESTS) -> list[str]:
        """Stored blob digests in order, after ``after`` (callers page)."""
        rows, _ = self._run("SELECT digest FROM blobs WHERE digest > ? ORDER BY digest LIMIT ?",
                            (after, min(int(limit), MAX_DIGESTS)))
        return [r[0] for r in rows]

    def trust_usage(self) -> dict[str, tuple[int, int]]:
        """Rows and payload bytes of the TUF tables: ``{"trust_files": (rows, bytes), "blobs": (rows, bytes)}``."""
        out = {}
        for table in ("trust_files", "blobs"):
            row = self._one(f"SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM {table}", ())
            out[table] = (int(row[0]), int(row[1])) if row else (0, 0)
        return out

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
