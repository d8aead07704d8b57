"""Releases live in the hub state: a restarted hub (or a new writer) serves them and re-releases nothing unchanged."""

from __future__ import annotations

from skerry.core.tls import ROLE_HUB
from skerry.hub.app import HubApp
from skerry.hub.config import HubConfig


def _config(fleet_repo, tmp_path, pki, dev_trust, **kw) -> HubConfig:
    return HubConfig(
        repo=str(fleet_repo.path), interval=3600, tls=pki.server("hub", ROLE_HUB), state_dir=tmp_path / "state",
        listen="127.0.0.1:0", trust_dir=dev_trust.dir, release_keys=dev_trust.release_keys, **kw,
    )


def _counters(app: HubApp) -> dict[str, int | None]:
    with app.state.read() as tx:
        return {c: tx.last_release(c) for c in app.store.clusters()}


async def test_a_restart_on_an_unchanged_commit_moves_no_counter_and_a_change_moves_one(
    fleet_repo, tmp_path, pki, engine, dev_trust
):
    cfg = _config(fleet_repo, tmp_path, pki, dev_trust)
    first = HubApp(cfg, engine=engine)
    await first.start()
    try:
        counters = _counters(first)
        served = {c: first.store.current(c).release for c in first.store.clusters()}
    finally:
        await first.stop(grace=0)
    assert counters and all(counters.values())

    second = HubApp(cfg, engine=engine)
    await second.start()  # re-renders the same commit
    try:
        assert _counters(second) == counters
        assert {c: second.store.current(c).release for c in second.store.clusters()} == served
        kustomization = fleet_repo.path / "overlays/prod/kustomization.yaml"
        kustomization.write_text(kustomization.read_text().replace("value: 3", "value: 5"))
        fleet_repo.commit("prod scales")
        result = await second.syncer.sync_once()
        assert result.published and set(result.published) < set(counters)
        after = _counters(second)
        for cluster, before in counters.items():
            assert after[cluster] == (before + 1 if cluster in result.published else before)
    finally:
        await second.stop(grace=0)

