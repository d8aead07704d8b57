"""Everything the hub must not forget, in one database: SQLite by default, PostgreSQL for replicas.

``open_state`` picks the backend from ``--state``: empty (``<state dir>/hub.db``),
``sqlite:///PATH`` (``sqlite:////abs/path``), or ``postgresql`` (the DSN itself from ``--state-dsn-file``
or ``SKERRY_HUB_STATE_DSN``: a DSN holds a password, and a command line is
visible to every user of the host). ``protocol`` says what the state holds,
``schema`` how it is laid out and migrated, ``sql`` the one implementation
(``sql_records`` its queries of records and the change log, many rows to a
statement; ``sql_trust`` its queries of the trust tables),
``sqlite``/``postgres`` the connections, ``feed`` how replicas follow changes,
``trust_files`` the TUF repository's files and pending release signatures,
``imports`` how the first start after an upgrade takes in the files older hubs wrote,
``threads`` where the hub's blocking state calls run (its writes; agents' calls): threads of their own, bounded.
"""

from __future__ import annotations

import pathlib

from skerry.core.errors import ConfigError
from skerry.hub.state.protocol import (
    Change,
    Fenced,
    HubState,
    Lease,
    SchemaTooNew,
    StateUnavailable,
    Tx,
)

__all__ = [
    "Change", "Fenced", "HubState", "Lease", "SchemaTooNew", "StateUnavailable", "Tx", "open_state", "check_spec",
]

POSTGRES_SCHEMES = ("postgresql", "postgres")


def check_spec(spec: str | None) -> str:
    """``spec`` if it names a backend without carrying a DSN; ``ConfigError`` (one line) otherwise."""
    spec = (spec or "").strip()
    if not spec or spec.startswith("sqlite:///"):
        return spec
    scheme, _, rest = spec.partition(":")
    if scheme in POSTGRES_SCHEMES:
        if rest.strip("/"):
            raise ConfigError(
                "state: give only 'postgresql' here; put the DSN in a file (--state-dsn-file) or in "
                "SKERRY_HUB_STATE_DSN, never on the command line"
            )
        return "postgresql"
    raise ConfigError(f"state: {spec!r} is not sqlite:///PATH or postgresql")


def open_state(spec: str | None, *, state_dir: pathlib.Path, dsn: str | None = None) -> HubState:
    """Open (and migrate) the hub state ``spec`` names; see the module docstring."""
    spec = check_spec(spec)
    if spec == "postgresql":
        if not dsn:
            raise ConfigError("state: postgresql needs a DSN (--state-dsn-file FILE or SKERRY_HUB_STATE_DSN)")
        from skerry.hub.state.postgres import PostgresState  # psycopg is needed only by replicas

        return PostgresState(dsn)
    from skerry.hub.state.sqlite import FILE_NAME, SqliteState

    # SQLAlchemy's spelling: sqlite:///relative/hub.db, sqlite:////absolute/hub.db
    path = pathlib.Path(spec[len("sqlite:///"):]) if spec else pathlib.Path(state_dir) / FILE_NAME
    return SqliteState(path)
