"""The agent in-process: hub -> TUF verify -> reconcile -> report; rejections; render errors; the cache."""

from __future__ import annotations

import datetime as _dt
import json

import pytest

from skerry.api.v1 import bundle_pb2, hub_pb2
from skerry.core import trust
from skerry.core.bundle import Bundle
from skerry.core.canonical import sha256_digest, sha256_hex
from tests.e2e.trust_world import evil_key

from .fakes import sealed_secret
from .helpers import CLUSTER, ENVIRONMENT, Bundles, applied_ready, configmap, kubectl, run

pytestmark = pytest.mark.kube


def bundles_pb2_hint(release: int, data: bytes) -> bundle_pb2.SignedBundle:
    """The watch event for ``data``: only a hint to refresh, as the hub sends it."""
    return bundle_pb2.SignedBundle(cluster=CLUSTER, version=release, digest=sha256_digest(data))


def ready_file(tmp_path) -> dict:
    return json.loads((tmp_path / "ready.json").read_text())


def conditions(status) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_a_bundle_from_the_hub_is_verified_applied_and_reported(
    bundles, agent_on_hub, kube, namespace, tmp_path
):
    async def scenario():
        async with agent_on_hub() as (hub, app):
            msg = bundles.signed_message(
                [configmap("from-hub", namespace), sealed_secret("db", namespace, {"pw": "s3cret"})]
            )
            await hub.send(hub_pb2.WatchBundlesResponse(bundle=msg))
            await hub.wait_for(lambda: any(r.applied_version == 1 for r in hub.reports))
            report = [r for r in hub.reports if r.applied_version == 1][-1]
            assert conditions(report)["Ready"] == ("True", "ReconciliationSucceeded")
            assert conditions(report)["Verified"] == ("True", "Verified")
            assert report.applied_digest == msg.digest and report.cluster == CLUSTER
            assert {(o.ref.kind, o.action) for o in report.objects} == {
                ("ConfigMap", "created"),
                ("Secret", "created"),
            }
            assert "s3cret" not in str(report)
        assert kube.get("v1", "ConfigMap", "from-hub", namespace) is not None
        doc = ready_file(tmp_path)
        assert (doc["cluster"], doc["applied_release"], doc["applied_digest"], doc["ready"]) == (
            CLUSTER,
            1,
            msg.digest,
            True,
        )

    run(scenario())


def test_a_bundle_signed_by_another_key_is_rejected_reported_and_not_applied(
    bundles, agent_on_hub, kube, namespace, tmp_path
):
    async def scenario():
        async with agent_on_hub() as (hub, app):
            await hub.send(
                hub_pb2.WatchBundlesResponse(bundle=bundles.signed_message([configmap("good", namespace)]))
            )
            await app.wait_until(lambda a: a.last_result is not None and a.last_result.release == 1)
            await hub.wait_for(lambda: hub.requests)  # the watch is open (it opens after the first refresh)
            # A hub without the director's key points the cluster at its own bundle, signing with another key.
            world = bundles.world
            files = world.files()
            evil = Bundle(CLUSTER, "e" * 40, "https://git.example/fleet.git", ("clusters/oslo",), "raw", "",
                          (configmap("evil", namespace),)).encode()
            world.evil_direct(files, CLUSTER, evil, release=2)
            role = trust.director_bin(trust.release_path(ENVIRONMENT, CLUSTER, sha256_hex(evil)))
            md = world.latest(files, role)
            world.put(files, role, md, evil_key())
            world.recommit(files)
            hub.tampered = files
            await hub.send(hub_pb2.WatchBundlesResponse(bundle=bundles_pb2_hint(2, evil)))
            await hub.wait_for(
                lambda: any(conditions(r).get("Verified", ("", ""))[1] == "BadSignature" for r in hub.reports)
            )
            report = hub.reports[-1]
            assert report.applied_version == 1  # the last good state stays
            assert app.last_rejection.reason == "BadSignature"
        assert kube.get("v1", "ConfigMap", "evil", namespace) is None
        assert kube.get("v1", "ConfigMap", "good", namespace) is not None
        assert ready_file(tmp_path)["applied_release"] == 1

    run(scenario())


