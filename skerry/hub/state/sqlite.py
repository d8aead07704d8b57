"""The default hub state: one SQLite file (standard library ``sqlite3``) in WAL mode under the state dir.

A single hub needs no database server: ``<state dir>/hub.db`` holds the same
schema PostgreSQL does (``skerry.hub.state.schema``). WAL lets readers run
while the writer commits; ``synchronous=FULL`` makes every commit durable
(a spent token or an audit entry that a crash forgets is one that never
happened). Each write transaction is ``BEGIN IMMEDIATE``: it takes the file's
one write lock first, so fencing and takeovers are ordered as on PostgreSQL
(``skerry.hub.state.sql``). Several processes may open the same file on one
host (a CLI next to the hub); replicas on several hosts need PostgreSQL.
There is no notification channel: ``wait_for_changes`` polls the file's
``data_version``.

A file that is not a SQLite database, or one whose pages are damaged (truncated, overwritten: SQLite's
``quick_check`` at open, since a damaged page the start does not read would otherwise be met hours later;
it reads every page once: 0.8 s for a 200 MB file), is
refused with reason ``StateCorrupt`` and never replaced: it holds spent tokens, the release counters and
the audit. An *empty* file is refused too: SQLite writes the first page the moment a new database is
opened (WAL mode), so an empty ``hub.db`` was truncated, unless another process is creating it this very
moment (a CLI next to the hub): it is looked at again ``EMPTY_GRACE_SECONDS`` later before it is refused.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from skerry.core.files import DISK_FULL, STATE_CORRUPT
from skerry.hub.state import schema
from skerry.hub.state.protocol import StateUnavailable
from skerry.hub.state.sql import Run, SqlState

FILE_NAME = "hub.db"
# How long a write waits for another connection's write transaction (a takeover waits for the
# previous writer's in-flight transaction); past this the database is considered stuck.
BUSY_TIMEOUT_MS = 60_000
# How often ``wait_for_changes`` looks whether another connection committed.
POLL_SECONDS = 0.05
# SQLite's (primary) result codes for a file that is not a database or whose pages are damaged.
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# An empty database file is looked at again after this long: a process creating it writes its first page
# within milliseconds of creating the file; one still empty after a second was truncated.
EMPTY_GRACE_SECONDS = 1.0
# What of SQLite's description of the damage goes into the one error line.
MAX_DAMAGE_CHARS = 200


class SqliteState(SqlState):
    dialect = schema.SQLITE

    def __init__(self, path: pathlib.Path):
        self.path = pathlib.Path(path)
        self.url = f"sqlite:///{self.path}"
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if _empty(self.path):
                raise StateUnavailable(
                    f"hub state {self.path}: the file is empty (truncated): restore it from a backup; "
                    "a new state would forget spent tokens, release counters and the audit", reason=STATE_CORRUPT)
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            damage = self._conn.execute("PRAGMA quick_check(1)").fetchone()
        except (OSError, sqlite3.Error) as e:
            raise StateUnavailable(f"hub state {self.url}: cannot open: {e}", reason=_reason(e)) from e
        if damage != ("ok",):
            self._conn.close()
            found = str(damage[0] if damage else "no answer")[:MAX_DAMAGE_CHARS]
            raise StateUnavailable(f"hub state {self.url}: the database is damaged ({found}): restore it from a backup",
                                   reason=STATE_CORRUPT)
        self._data_version = self._version()
        self.migrate()

    def _version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    @contextlib.contextmanager
    def _begin(self, write: bool) -> Iterator[Run]:
        def run(sql: str, params: Sequence[Any]) -> tuple[list[tuple], int]:
            try:
                cur = self._conn.execute(sql, tuple(params))
                return cur.fetchall(), cur.rowcount
            except sqlite3.IntegrityError:
                raise  # a bug in a query, not an unavailable database
            except sqlite3.Error as e:
                raise StateUnavailable(f"hub state {self.url}: {e}", reason=_reason(e)) from e

        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as e:
                raise StateUnavailable(f"hub state {self.url}: cannot begin a transaction: {e}", reason=_reason(e)) from e
            try:
                yield run
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StateUnavailable(f"hub state {self.url}: commit failed: {e}", reason=_reason(e)) from e

    def wait_for_changes(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            version = self._version()
            if version != self._data_version:
                self._data_version = version
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(POLL_SECONDS, left))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _empty(path: pathlib.Path) -> bool:
    """Whether ``path`` is an empty file, and still is ``EMPTY_GRACE_SECONDS`` later."""
    if not path.is_file() or path.stat().st_size > 0:
        return False
    time.sleep(EMPTY_GRACE_SECONDS)
    return path.is_file() and path.stat().st_size == 0


def _reason(error: BaseException) -> str:
    """``DiskFull`` when SQLite could not grow the database or its journal, ``StateCorrupt`` when the file is
    not a database or its pages are damaged, else ``StateUnavailable``."""
    code = getattr(error, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return DISK_FULL
    if code is not None and code & 0xFF in _CORRUPT_CODES:  # extended codes keep the primary in the low byte
        return STATE_CORRUPT
    return StateUnavailable.reason
