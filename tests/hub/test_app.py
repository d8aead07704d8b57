"""HubApp: the ready file, restarts, and refusing to serve without mutual TLS or a trust repository."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from skerry.core.clock import FixedClock
from skerry.core.errors import ConfigError
from skerry.core.tls import ROLE_HUB
from skerry.hub.app import HubApp
from skerry.hub.config import HubConfig


def config(fleet_repo, tmp_path, pki, dev_trust, **kw) -> HubConfig:
    return HubConfig(
        repo=str(fleet_repo.path),
        interval=3600,
        tls=pki.server("hub", ROLE_HUB),
        state_dir=tmp_path / "state",
        trust_dir=dev_trust.dir,
        release_keys=dev_trust.release_keys,
        ready_file=tmp_path / "run" / "ready.json",
        listen="127.0.0.1:0",
        **kw,
    )


async def test_start_writes_the_ready_file_and_stop_removes_it(fleet_repo, tmp_path, pki, dev_trust):
    cfg = config(fleet_repo, tmp_path, pki, dev_trust)
    app = HubApp(cfg)  # real engine detection
    port = await app.start()
    try:
        ready = json.loads(cfg.ready_file.read_text())
        assert ready == {"port": port, "trust_root": str(dev_trust.root), "role": "both"}
        assert port > 0
        assert sorted(app.store.clusters()) == ["bergen-dev", "oslo-dev", "oslo-prod"]
        assert all(app.store.current(c) is not None for c in app.store.clusters())
    finally:
        await app.stop(grace=0)
    assert not cfg.ready_file.exists()


async def test_restarted_hub_keeps_the_directed_release_even_with_its_clock_stepped_back(
    fleet_repo, tmp_path, pki, engine, dev_trust
):
    cfg = config(fleet_repo, tmp_path, pki, dev_trust)
    first = HubApp(cfg, engine=engine)
    await first.start()
    before = first.store.current("oslo-prod")
    history = first.ops.cluster_detail("oslo-prod")["history"]  # recorded by the sync, no browser watching
    assert [h["release"] for h in history] == [before.release]
    await first.stop(grace=0)
    assert (cfg.state_dir / "hub.db").exists()  # the default state: SQLite under the state dir

    # The host's clock went back a day while the hub was down: release counters come from the state.
    second = HubApp(cfg, engine=engine, clock=FixedClock(dt.datetime.now(dt.UTC) - dt.timedelta(days=1)))
    await second.start()
    try:
        after = second.store.current("oslo-prod")
        assert after.digest == before.digest and after.release == before.release  # never lower, not re-released
        assert second.ops.cluster_detail("oslo-prod")["history"] == history  # the dashboard's history survived
    finally:
        await second.stop(grace=0)


async def test_hub_without_tls_refuses_to_start(fleet_repo, tmp_path):
    app = HubApp(HubConfig(repo=str(fleet_repo.path), state_dir=tmp_path / "state"))
    with pytest.raises(ConfigError, match="mutual TLS"):
        await app.start()


async def test_soak_clocks_and_reports_survive_a_hub_restart(fleet_repo, tmp_path, pki, engine, dev_trust):
    from skerry.hub.status import ClusterStatus, Condition

    cfg = config(fleet_repo, tmp_path, pki, dev_trust)
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


async def test_hub_without_a_trust_repository_refuses_to_start(fleet_repo, tmp_path, pki):
    app = HubApp(HubConfig(repo=str(fleet_repo.path), tls=pki.server("hub", ROLE_HUB), state_dir=tmp_path / "state"))
    with pytest.raises(ConfigError, match="trust_dir: .*skerry keys init"):
        await app.start()