def test_a_rollback_from_the_hub_is_rejected_with_its_reason(bundles, agent_on_hub, kube, namespace):
    async def scenario():
        async with agent_on_hub() as (hub, app):
            await hub.send(
                hub_pb2.WatchBundlesResponse(
                    bundle=bundles.signed_message([configmap("v5", namespace)], release=5)
                )
            )
            await app.wait_until(lambda a: a.last_result is not None and a.last_result.release == 5)
            await hub.wait_for(lambda: hub.requests)  # the watch is open (it opens after the first refresh)
            old = bundles.signed_message([configmap("v3", namespace)], release=3)
            await hub.send(hub_pb2.WatchBundlesResponse(bundle=old))
            await app.wait_until(lambda a: a.last_rejection is not None)
            assert app.last_rejection.reason == "ReleaseRollback"  # fresh metadata, a lower release counter
        assert kube.get("v1", "ConfigMap", "v3", namespace) is None

    run(scenario())


def test_a_render_error_is_reported_and_nothing_is_pruned(bundles, agent_on_hub, kube, namespace):
    async def scenario():
        async with agent_on_hub() as (hub, app):
            await hub.send(
                hub_pb2.WatchBundlesResponse(bundle=bundles.signed_message([configmap("stays", namespace)]))
            )
            await app.wait_until(lambda a: a.last_result is not None)
            err = hub_pb2.RenderError(revision="badc0de", message="kustomize: accumulating resources: boom")
            await hub.send(hub_pb2.WatchBundlesResponse(render_error=err))
            await hub.wait_for(lambda: any("Rendered" in conditions(r) for r in hub.reports))
            report = hub.reports[-1]
            assert conditions(report)["Rendered"] == ("False", "RenderFailed")
            assert report.applied_version == 1
        assert kube.get("v1", "ConfigMap", "stays", namespace) is not None

    run(scenario())


def test_the_cached_bundle_is_reapplied_on_start_without_a_hub(
    bundles, running_app, agent_on_hub, kube, kubeconfig, namespace, tmp_path
):
    async def scenario():
        async with agent_on_hub() as (hub, app):
            await applied_ready(
                hub, app, bundles, [configmap("cached", namespace), sealed_secret("db", namespace, {"pw": "s3cret"})]
            )

        kubectl(kubeconfig, "delete", "configmap", "cached", "-n", namespace)
        (tmp_path / "ready.json").unlink()
        assert b"s3cret" not in b"".join(
            p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file()
        )

        async with running_app("127.0.0.1:1") as offline:  # nothing listens there
            await offline.wait_until(lambda a: a.last_result is not None)
            assert offline.last_result.ready
            status = offline.status_result()
            assert status.condition("Verified").reason == "CachedBundle"
            assert status.condition("Stale") is None
        assert kube.get("v1", "ConfigMap", "cached", namespace) is not None
        assert ready_file(tmp_path)["applied_release"] == 1

    run(scenario())


def test_an_expired_cache_is_reapplied_and_reported_stale(
    running_app, agent_on_hub, kube, kubeconfig, namespace, clock, tmp_path
):
    bundles = Bundles(tmp_path / "short", expiry={"timestamp": _dt.timedelta(minutes=10)})

    async def scenario():
        async with agent_on_hub(trust=bundles) as (hub, app):
            await applied_ready(hub, app, bundles, [configmap("frozen", namespace)])
        kubectl(kubeconfig, "delete", "configmap", "frozen", "-n", namespace)

        clock.advance(3600)
        async with running_app("127.0.0.1:1", trust_root=bundles.root) as offline:
            await offline.wait_until(lambda a: a.last_result is not None)
            stale = offline.status_result().condition("Stale")
            assert (stale.status, stale.reason) == ("True", "Expired")
        assert kube.get("v1", "ConfigMap", "frozen", namespace) is not None

    run(scenario())


def test_a_reconcile_that_did_not_end_ready_is_retried(bundles, agent_on_hub, kube, kubeconfig, namespace):
    async def scenario():
        async with agent_on_hub(retry_base=0.2) as (hub, app):
            later = f"{namespace}-later"
            await hub.send(
                hub_pb2.WatchBundlesResponse(bundle=bundles.signed_message([configmap("c", later)]))
            )
            await app.wait_until(lambda a: a.last_result is not None)
            assert not app.last_result.ready  # the namespace does not exist yet
            kubectl(kubeconfig, "create", "namespace", later)
            try:
                await app.wait_until(lambda a: a.last_result.ready, timeout=20)
                assert app.reconciles >= 2
            finally:
                kubectl(kubeconfig, "delete", "namespace", later, "--wait=false", check=False)

    run(scenario())
