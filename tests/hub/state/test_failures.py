"""What the hub state does when the database is wrong, unreachable, newer, or goes away: one clear line."""

from __future__ import annotations

import time

import psycopg
import pytest

from skerry.core.errors import ConfigError
from skerry.hub.state import SchemaTooNew, StateUnavailable, check_spec, open_state
from skerry.hub.state.feed import ChangeFeed
from skerry.hub.state.postgres import LISTEN_APPLICATION_NAME, PostgresState
from skerry.hub.state.schema import VERSION

DEADLINE = 20.0


def one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and text.strip() == text, text
    return text


def test_a_schema_newer_than_the_code_is_refused(backend):
    state = backend.open()
    with state.write() as tx:
        tx._run("INSERT INTO schema_version (version) VALUES (?)", (VERSION + 1,))
    with pytest.raises(SchemaTooNew) as e:
        backend.open()
    assert f"schema version {VERSION + 1} is newer than this hub understands ({VERSION})" in one_line(e.value)


def test_opening_twice_migrates_once_and_keeps_the_data(backend):
    a = backend.open()
    with a.write() as tx:
        tx.put_record("approval", "k", {"v": 1})
    b = backend.open()
    with b.read() as tx:
        assert tx.records("approval") == {"k": {"v": 1}}
        versions = tx._run("SELECT version FROM schema_version ORDER BY version", ())[0]
    assert [v[0] for v in versions] == list(range(1, VERSION + 1))


def test_a_dsn_on_the_command_line_or_a_bad_spec_is_refused():
    with pytest.raises(ConfigError, match="never on the command line"):
        check_spec("postgresql://skerry:s3cret@db/hub")
    with pytest.raises(ConfigError, match="is not sqlite:///PATH or postgresql"):
        check_spec("mysql://db")
    assert check_spec("postgresql://") == check_spec("postgresql") == "postgresql"
    with pytest.raises(ConfigError, match="needs a DSN"):
        open_state("postgresql", state_dir="/nonexistent")


def test_an_unwritable_sqlite_path_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StateUnavailable) as e:
        open_state(f"sqlite:///{tmp_path / 'file' / 'hub.db'}", state_dir=tmp_path)
    assert one_line(e.value).startswith(f"hub state sqlite:///{tmp_path / 'file' / 'hub.db'}: cannot open")


def test_unreachable_or_wrong_postgres_dsn_is_one_line_without_the_password(postgres_server, tmp_path):
    from skerry.testing.postgres import free_port

    port = free_port()
    with pytest.raises(StateUnavailable) as e:
        open_state("postgresql", state_dir=tmp_path, dsn=f"postgresql://skerry:s3cret@127.0.0.1:{port}/hub")
    text = one_line(e.value)
    assert text.startswith(f"hub state postgresql://127.0.0.1:{port}/hub: cannot connect:") and "s3cret" not in text
    dsn = postgres_server.dsn("no_such_db").replace("skerry@", "skerry:s3cret@")
    with pytest.raises(StateUnavailable) as e:
        open_state("postgresql", state_dir=tmp_path, dsn=dsn)
    text = one_line(e.value)
    assert 'database "no_such_db" does not exist' in text and "s3cret" not in text


def test_a_database_that_disappears_mid_run_is_one_line(postgres_server, tmp_path):
    dsn = postgres_server.create_database("vanishing")
    state = PostgresState(dsn, pool_timeout=2.0)  # the default rides out a 30 s outage
    try:
        with state.write() as tx:
            tx.put_record("approval", "k", {"v": 1})
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
            admin.execute('DROP DATABASE "vanishing" WITH (FORCE)')
        with pytest.raises(StateUnavailable) as e:
            with state.read() as tx:
                tx.records("approval")
        text = one_line(e.value)
        assert text.startswith(f"hub state postgresql://127.0.0.1:{postgres_server.port}/vanishing: ")
        assert 'database "vanishing" does not exist' in text
    finally:
        state.close()


def test_a_killed_listen_connection_loses_no_change(postgres_dsn, tmp_path):
    writer = open_state("postgresql", state_dir=tmp_path, dsn=postgres_dsn)
    follower = open_state("postgresql", state_dir=tmp_path, dsn=postgres_dsn)
    try:
        feed = ChangeFeed(follower)
        follower.wait_for_changes(0)  # connects the listener
        with writer.write() as tx:
            tx.put_record("promotion", "before", {})
        assert [c.key for c in feed.wait(DEADLINE)] == ["before"]  # woken by the NOTIFY
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (LISTEN_APPLICATION_NAME,),
            ).fetchall()
            assert killed == [(True,)]
            # Changes committed while the listener is gone: their NOTIFYs reach nobody.
            with writer.write() as tx:
                tx.put_record("promotion", "during-1", {})
                tx.revoke("cluster", "oslo", 1e9)
            seen = []
            end = time.monotonic() + DEADLINE
            while len(seen) < 2 and time.monotonic() < end:
                seen += feed.wait(1.0)
            assert [c.key for c in seen] == ["during-1", "cluster/oslo"]
            # and the listener is back: the next change wakes it without waiting out the interval
            with writer.write() as tx:
                tx.put_record("promotion", "after", {})
            start = time.monotonic()
            got = []
            while not got and time.monotonic() - start < DEADLINE:
                got = feed.wait(DEADLINE)
            assert [c.key for c in got] == ["after"] and time.monotonic() - start < DEADLINE / 2
            relisten = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (LISTEN_APPLICATION_NAME,)
            ).fetchone()
            assert relisten == (1,)
    finally:
        writer.close()
        follower.close()


def test_hub_config_takes_the_dsn_from_a_file_or_the_environment_and_never_shows_it(tmp_path):
    from skerry.hub.config import HubConfig

    with pytest.raises(ConfigError, match="postgresql needs a DSN"):
        HubConfig(repo="/srv/fleet", state="postgresql")
    with pytest.raises(ConfigError, match="never on the command line"):
        HubConfig.from_env({}, repo="/srv/fleet", state="postgresql://skerry:s3cret@db/hub")
    cfg = HubConfig.from_env(
        {"SKERRY_HUB_STATE": "postgresql", "SKERRY_HUB_STATE_DSN": "postgresql://skerry:s3cret@db/hub"},
        repo="/srv/fleet",
    )
    assert cfg.state == "postgresql" and cfg.state_dsn.endswith("@db/hub") and "s3cret" not in repr(cfg)
    from_file = HubConfig.from_env({}, repo="/srv/fleet", state="postgresql", state_dsn_file=str(tmp_path / "dsn"))
    assert from_file.state_dsn_file == tmp_path / "dsn"
    assert HubConfig(repo="/srv/fleet").state == ""  # the default: SQLite under the state dir
