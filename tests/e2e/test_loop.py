"""The whole loop with real processes: Git → hub render + sign → gRPC → agent verify → SSA → real API server.

One stack (sealer, hub, an agent per cluster of examples/fleet) serves the
module; tests run in file order and each leaves the stack healthy.
"""

from __future__ import annotations

import base64
import json
import pathlib
import secrets as pysecrets

import pytest

from skerry.testing.devstack import Stack, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

PASSWORD = pysecrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def stack(kubeconfig, tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"), kubeconfig, interval=1.0)
    try:
        s.start_example(("oslo-dev", "oslo-prod"), password=PASSWORD)
        yield s
    finally:
        s.stop()


def wait_new_release(stack: Stack, cluster: str, above: int) -> dict:
    return wait_for(
        lambda: (v := stack.cluster_view(cluster)) and int(v.get("desired_version", 0)) > above and v,
        30, f"a release of {cluster} above {above}", stack.hub,
    )


def edit(stack: Stack, rel: str, old: str, new: str) -> None:
    path = stack.repo / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new))


def test_every_cluster_applies_its_overlay_with_the_secret_unsealed(stack):
    for cluster in ("oslo-dev", "oslo-prod"):
        v = wait_for(lambda c=cluster: stack.cluster_view(c).get("desired_digest") and stack.cluster_view(c), 30, "a bundle")
        stack.wait_applied(cluster, digest=v["desired_digest"])
    assert stack.kubectl("get", "deploy", "web", "-n", "shop-prod", "-o", "jsonpath={.spec.replicas}") == "3"
    assert stack.kubectl("get", "deploy", "web", "-n", "shop-dev", "-o", "jsonpath={.spec.replicas}") == "1"
    secret = json.loads(stack.kubectl("get", "secret", "db-credentials", "-n", "shop-prod", "-o", "json",
                                      "--show-managed-fields"))
    assert base64.b64decode(secret["data"]["password"]).decode() == PASSWORD
    assert base64.b64decode(secret["data"]["username"]).decode() == "shop"
    managers = {m["manager"] for m in secret["metadata"].get("managedFields", [])}
    assert "skerry" in managers
    assert PASSWORD not in json.dumps(secret["metadata"]), "plaintext leaked into metadata/annotations"


def test_plaintext_never_reaches_the_repo_logs_or_agent_cache(stack):
    needle = PASSWORD.encode()
    for root in (stack.repo, stack.workdir / "logs", stack.workdir / "agents", stack.workdir / "hub-state"):
        for f in pathlib.Path(root).rglob("*"):
            if f.is_file():
                assert needle not in f.read_bytes(), f"plaintext found in {f}"


def test_a_commit_reaches_the_cluster_and_is_applied(stack):
    before = int(stack.cluster_view("oslo-prod")["desired_version"])
    dev_before = stack.cluster_view("oslo-dev")
    edit(stack, "overlays/prod/kustomization.yaml", "count: 3", "count: 4")
    stack.commit("prod: 4 replicas")
    v = wait_new_release(stack, "oslo-prod", before)
    stack.wait_applied("oslo-prod", digest=v["desired_digest"])
    assert stack.kubectl("get", "deploy", "web", "-n", "shop-prod", "-o", "jsonpath={.spec.replicas}") == "4"
    # dev's rendered state did not change, so dev got no new release
    assert stack.cluster_view("oslo-dev")["desired_version"] == dev_before["desired_version"]


