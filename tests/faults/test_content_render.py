"""Content faults at the hub's render: a commit that renders nothing, a render that fails and heals.

Real parts: a Git repository on disk, the hub rendering with the real ``kubectl kustomize``
(``--engine binary``), a sealer, an agent applying to the real API server. The render engine's
transient failure is injected by a ``kustomize`` on the hub's PATH that fails while a flag file
exists and otherwise runs ``kubectl kustomize`` — the one stand-in here, for a tool that crashes,
is OOM-killed or loses its network for a while.

Each test leaves the world Ready at a newer release for the next one.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time

import pytest

from skerry.testing.devstack import wait_for

from .state_world import BASE_RESOURCES, World, condition

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

# Recovery bound after the fault ends: two hub ticks (0.5 s) + a TUF refresh + one reconcile,
# with room for a loaded 2-core machine.
RECOVERY_SECONDS = 20.0

FLAKY_KUSTOMIZE = """\
#!/bin/sh
# kustomize that fails while {flag} exists (a crashing or OOM-killed render tool), else kubectl's.
if [ "$1" = version ]; then echo "v5.4.2"; exit 0; fi
if [ -e {flag} ]; then echo "Error: accumulating resources: fork/exec: resource temporarily unavailable" >&2; exit 1; fi
shift
exec {kubectl} kustomize "$@"
"""


@pytest.fixture(scope="module")
def world(kubeconfig, tmp_path_factory):
    work = tmp_path_factory.mktemp("content-render")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    flag = work / "render-fails"
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed on PATH"
    tool = bin_dir / "kustomize"
    tool.write_text(FLAKY_KUSTOMIZE.format(flag=flag, kubectl=kubectl))
    tool.chmod(0o755)
    w = World(kubeconfig, work, "fc")
    w.flag = flag
    try:
        w.seed()
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
        w.start(hub_extra=("--engine", "binary"), hub_env=env)
        yield w
    finally:
        w.stop()


def test_an_empty_render_prunes_nothing_and_the_last_good_state_stays(world: World):
    """Reverted to check: ``plan.plan_prune``'s ``if not wanted and gone and not allow_prune_all``
    (made ``if False``): the agent then deletes every object and this test fails."""
    before = world.snapshot()
    assert {"ConfigMap/settings", "Deployment/web", "Secret/db", f"Namespace/{world.ns}"} <= before.objects
    assert len(before.inventory) == 5

    world.set_resources([])
    world.commit("an overlay that renders zero objects")
    status = world.wait_status(lambda s: condition(s, "Pruned").get("reason") == "EmptyBundleRefused",
                               "the agent to refuse pruning everything")
    pruned = condition(status, "Pruned")
    assert pruned["status"] == "False"
    assert "empty" in pruned["message"] and "5" in pruned["message"]
    assert status["ready"] is False
    world.assert_nothing_lost(before)
    # the refusal keeps every recorded object, so a later intended removal can still prune them
    assert {f"{r.kind}/{r.name}" for r in world.inventory().objects} == before.inventory

    world.set_resources(BASE_RESOURCES)
    world.commit("the overlay is back")
    started = time.monotonic()
    world.wait_ready(release_above=status["applied_release"], timeout=RECOVERY_SECONDS)
    assert time.monotonic() - started < RECOVERY_SECONDS
    world.assert_nothing_lost(before)


def test_a_render_error_that_heals_at_the_same_commit_is_published_when_it_heals(world: World):
    """Reverted to check: ``Syncer._sync``'s ``if not errors and outcome.fleet is not None:`` before
    ``self._done = commit`` (made unconditional): the hub never renders the failed commit again and
    the new release never comes."""
    ready = world.wait_ready()
    before = world.snapshot()
    good = world.desired()
    flag: pathlib.Path = world.flag
    flag.touch()
    try:
        world.write("configmaps.yaml", (world.stack.repo / world.overlay / "configmaps.yaml").read_text()
                    .replace('level: "1"', 'level: "2"'))
        commit = world.commit("level 2, rendered while the render tool is failing")
        failing = wait_for(lambda: (d := world.desired()).get("render_error") and d, 20,
                           "the hub to report the render error", world.stack.hub)
        assert world.overlay in failing["render_error"]
        assert "resource temporarily unavailable" in failing["render_error"]
        # the last good bundle is still what the hub serves, and what the agent runs
        assert failing["desired_digest"] == good["desired_digest"]
        assert failing["desired_version"] == good["desired_version"]
        status = world.agent.status()
        assert status["applied_digest"] == ready["applied_digest"]
        assert world.kubectl("get", "configmap", "settings", "-n", world.ns, "-o", "jsonpath={.data.level}") == "1"
        world.assert_nothing_lost(before)
    finally:
        flag.unlink(missing_ok=True)
    started = time.monotonic()
    # healed, at the same commit: nothing new in Git, the hub's retry publishes it
    healed = world.wait_ready(release_above=ready["applied_release"], timeout=RECOVERY_SECONDS)
    assert time.monotonic() - started < RECOVERY_SECONDS
    assert healed["revision"] == commit
    assert not world.desired().get("render_error")
    assert world.kubectl("get", "configmap", "settings", "-n", world.ns, "-o", "jsonpath={.data.level}") == "2"
    world.assert_nothing_lost(before)
