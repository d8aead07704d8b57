"""The sync loop against a real repository and the real Kustomize: publish, keep, release, recover."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from skerry.core.bundle import Bundle
from skerry.hub.bundles.builder import content_digest
from skerry.hub.bundles.store import HubStore
from skerry.hub.source.git import GitSource
from skerry.hub.status import ClusterStatus, StatusBoard
from skerry.hub.sync import Syncer, build_revision
from tests.steps import ends_cancelled, steps

from .helpers import BROKEN_PROD, FLEET_FILES, FLEET_YAML, CountingEngine, kubectl_kustomize, scale_prod

ALL = ("bergen-dev", "oslo-dev", "oslo-prod")


@pytest.fixture
def counting(engine) -> CountingEngine:
    return CountingEngine(engine)


@pytest.fixture
def syncer(fleet_repo, tmp_path, counting, director) -> Syncer:
    source = GitSource(str(fleet_repo.path), cache_dir=tmp_path / "state")
    return Syncer(source, counting, HubStore(director), statuses=StatusBoard())


def doc(director, signed) -> dict:
    """The bundle document the director names for ``signed``'s cluster, as the trust repository serves it."""
    return json.loads(director.fetch(f"targets/{director.directed(signed.cluster).path}"))


async def test_first_sync_publishes_every_cluster_rendering_each_path_once(syncer, fleet_repo, counting, director):
    result = await syncer.sync_once()
    assert result.ok and result.rendered
    assert result.commit == fleet_repo.head()
    assert sorted(result.published) == list(ALL)
    assert counting.calls == {"platform/monitoring": 1, "overlays/dev": 1, "overlays/prod": 1}

    prod = doc(director, syncer.store.current("oslo-prod"))
    assert prod["source"] == {
        "url": str(fleet_repo.path),
        "revision": fleet_repo.head(),
        "paths": ["platform/monitoring", "overlays/prod"],
    }
    assert "render" not in prod  # the engine is provenance, not part of what is applied
    expected = kubectl_kustomize(fleet_repo.path / "overlays/prod")
    names = {(o["kind"], o["metadata"]["name"]) for o in prod["objects"]}
    assert {(o["kind"], o["metadata"]["name"]) for o in expected} <= names
    assert ("ServiceAccount", "node-agent") in names  # the plain-YAML platform path is there too
    assert syncer.fleet is not None and syncer.fleet.cluster_names == ("oslo-dev", "bergen-dev", "oslo-prod")


async def test_unchanged_commit_is_not_rendered_again_and_makes_no_release(syncer, counting):
    await syncer.sync_once()
    releases = {c: syncer.store.current(c).release for c in ALL}
    again = await syncer.sync_once()
    assert not again.rendered and again.published == ()
    assert sum(counting.calls.values()) == 3
    forced = await syncer.sync_once(force=True)  # same commit, same digests
    assert forced.rendered and forced.published == ()
    assert {c: syncer.store.current(c).release for c in ALL} == releases


async def test_new_commit_makes_a_new_higher_release(syncer, fleet_repo, director):
    await syncer.sync_once()
    before = syncer.store.current("oslo-prod")
    commit = fleet_repo.commit("scale prod", scale_prod(5))
    result = await syncer.sync_once()
    after = syncer.store.current("oslo-prod")
    assert result.commit == commit and "oslo-prod" in result.published
    assert after.release > before.release and after.revision == commit
    deploy = next(o for o in doc(director, after)["objects"] if o["kind"] == "Deployment")
    assert deploy["spec"]["replicas"] == 5


async def test_commit_that_does_not_change_a_cluster_gives_it_no_new_release(syncer, fleet_repo):
    await syncer.sync_once()
    before = {c: syncer.store.current(c) for c in ALL}
    first = fleet_repo.head()
    commit = fleet_repo.commit("scale prod", scale_prod(5))
    result = await syncer.sync_once()
    assert result.published == ("oslo-prod",)
    assert syncer.store.current("oslo-prod").revision == commit
    for cluster in ("oslo-dev", "bergen-dev"):
        # same objects from the same paths: the served bundle (and its revision) stays
        assert syncer.store.current(cluster) is before[cluster]
        assert syncer.store.current(cluster).revision == first
    again = fleet_repo.commit("docs only", {"README.md": "hello\n"})
    result = await syncer.sync_once()
    assert result.commit == again and result.rendered and result.published == ()


