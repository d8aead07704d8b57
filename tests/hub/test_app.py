"""HubApp: key handling, the ready file, restarts, and refusing to serve without mutual TLS."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat

import pytest

from skerry.core.clock import FixedClock
from skerry.core.errors import ConfigError
from skerry.core.tls import ROLE_HUB
from skerry.hub.app import HubApp, load_or_create_signing_key
from skerry.hub.config import HubConfig


def config(fleet_repo, tmp_path, pki, **kw) -> HubConfig:
    return HubConfig(
        repo=str(fleet_repo.path),
        interval=3600,
        tls=pki.server("hub", ROLE_HUB),
        state_dir=tmp_path / "state",
        signing_key=tmp_path / "keys" / "hub.key",
        ready_file=tmp_path / "run" / "ready.json",
        listen="127.0.0.1:0",
        **kw,
    )


async def test_start_creates_the_key_writes_the_ready_file_and_stop_removes_it(fleet_repo, tmp_path, pki):
    cfg = config(fleet_repo, tmp_path, pki)
    app = HubApp(cfg)  # real engine detection
    port = await app.start()
    try:
        ready = json.loads(cfg.ready_file.read_text())
        assert ready == {"port": port, "public_key": str(tmp_path / "keys" / "hub.key.pub")}
        assert port > 0
        assert stat.S_IMODE(os.stat(cfg.signing_key).st_mode) == 0o600
        assert (tmp_path / "keys" / "hub.key.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
        assert sorted(app.store.clusters()) == ["bergen-dev", "oslo-dev", "oslo-prod"]
        assert all(app.store.current(c) is not None for c in app.store.clusters())
    finally:
        await app.stop(grace=0)
    assert not cfg.ready_file.exists()


async def test_restarted_hub_reuses_its_key_and_releases_higher_even_with_its_clock_stepped_back(
    fleet_repo, tmp_path, pki, engine
):
    cfg = config(fleet_repo, tmp_path, pki)
    first = HubApp(cfg, engine=engine)
    await first.start()
    before = first.store.current("oslo-prod")
    history = first.ops.cluster_detail("oslo-prod")["history"]  # recorded by the sync, no browser watching
    assert [h["release"] for h in history] == [before.release]
    pub = (tmp_path / "keys" / "hub.key.pub").read_bytes()
    await first.stop(grace=0)
    assert (cfg.state_dir / "hub.db").exists()  # the default state: SQLite under the state dir

    # The host's clock went back a day while the hub was down: release counters come from the state.
    second = HubApp(cfg, engine=engine, clock=FixedClock(dt.datetime.now(dt.UTC) - dt.timedelta(days=1)))
    await second.start()
    try:
        after = second.store.current("oslo-prod")
        assert (tmp_path / "keys" / "hub.key.pub").read_bytes() == pub
        assert after.digest == before.digest and after.release == before.release + 1
        assert second.ops.cluster_detail("oslo-prod")["history"] == history  # the dashboard's history survived
    finally:
        await second.stop(grace=0)


async def test_hub_without_tls_refuses_to_start(fleet_repo, tmp_path):
    app = HubApp(HubConfig(repo=str(fleet_repo.path), state_dir=tmp_path / "state"))
    with pytest.raises(ConfigError, match="mutual TLS"):
        await app.start()


def test_missing_public_key_is_rewritten_from_the_private_key(tmp_path):
    key = tmp_path / "k" / "signing.key"
    load_or_create_signing_key(key)
    pub = (tmp_path / "k" / "signing.key.pub").read_bytes()
    (tmp_path / "k" / "signing.key.pub").unlink()
    signer = load_or_create_signing_key(key)
    assert (tmp_path / "k" / "signing.key.pub").read_bytes() == pub
    assert signer.public_key.keyid


def test_unreadable_signing_key_is_a_config_error(tmp_path):
    key = tmp_path / "bad.key"
    key.write_text("not a key")
    with pytest.raises(ConfigError, match="cannot load signing key"):
        load_or_create_signing_key(key)


async def test_soak_clocks_and_reports_survive_a_hub_restart(fleet_repo, tmp_path, pki, engine):
    from skerry.hub.status import ClusterStatus, Condition

    cfg = config(fleet_repo, tmp_path, pki)
    clock = FixedClock(dt.datetime(2030, 1, 2, 9, 0, tzinfo=dt.UTC))
    first = HubApp(cfg, engine=engine, clock=clock)
    await first.start()
    try:
        digest = first.store.current("oslo-prod").digest
        first.statuses.report(ClusterStatus(
            cluster="oslo-prod", applied_digest=digest, conditions=(Condition("Ready", "True", "Applied"),),
            observed_unix_ms=1, received_at=clock.now(),
        ))
    finally:
        await first.stop(grace=0)  # stopping stores what the last flush did not
    clock.advance(3600)
    second = HubApp(cfg, engine=engine, clock=clock)
    await second.start()
    try:
        assert second.health_tracker.healthy_since("oslo-prod", digest) == clock.now() - dt.timedelta(hours=1)
        assert second.statuses.get("oslo-prod").applied_digest == digest
    finally:
        await second.stop(grace=0)
