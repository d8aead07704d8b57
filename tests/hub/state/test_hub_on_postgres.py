"""The hub itself on a real PostgreSQL: the same wiring as SQLite, a DSN from a file, the writer lease held."""

from __future__ import annotations

import dataclasses

from skerry.core.tls import ROLE_HUB
from skerry.hub.app import HubApp
from skerry.hub.config import HubConfig


async def test_a_hub_on_postgresql_releases_from_the_database_and_a_restart_continues(
    fleet_repo, tmp_path, pki, engine, postgres_dsn, dev_trust
):
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(postgres_dsn + "\n")
    cfg = HubConfig(
        repo=str(fleet_repo.path), interval=3600, tls=pki.server("hub", ROLE_HUB), state_dir=tmp_path / "state",
        listen="127.0.0.1:0", state="postgresql", state_dsn_file=dsn_file, hub_id="hub-a",
        trust_dir=dev_trust.dir, release_keys=dev_trust.release_keys,
    )
    first = HubApp(cfg, engine=engine)
    await first.start()
    try:
        before = first.store.current("oslo-prod")
        assert first.writer.is_writer
        with first.state.read() as tx:
            assert tx.last_release("oslo-prod") == before.release
    finally:
        await first.stop(grace=0)
    assert not (cfg.state_dir / "hub.db").exists()  # nothing went to SQLite
    second = HubApp(dataclasses.replace(cfg, hub_id="hub-b"), engine=engine)
    await second.start()  # hub-a released its lease on stop: hub-b takes over at once, a new epoch
    try:
        assert second.writer.lease.epoch == 2
        assert second.store.current("oslo-prod").release == before.release  # the state names it: not re-released
        with second.state.read() as tx:
            assert tx.last_release("oslo-prod") == before.release  # an unchanged re-render moves no counter
    finally:
        await second.stop(grace=0)
