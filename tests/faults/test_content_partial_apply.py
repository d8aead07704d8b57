"""A partial apply: the API server rejects one object of a bundle, the rest is applied and nothing lost.

Real parts: hub, sealer and agent processes, the real kube-apiserver's validation (a Deployment
with ``replicas: -1`` is refused by the server, not by Skerry).
"""

from __future__ import annotations

import time

import pytest

from .state_world import BASE_RESOURCES, World, condition, running_world

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

RECOVERY_SECONDS = 20.0

BROKEN = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  replicas: -1
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: broken
          image: nginx:1.27
"""

EXTRA = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: extra
data:
  k: v
"""

# ``features`` leaves the bundle in the same commit that brings the rejected object.
WITHOUT_FEATURES = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  level: "3"
"""


@pytest.fixture(scope="module")
def world(kubeconfig, tmp_path_factory):
    with running_world(kubeconfig, tmp_path_factory.mktemp("partial-apply"), "fp") as w:
        yield w


def test_one_rejected_object_fails_alone_is_named_and_nothing_is_pruned(world: World):
    """Reverted to check: ``prune_step``'s ``if failed and prune.delete:`` (made ``if False``): the round
    with a failed apply then prunes ``features`` and this test fails."""
    ready = world.wait_ready()
    before = world.snapshot()
    world.write("broken.yaml", BROKEN)
    world.write("extra.yaml", EXTRA)
    world.write("configmaps.yaml", WITHOUT_FEATURES)
    world.set_resources([*BASE_RESOURCES, "broken.yaml", "extra.yaml"])
    world.commit("level 3, an extra ConfigMap, no features, and a Deployment the API server rejects")

    status = world.wait_status(
        lambda s: s["applied_release"] > ready["applied_release"] and condition(s, "Applied").get("status") == "False",
        "the agent to report the rejected object")
    applied = condition(status, "Applied")
    assert applied["reason"] == "ApplyFailed"
    assert "broken" in applied["message"] and "replicas" in applied["message"], applied["message"]
    assert "1 of" in applied["message"]
    assert condition(status, "Pruned")["reason"] == "PrunePostponed"
    assert status["ready"] is False

    # the rest is applied
    assert world.kubectl("get", "configmap", "settings", "-n", world.ns, "-o", "jsonpath={.data.level}") == "3"
    assert world.kubectl("get", "configmap", "extra", "-n", world.ns, "-o", "jsonpath={.data.k}") == "v"
    assert world.kubectl("get", "deploy", "broken", "-n", world.ns, "--ignore-not-found", "-o", "name") == ""
    # nothing pruned, nothing lost: ``features`` left Git but stays while the round had a failure
    now = world.assert_nothing_lost(before)
    assert "ConfigMap/features" in now.objects
    # the inventory: everything from before, plus what was applied now, and not the rejected object
    assert now.inventory == before.inventory | {"ConfigMap/extra"}

    # the fix: without the rejected object the round is clean and the intended removal happens
    world.set_resources([*BASE_RESOURCES, "extra.yaml"])
    world.commit("drop the broken Deployment")
    started = time.monotonic()
    healed = world.wait_ready(release_above=status["applied_release"], timeout=RECOVERY_SECONDS)
    assert time.monotonic() - started < RECOVERY_SECONDS
    assert condition(healed, "Pruned")["reason"] == "Pruned"
    after = world.snapshot()
    assert "ConfigMap/features" not in after.objects
    assert after.inventory == before.inventory - {"ConfigMap/features"} | {"ConfigMap/extra"}
    assert after.secret == before.secret