async def test_broken_overlay_keeps_the_previous_bundle_and_records_an_error_naming_the_path(
    syncer, fleet_repo
):
    await syncer.sync_once()
    good = {c: syncer.store.current(c) for c in ALL}
    commit = fleet_repo.commit("break prod", BROKEN_PROD)
    result = await syncer.sync_once()
    assert set(result.errors) == {"oslo-prod"}
    assert result.errors["oslo-prod"].startswith(
        "overlays/prod/kustomization.yaml: resources[1] 'missing.yaml': no such file"
    )
    assert "missing.yaml" in result.errors["oslo-prod"]
    assert syncer.store.current("oslo-prod") is good["oslo-prod"]  # never a broken or partial bundle
    failure = syncer.store.error("oslo-prod")
    assert failure.revision == commit and "overlays/prod" in failure.message
    # Clusters that do not use the broken path are unaffected.
    assert syncer.store.error("oslo-dev") is None
    assert syncer.store.current("oslo-dev") is good["oslo-dev"]


async def test_fixing_the_overlay_clears_the_error_and_publishes_what_changed(syncer, fleet_repo):
    await syncer.sync_once()
    good = syncer.store.current("oslo-prod")
    fleet_repo.commit("break prod", BROKEN_PROD)
    await syncer.sync_once()
    # Reverted to exactly what was served: the error clears, and there is nothing new to release.
    fleet_repo.commit(
        "revert", {"overlays/prod/kustomization.yaml": FLEET_FILES["overlays/prod/kustomization.yaml"]}
    )
    result = await syncer.sync_once()
    assert result.ok and result.published == ()
    assert syncer.store.error("oslo-prod") is None and syncer.store.current("oslo-prod") is good
    # A real change after that is released as usual.
    fleet_repo.commit("break again", BROKEN_PROD)
    await syncer.sync_once()
    fixed = fleet_repo.commit("fix differently", scale_prod(2))
    result = await syncer.sync_once()
    assert result.ok and result.published == ("oslo-prod",)
    assert syncer.store.error("oslo-prod") is None
    assert syncer.store.current("oslo-prod").revision == fixed


async def test_failed_commit_is_retried_but_makes_no_new_release_for_unchanged_clusters(
    syncer, fleet_repo, counting
):
    await syncer.sync_once()
    fleet_repo.commit("break prod", BROKEN_PROD)
    await syncer.sync_once()
    dev = syncer.store.current("oslo-dev")
    retry = await syncer.sync_once()
    assert retry.rendered and set(retry.errors) == {"oslo-prod"} and retry.published == ()
    assert syncer.store.current("oslo-dev") is dev


async def test_broken_fleet_file_keeps_every_bundle_and_the_previous_fleet(syncer, fleet_repo):
    await syncer.sync_once()
    good = {c: syncer.store.current(c) for c in ALL}
    fleet_repo.commit("typo", {"skerry.yaml": FLEET_YAML.replace("clusters:", "cluster:")})
    result = await syncer.sync_once()
    assert result.fleet_error is not None and result.fleet_error.startswith(
        "skerry.yaml: unknown key(s) 'cluster'"
    )
    assert set(result.errors) == set(ALL) and result.published == ()
    assert {c: syncer.store.current(c) for c in ALL} == good
    assert syncer.fleet.cluster_names == ("oslo-dev", "bergen-dev", "oslo-prod")
    assert all("skerry.yaml" in syncer.store.error(c).message for c in ALL)


async def test_missing_fleet_file_on_first_sync_serves_nothing(syncer, fleet_repo):
    fleet_repo.commit("no fleet", {"skerry.yaml": None})
    result = await syncer.sync_once()
    assert result.fleet_error.startswith("skerry.yaml: not found at the repository root")
    assert syncer.fleet is None and syncer.store.clusters() == []


