"""One contract suite, two backends: every test taking ``backend`` runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import pytest

from skerry.testing.postgres import postgres_dsn, postgres_server, private_server  # noqa: F401 - fixtures


class Backend:
    """Opens handles on one database, as separate hub processes would (each its own connections)."""

    def __init__(self, name: str, open_one):
        self.name = name
        self._open_one = open_one
        self.opened = []

    def open(self):
        state = self._open_one()
        self.opened.append(state)
        return state

    def close_all(self):
        for state in self.opened:
            state.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    from skerry.hub.state import open_state

    if request.param == "sqlite":
        b = Backend("sqlite", lambda: open_state(f"sqlite:///{tmp_path / 'hub.db'}", state_dir=tmp_path))
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        b = Backend("postgresql", lambda: open_state("postgresql", state_dir=tmp_path, dsn=dsn))
        b.dsn = dsn
    yield b
    b.close_all()


@pytest.fixture
def database():
    """A PostgreSQL server of the test's own (the outage tests stop it mid-test), with one fresh database."""
    with private_server("skerry-pg-outage-") as server:
        yield server, server.create_database()
