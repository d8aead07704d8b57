"""Operations: skerry diff (server-side dry-run), suspend/resume, reconcile now; conflicts; mass prune."""

from __future__ import annotations

import asyncio
import json

import pytest

from skerry.agent.diff import CHANGE, CREATE, PRUNE, SAME, diff_bundle, render_text
from skerry.api.v1 import hub_pb2
from skerry.cli import agent as cli

from .helpers import CLUSTER, applied_ready, configmap, kubectl, poll, run

pytestmark = pytest.mark.kube


def _main(*argv) -> int:
    """The command as ``skerry`` runs it, without re-pointing logging at this test's captured stdout."""
    import argparse
    from unittest import mock

    parser = argparse.ArgumentParser(prog="skerry")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    with mock.patch("skerry.core.logging.configure"):
        return int(args.func(args))


def test_diff_shows_field_changes_creations_and_prunes_without_writing(
    reconciler, bundles, kube, namespace, agent_namespace, kubeconfig, tmp_path, capsys
):
    reconciler.reconcile(
        bundles.verified([configmap("a", namespace, {"level": "info"}), configmap("gone", namespace), configmap("same", namespace)])
    )
    desired = [configmap("a", namespace, {"level": "debug"}), configmap("new", namespace), configmap("same", namespace)]
    diffs = {d.ref.name: d for d in diff_bundle(kube, desired, namespace=agent_namespace)}
    assert diffs["a"].outcome == CHANGE
    assert "-  level: info" in diffs["a"].lines and "+  level: debug" in diffs["a"].lines
    assert diffs["new"].outcome == CREATE
    assert diffs["same"].outcome == SAME
    assert diffs["gone"].outcome == PRUNE
    # Dry-run only: nothing changed.
    assert kube.get("v1", "ConfigMap", "a", namespace)["data"] == {"level": "info"}
    assert kube.get("v1", "ConfigMap", "new", namespace) is None
    text = render_text(diffs.values())
    assert f"~ change ConfigMap a -n {namespace}" in text and f"- prune ConfigMap gone -n {namespace}" in text

    # The command: exit 1 when there are differences (as kubectl diff), 0 when none.
    manifest = tmp_path / "bundle.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": desired}))
    common = ["--cluster", CLUSTER, "--kubeconfig", str(kubeconfig), "--namespace", agent_namespace]
    assert _main("diff", *common, "-f", str(manifest)) == 1
    assert "+  level: debug" in capsys.readouterr().out
    same = tmp_path / "same.json"
    same.write_text(
        json.dumps([configmap("a", namespace, {"level": "info"}), configmap("gone", namespace), configmap("same", namespace)])
    )
    assert _main("diff", *common, "-f", str(same)) == 0
    # The wrong cluster name is refused: a wrong kubeconfig context must not be diffed or acted on.
    assert _main("diff", "--cluster", "elsewhere", "--kubeconfig", str(kubeconfig), "--namespace", agent_namespace, "-f", str(same)) == 2
    assert "belongs to cluster 'oslo'" in capsys.readouterr().err


def test_suspend_holds_new_bundles_and_resume_applies_them(agent_on_hub, bundles, kube, kubeconfig, namespace, agent_namespace):
    common = ["--cluster", CLUSTER, "--kubeconfig", str(kubeconfig), "--namespace", agent_namespace]

    async def scenario():
        async with agent_on_hub() as (hub, app):
            await applied_ready(hub, app, bundles, [configmap("a", namespace)])
            assert await asyncio.to_thread(_main, "suspend", *common) == 0
            await poll(lambda: app.suspended)
            await hub.send(
                hub_pb2.WatchBundlesResponse(bundle=bundles.signed_message([configmap("a", namespace), configmap("b", namespace)]))
            )
            await poll(lambda: app.status_result().condition("Suspended") is not None and app.reconciles >= 2)
            assert kube.get("v1", "ConfigMap", "b", namespace) is None
            assert app.status_result().release == 1  # still shows what is applied
            assert await asyncio.to_thread(_main, "resume", *common) == 0
            await poll(lambda: kube.get("v1", "ConfigMap", "b", namespace) is not None)
            await poll(lambda: app.status_result().release == 2 and app.status_result().condition("Suspended") is None)

    run(scenario())


def test_reconcile_now_repairs_what_detect_only_left(agent_on_hub, bundles, kube, kubeconfig, namespace, agent_namespace):
    common = ["--cluster", CLUSTER, "--kubeconfig", str(kubeconfig), "--namespace", agent_namespace]

    async def scenario():
        async with agent_on_hub(drift_policy="detect") as (hub, app):
            await applied_ready(hub, app, bundles, [configmap("a", namespace)])
            kubectl(kubeconfig, "delete", "configmap", "a", "-n", namespace)
            await poll(lambda: app.status_result().condition("Drifted").status == "True")
            before = app.reconciles
            # --wait returns once the agent handled this request (its BundleStatus says so), Ready
            assert await asyncio.to_thread(_main, "reconcile", *common, "--wait", "--timeout", "60s") == 0
            assert app.reconciles > before
            assert kube.get("v1", "ConfigMap", "a", namespace) is not None

    run(scenario())


def test_a_conflict_with_another_field_manager_is_forced_and_named(reconciler, bundles, kube, kubeconfig, namespace):
    kubectl(kubeconfig, "create", "configmap", "shared", "-n", namespace, "--from-literal=k=theirs")
    import subprocess

    subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "--server-side", "--field-manager=platform-team",
         "--force-conflicts", "-f", "-"],
        input=json.dumps(configmap("shared", namespace, {"k": "theirs"})), text=True, check=True, capture_output=True,
    )
    result = reconciler.reconcile(bundles.verified([configmap("shared", namespace, {"k": "ours"})]))
    assert result.ready
    r = result.result_for(("", "ConfigMap", namespace, "shared"))
    assert r.action == "configured"
    assert "took over fields from other managers:" in r.message and "platform-team: .data.k" in r.message
    assert kube.get("v1", "ConfigMap", "shared", namespace)["data"] == {"k": "ours"}


def test_a_bundle_that_lost_most_objects_is_not_pruned(reconciler, bundles, kube, namespace):
    many = [configmap(f"c{i}", namespace) for i in range(12)]
    reconciler.reconcile(bundles.verified(many))
    result = reconciler.reconcile(bundles.verified(many[:3]))
    assert result.condition("Pruned").reason == "MassPruneRefused"
    assert "lost 9 of 12" in result.condition("Pruned").message
    assert all(kube.get("v1", "ConfigMap", f"c{i}", namespace) is not None for i in range(12))
    # A smaller removal prunes normally.
    result = reconciler.reconcile(bundles.verified(many[:10]))
    assert result.condition("Pruned").reason == "Pruned"
    assert kube.get("v1", "ConfigMap", "c11", namespace) is None