async def test_cluster_matching_no_path_is_an_error_for_that_cluster_only(syncer, fleet_repo):
    fleet_repo.commit(
        "qa cluster",
        {
            "skerry.yaml": FLEET_YAML.replace(
                "paths:", "  - name: trondheim-qa\n    labels: {env: qa}\npaths:"
            ).replace(
                "selector: {}", "selector: {matchExpressions: [{key: env, operator: NotIn, values: [qa]}]}"
            )
        },
    )
    result = await syncer.sync_once()
    assert set(result.errors) == {"trondheim-qa"}
    assert (
        "trondheim-qa" in result.errors["trondheim-qa"]
        and "matches no entry in paths" in result.errors["trondheim-qa"]
    )
    assert sorted(result.published) == list(ALL)
    assert syncer.store.current("trondheim-qa") is None


async def test_objects_clashing_between_paths_fail_only_that_cluster(syncer, fleet_repo):
    fleet_repo.commit(
        "clash",
        {
            "platform/monitoring/20-web.yaml": """
        apiVersion: v1
        kind: Namespace
        metadata: {name: web}
    """
        },
    )
    result = await syncer.sync_once()
    assert set(result.errors) == set(ALL)  # every cluster gets both the platform path and an overlay with it
    assert "rendered by both platform/monitoring and overlays/" in result.errors["oslo-prod"]


async def test_removed_cluster_is_no_longer_served(syncer, fleet_repo):
    await syncer.sync_once()
    syncer.statuses.report(ClusterStatus(cluster="bergen-dev", applied_version=1))
    fleet_repo.commit(
        "drop bergen",
        {
            "skerry.yaml": FLEET_YAML.replace(
                "  - name: bergen-dev\n    labels: {region: no-bergen, env: dev}\n", ""
            )
        },
    )
    await syncer.sync_once()
    assert "bergen-dev" not in syncer.store and syncer.statuses.get("bergen-dev") is None


async def test_unreachable_repository_keeps_serving_what_it_has(syncer, fleet_repo):
    await syncer.sync_once()
    good = syncer.store.current("oslo-prod")
    shutil.rmtree(fleet_repo.path)
    result = await syncer.sync_once()
    assert result.source_error is not None and str(fleet_repo.path) in result.source_error
    assert not result.rendered and syncer.store.current("oslo-prod") is good
    assert syncer.source_error == result.source_error


async def test_run_loop_syncs_on_trigger_without_waiting_for_the_interval(syncer, fleet_repo):
    task = asyncio.create_task(syncer.run(interval=3600))
    try:
        watch = syncer.store  # first sync happens immediately
        for _ in range(200):
            if "oslo-prod" in watch and watch.current("oslo-prod") is not None:
                break
            await asyncio.sleep(0.05)
        first = syncer.store.current("oslo-prod")
        commit = fleet_repo.commit(
            "bump",
            {
                "overlays/prod/kustomization.yaml": """
            resources: [../../base]
            namespace: web
            commonAnnotations: {bump: "1"}
        """
            },
        )
        it = syncer.store.watch("oslo-prod", last_digest=first.digest)
        syncer.request_sync()
        signed = await asyncio.wait_for(anext(it), 30)
        assert signed.revision == commit and signed.release > first.release
        await it.aclose()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("steps_between", [0, 1, 2, 3])
async def test_run_loop_stops_when_cancelled_in_the_step_a_sync_is_requested(syncer, steps_between):
    """A cancel that lands as the trigger fires (a promotion asks for a sync while the hub shuts down) ends
    the loop: it was lost, and the hub's shutdown waited for a loop that never stopped."""
    task = asyncio.create_task(syncer.run(interval=3600, immediately=False))
    await steps(3)  # parked waiting for a trigger
    syncer.request_sync()
    await steps(steps_between)
    assert await ends_cancelled(task), "the loop went on after its cancel"


def test_build_revision_for_one_cluster_renders_only_its_paths(fleet_repo, tmp_path, counting):
    source = GitSource(str(fleet_repo.path), cache_dir=tmp_path / "state")
    commit = source.fetch()
    outcome = build_revision(source, commit, counting, clusters=["oslo-prod"])
    assert set(outcome.bundles) == {"oslo-prod"}
    assert set(counting.calls) == {"platform/monitoring", "overlays/prod"}
    built = outcome.bundles["oslo-prod"]
    assert built.data == built.bundle.encode() == Bundle.decode(built.data).encode()
    assert built.content == content_digest(built.bundle)
