"""Hub state in PostgreSQL, for hub replicas: psycopg 3 with its connection pool. The only psycopg importer.

The DSN comes from a file or an environment variable (``skerry.hub.state.open_state``),
never the command line, and never appears in a message: ``url`` keeps
scheme, host, port and database only.

Connections: a pool for transactions (each checked on checkout, so a
restarted server costs one failed check, not a failed write), plus one
dedicated autocommit connection that ``LISTEN``s for change wake-ups
(psycopg's ``notifies()`` needs its own connection; LISTEN does not work
through PgBouncer's transaction pooling, so point the hub at the server or a
session-pooling bouncer). A NOTIFY carries no payload and is sent once per
transaction that logged changes (a NOTIFYing commit takes a global lock).
NOTIFY is not replayed to a listener that was disconnected: the caller
re-reads the change log by sequence number after every wake-up and every
timeout, and ``wait_for_changes`` returns at once after it had to reconnect,
so a lost notification delays a change by at most one poll and loses nothing.

Every connection runs with ``idle_in_transaction_session_timeout``: a writer
stopped (SIGSTOP, a VM pause) inside a transaction would otherwise hold the
lease row's share lock, and with it every takeover, for as long as its TCP
connection lives.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from skerry.hub.state import schema
from skerry.hub.state.protocol import StateUnavailable
from skerry.hub.state.sql import Run, SqlState

CHANNEL = "skerry_hub_changes"
# Connecting is a local-network round trip; a DSN that does not answer in this long is unreachable.
CONNECT_TIMEOUT = 10
# A checkout waits this long for a pooled connection before the database counts as unavailable.
POOL_TIMEOUT = 30.0
POOL_MIN, POOL_MAX = 1, 8
# Longest a session may sit idle inside a transaction (ms): bounds how long a stopped writer can
# hold up a takeover. Far above any real transaction of the hub.
IDLE_IN_TRANSACTION_MS = 30_000
# Writes whose lock waits outlive this are given up (ms): a takeover waiting for the old writer's
# transaction waits at most this long, and the old writer's session dies sooner (above).
LOCK_TIMEOUT_MS = 60_000
APPLICATION_NAME = "skerry-hub"
LISTEN_APPLICATION_NAME = "skerry-hub-listen"


def redact(dsn: str) -> str:
    """``postgresql://host:port/db``: what may appear in a message (no user, password or options)."""
    try:
        parts = urllib.parse.urlsplit(dsn)
        if parts.scheme in ("postgresql", "postgres") and parts.hostname:
            port = f":{parts.port}" if parts.port else ""
            return f"postgresql://{parts.hostname}{port}{parts.path}"
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        return f"postgresql://{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
    except (ValueError, psycopg.Error):
        return "postgresql://(unparsable DSN)"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class PostgresState(SqlState):
    dialect = schema.POSTGRES

    def __init__(self, dsn: str, *, pool_max: int = POOL_MAX, pool_timeout: float = POOL_TIMEOUT):
        self.url = redact(dsn)
        self._dsn = dsn
        self._pool_timeout = pool_timeout
        self._kwargs = {
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": APPLICATION_NAME,
            "options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS} "
            f"-c lock_timeout={LOCK_TIMEOUT_MS}",
        }
        # One direct connection first: its error says why (refused, no such database, bad password),
        # where a pool would only time out.
        self._probe()
        self._pool = psycopg_pool.ConnectionPool(
            dsn, min_size=POOL_MIN, max_size=max(POOL_MIN, pool_max), kwargs=self._kwargs,
            check=psycopg_pool.ConnectionPool.check_connection, open=False, name="skerry-hub-state",
        )
        try:
            self._pool.open(wait=True, timeout=pool_timeout)
        except psycopg_pool.PoolTimeout as e:
            raise StateUnavailable(f"hub state {self.url}: cannot open a connection pool: {e}") from e
        self._listen_lock = threading.Lock()
        self._listener: psycopg.Connection | None = None
        self.migrate()

    def _probe(self) -> None:
        """Connect once outside the pool; raise ``StateUnavailable`` with the server's reason if that fails."""
        try:
            psycopg.connect(self._dsn, **self._kwargs).close()
        except psycopg.Error as e:
            raise StateUnavailable(f"hub state {self.url}: cannot connect: {_first_line(e)}") from e

    @contextlib.contextmanager
    def _begin(self, write: bool) -> Iterator[Run]:
        def run(sql: str, params: Sequence[Any]) -> tuple[list[tuple], int]:
            cur = conn.execute(sql.replace("?", "%s"), tuple(params))
            return (cur.fetchall() if cur.description else []), cur.rowcount

        try:
            with self._pool.connection(timeout=self._pool_timeout) as conn:
                with conn.transaction():
                    if not write:
                        conn.execute("SET TRANSACTION READ ONLY")
                    yield run
        except (pg_errors.IntegrityError, pg_errors.ProgrammingError, pg_errors.DataError):
            raise  # a bug in a query, not an unavailable database
        except psycopg_pool.PoolTimeout as e:  # (an OperationalError too: this clause first)
            self._probe()  # names the reason when the server says one
            raise StateUnavailable(f"hub state {self.url}: no connection within {self._pool_timeout:.0f}s") from e
        except psycopg.Error as e:
            raise StateUnavailable(f"hub state {self.url}: {_first_line(e)}") from e

    def _lock_schema(self, run: Run) -> None:
        run("LOCK TABLE schema_version IN EXCLUSIVE MODE", ())

    def _notify(self, run: Run) -> None:
        run("SELECT pg_notify(?, '')", (CHANNEL,))

    # --- wake-ups -----------------------------------------------------------------------------

    def _listen(self) -> psycopg.Connection:
        conn = psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT, application_name=LISTEN_APPLICATION_NAME
        )
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def wait_for_changes(self, timeout: float) -> None:
        """Return on a NOTIFY, after ``timeout``, or at once after (re)connecting the listener."""
        with self._listen_lock:
            if self._listener is None or self._listener.closed:
                try:
                    self._listener = self._listen()
                except psycopg.Error as e:
                    raise StateUnavailable(f"hub state {self.url}: cannot listen: {_first_line(e)}") from e
                return  # anything may have happened while we were not listening: re-read now
            listener = self._listener
        try:
            for _ in listener.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.OperationalError:
            with contextlib.suppress(psycopg.Error):
                listener.close()

    def close(self) -> None:
        with self._listen_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self._pool.close()