def test_an_object_removed_from_git_is_pruned_and_only_that_object(stack):
    cm = stack.repo / "overlays/prod/extra.yaml"
    cm.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  k: v\n")
    edit(stack, "overlays/prod/kustomization.yaml", "  - namespace.yaml\n", "  - namespace.yaml\n  - extra.yaml\n")
    # someone else's object in the same namespace, with Skerry-looking labels
    stack.kubectl("create", "configmap", "bystander", "-n", "shop-prod")
    stack.kubectl("label", "configmap", "bystander", "-n", "shop-prod", "app.kubernetes.io/managed-by=skerry",
                  "app.kubernetes.io/name=web")
    before = int(stack.cluster_view("oslo-prod")["desired_version"])
    stack.commit("prod: add extra ConfigMap")
    v = wait_new_release(stack, "oslo-prod", before)
    stack.wait_applied("oslo-prod", digest=v["desired_digest"])
    assert stack.kubectl("get", "configmap", "extra", "-n", "shop-prod", "-o", "jsonpath={.data.k}") == "v"

    cm.unlink()
    edit(stack, "overlays/prod/kustomization.yaml", "  - extra.yaml\n", "")
    stack.commit("prod: remove extra ConfigMap")
    v = wait_new_release(stack, "oslo-prod", int(v["desired_version"]))
    stack.wait_applied("oslo-prod", digest=v["desired_digest"])
    gone = stack.kubectl("get", "configmap", "extra", "-n", "shop-prod", "--ignore-not-found", "-o", "name")
    assert gone == ""
    assert stack.kubectl("get", "configmap", "bystander", "-n", "shop-prod", "-o", "name") == "configmap/bystander"
    assert stack.kubectl("get", "deploy", "web", "-n", "shop-prod", "-o", "name") == "deployment.apps/web"


def test_a_broken_overlay_keeps_the_last_good_bundle_and_reports_the_path(stack):
    good = stack.cluster_view("oslo-prod")
    edit(stack, "overlays/prod/kustomization.yaml", "  - ../../base\n", "  - ../../base\n  - missing.yaml\n")
    stack.commit("prod: broken reference")
    v = wait_for(lambda: (d := stack.cluster_view("oslo-prod")).get("render_error") and d, 30, "a render error", stack.hub)
    assert "overlays/prod" in v["render_error"]
    assert "missing.yaml" in v["render_error"]
    assert v["desired_digest"] == good["desired_digest"]
    assert v["desired_version"] == good["desired_version"]
    assert stack.kubectl("get", "deploy", "web", "-n", "shop-prod", "-o", "name") == "deployment.apps/web"
    # mend it; the next good render is published again
    edit(stack, "overlays/prod/kustomization.yaml", "  - missing.yaml\n", "")
    stack.commit("prod: fix reference")
    wait_for(lambda: not stack.cluster_view("oslo-prod").get("render_error"), 30, "the error to clear", stack.hub)


def test_agent_restarted_while_the_hub_is_down_reapplies_its_cached_bundle(stack):
    applied = stack.agents["oslo-prod"].status()
    stack.hub.stop()
    try:
        # disaster: the workload is deleted while the hub is unreachable
        stack.kubectl("delete", "deploy", "web", "-n", "shop-prod", "--wait=true")
        agent = stack.start_agent("oslo-prod")
        st = stack.wait_applied("oslo-prod", digest=applied["applied_digest"], release_above=0)
        assert st["applied_release"] == applied["applied_release"]
        replicas = wait_for(
            lambda: stack.kubectl("get", "deploy", "web", "-n", "shop-prod", "--ignore-not-found",
                                  "-o", "jsonpath={.spec.replicas}"), 30, "the Deployment to be re-applied", agent)
        assert replicas == "4"
    finally:
        stack.start_hub()
        stack.start_agent("oslo-prod")


def test_an_unknown_cluster_gets_a_clear_refusal_naming_it(stack):
    agent = stack.start_agent("bergen-prod")
    try:
        wait_for(lambda: "bergen-prod" in agent.log_tail(100) and "not" in agent.log_tail(100).lower(), 20,
                 "the agent to log the refusal", agent)
        assert agent.status() is None or not agent.status().get("applied_digest")
    finally:
        agent.stop()
        stack.agents.pop("bergen-prod")


def test_an_unreachable_hub_is_named_in_one_clear_line(stack):
    agent = stack.start_agent("oslo-dev", hub="127.0.0.1:9")
    try:
        wait_for(lambda: "127.0.0.1:9" in agent.log_tail(100), 20, "the agent to name the hub", agent)
        assert agent.alive(), "an unreachable hub must not crash the agent"
    finally:
        stack.start_agent("oslo-dev")
