"""Drift from watches: a change outside Git is reported (field, who) and corrected, or only reported."""

from __future__ import annotations

import threading
import time

import pytest

from skerry.agent.monitor import Monitor
from skerry.agent.reconcile.drift import IgnoreRule, find_drift, fingerprint, observed_fingerprint
from skerry.agent.reconcile.engine import Reconciler
from skerry.agent.reconcile.model import ObjectRef

from .fakes import FakeUnsealer
from .helpers import applied_ready, configmap, deployment, kubectl, poll, run, wait_until

pytestmark = pytest.mark.kube


def replicas(kubeconfig, namespace, name="web") -> int:
    out = kubectl(kubeconfig, "get", "deployment", name, "-n", namespace, "-o", "jsonpath={.spec.replicas}")
    return int(out.stdout)


def cond(app, type_):
    return app.status_result().condition(type_)


def test_a_manual_kubectl_scale_is_reported_as_drift_and_reverted(
    agent_on_hub, bundles, kubeconfig, namespace
):
    async def scenario():
        async with agent_on_hub() as (hub, app):
            await applied_ready(hub, app, bundles, [deployment("web", namespace, replicas=1)])
            kubectl(kubeconfig, "scale", "deployment", "web", "-n", namespace, "--replicas=3")
            await poll(lambda: app.drift_corrections >= 1)
            await poll(lambda: replicas(kubeconfig, namespace) == 1)
            (note,) = [c for c in app.corrected if ".spec.replicas" in c]
            assert f"apps/Deployment web -n {namespace}" in note
            # API server 1.20 records no manager for a /scale write (1.22+ records "kubectl").
            assert "3 (Git: 1) changed by unknown" in note
            await poll(lambda: cond(app, "Drifted").status == "False")
            corrected = cond(app, "DriftCorrected")
            assert corrected.status == "True" and ".spec.replicas" in corrected.message
            # ... and the hub hears of it.
            await hub.wait_for(
                lambda: any(
                    c.type == "DriftCorrected" and ".spec.replicas" in c.message for r in hub.reports for c in r.conditions
                )
            )

    run(scenario())


class ManualMonotonic:
    """The agent's monotonic clock, moved only by the test: backoff waits pass without wall time."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_fight_over_a_field_backs_off_instead_of_a_write_loop(agent_on_hub, bundles, kubeconfig, namespace):
    """Someone re-scales every second: corrections thin out exponentially, the status says so.

    The fight runs on the agent's injected monotonic clock: one re-scale (a real write to the API
    server) per clock second, and the test waits for the agent to have judged each one.
    """

    async def scenario():
        ticks = ManualMonotonic()
        async with agent_on_hub(monotonic=ticks) as (hub, app):
            await applied_ready(hub, app, bundles, [deployment("web", namespace, replicas=1)])
            kubectl(kubeconfig, "scale", "deployment", "web", "-n", namespace, "--replicas=3")
            await poll(lambda: app.drift_corrections >= 1)  # the first correction is immediate
            await poll(lambda: replicas(kubeconfig, namespace) == 1)
            before, fought = app.drift_corrections, 0
            for second in range(1, 14):
                ticks.advance(1)
                corrections = app.drift_corrections
                # Alternate the value so that every re-scale is a write the watch sees.
                kubectl(kubeconfig, "scale", "deployment", "web", "-n", namespace, f"--replicas={3 + second % 2}")
                fought += 1

                def judged(second=second, corrections=corrections):
                    if app.drift_corrections > corrections:
                        return True
                    held = cond(app, "CorrectionBackoff")
                    return held is not None and f"in {second} s, backing off" in held.message

                await poll(judged, 30)
                if second == 1:
                    held = cond(app, "CorrectionBackoff")
                    assert held.status == "True" and held.reason == "BackingOff"
                    assert f"apps/Deployment web -n {namespace}: corrected " in held.message
                    assert "backing off, next correction in" in held.message
                    assert "backing off" in cond(app, "Drifted").message
            made = app.drift_corrections - before
            # Answering every re-scale would be one correction each; 2 s doubling allows 2 in 13 s.
            assert fought >= 6, f"the re-scaler managed only {fought} writes"
            assert 1 <= made <= 4, f"{made} corrections for {fought} re-scales"
            assert any("in a row" in c for c in app.corrected)
            # The fight is over: the field is put back at the end of the current backoff.
            assert cond(app, "CorrectionBackoff") is not None
            ticks.advance(1)
            await poll(lambda: replicas(kubeconfig, namespace) == 1, 60)
            await poll(lambda: cond(app, "CorrectionBackoff") is None and cond(app, "Drifted").status == "False", 30)

    run(scenario(), timeout=180)


def test_detect_only_reports_the_drift_and_leaves_the_change(agent_on_hub, bundles, kubeconfig, namespace):
    async def scenario():
        async with agent_on_hub(drift_policy="detect") as (hub, app):
            await applied_ready(hub, app, bundles, [deployment("web", namespace, replicas=1)])
            kubectl(kubeconfig, "scale", "deployment", "web", "-n", namespace, "--replicas=3")
            await poll(lambda: cond(app, "Drifted").status == "True")
            drifted = cond(app, "Drifted")
            assert ".spec.replicas: 3 (Git: 1) changed by unknown" in drifted.message
            assert "detect-only" in drifted.message
            # The report of the drift is sent after the agent decided what to do about it.
            await hub.wait_for(
                lambda: any(c.type == "Drifted" and c.status == "True" for r in hub.reports for c in r.conditions)
            )
            assert replicas(kubeconfig, namespace) == 3
            assert app.drift_corrections == 0

    run(scenario())


def test_an_object_deleted_outside_git_is_recreated(agent_on_hub, bundles, kubeconfig, kube, namespace):
    async def scenario():
        async with agent_on_hub() as (hub, app):
            await applied_ready(hub, app, bundles, [configmap("settings", namespace, {"a": "1"})])
            kubectl(kubeconfig, "delete", "configmap", "settings", "-n", namespace)
            await poll(lambda: app.drift_corrections >= 1)
            await poll(lambda: kube.get("v1", "ConfigMap", "settings", namespace) is not None)
            assert any("deleted outside Git" in c for c in app.corrected)

    run(scenario())


def test_an_ignored_field_is_never_reported_or_corrected(agent_on_hub, bundles, kubeconfig, namespace):
    async def scenario():
        async with agent_on_hub(drift_ignore=("apps/Deployment:.spec.replicas",)) as (hub, app):
            await applied_ready(hub, app, bundles, [deployment("web", namespace, replicas=1)])
            kubectl(kubeconfig, "scale", "deployment", "web", "-n", namespace, "--replicas=2")
            kubectl(kubeconfig, "label", "deployment", "web", "-n", namespace, "app=changed", "--overwrite")
            await poll(lambda: app.drift_corrections >= 1)  # the label is drift and is corrected
            assert all(".spec.replicas" not in c for c in app.corrected)
            assert any(".metadata.labels.app: changed (Git: web) changed by kubectl-label" in c for c in app.corrected)
            # The correction re-applied the object without the field left to kubectl.
            await poll(lambda: cond(app, "Drifted").status == "False")
            assert replicas(kubeconfig, namespace) == 2

    run(scenario())


def test_our_own_applies_are_not_drift(reconciler, bundles, kube, namespace, agent_namespace):
    reconciler.reconcile(bundles.verified([configmap("a", namespace), deployment("web", namespace)]))
    changes = []
    monitor = Monitor(kube, reconciler, namespace=agent_namespace, on_change=lambda: changes.append(1))
    monitor.retarget()
    try:
        wait_until(lambda: len(monitor.health) >= 2, 10)
        # A new release re-stamps every object; none of those writes is drift.
        events = monitor.events
        reconciler.reconcile(bundles.verified([configmap("a", namespace, {"k": "v2"}), deployment("web", namespace)]))
        monitor.retarget()
        assert wait_until(lambda: monitor.events >= events + 2, 10), "the monitor saw none of the new release's writes"
        time.sleep(0.5)  # the last event counted is judged within milliseconds
        assert monitor.current_drifts() == []
        assert monitor.events >= 1
    finally:
        monitor.stop()


class DelayedApplies:
    """The real ``KubeClient``, but each apply's answer reaches the engine ``delay`` seconds late.

    Not a fake: every request goes to the real API server. It widens, deterministically, the
    window a busy agent has anyway: the watch event of the agent's own write arrives before the
    engine has recorded what it applied.
    """

    def __init__(self, kube, delay: float):
        self._kube = kube
        self.delay = delay
        self.gate: threading.Event | None = None  # when set up: answers wait until the test opens it
        self.answered = threading.Event()  # set when the API server has answered an apply

    def __getattr__(self, name):
        return getattr(self._kube, name)

    def apply(self, *args, **kwargs):
        outcome = self._kube.apply(*args, **kwargs)
        self.answered.set()
        if self.gate is not None:
            self.gate.wait(30)
        else:
            time.sleep(self.delay)
        return outcome


def _applied_and_watched(kube, bundles, agent_namespace, objects_, delay: float):
    """A reconciler whose applies answer ``delay`` late (``DelayedApplies``) after it applied ``objects_``, and a
    monitor that has seen them: ``(slow client, reconciler, monitor, drifts reported as they change)``."""
    slow = DelayedApplies(kube, delay)
    reconciler = Reconciler(slow, FakeUnsealer(), "skerry", agent_namespace)
    assert reconciler.reconcile(bundles.verified(objects_)).ready
    reported: list = []
    monitor = Monitor(slow, reconciler, namespace=agent_namespace)
    monitor._on_change = lambda: reported.extend(monitor.current_drifts())
    monitor.retarget()
    wait_until(lambda: len(monitor.health) >= len(objects_), 20)
    assert len(monitor.health) == len(objects_), "the monitor never saw the applied objects"
    return slow, reconciler, monitor, reported


def test_a_release_being_applied_is_never_reported_as_drift(kube, bundles, namespace, agent_namespace):
    objs = [configmap("a", namespace), deployment("web", namespace)]
    slow, reconciler, monitor, reported = _applied_and_watched(kube, bundles, agent_namespace, objs, 0.4)
    try:
        events = monitor.events
        # Same objects, a new release: each write re-stamps skerry.io/bundle-digest, and its watch
        # event arrives while the engine still holds the previous release's fingerprint.
        assert reconciler.reconcile(bundles.verified(objs)).ready
        wait_until(lambda: monitor.events >= events + len(objs), 10)
        time.sleep(0.5)
        assert monitor.events >= events + len(objs), "the monitor saw none of the new release's writes"
        assert reported == []
        assert monitor.current_drifts() == []
    finally:
        monitor.stop()


def test_a_change_made_while_its_object_is_being_applied_is_still_drift(
    kube, bundles, kubeconfig, namespace, agent_namespace
):
    objs = [configmap("a", namespace, {"k": "v"})]
    slow, reconciler, monitor, reported = _applied_and_watched(kube, bundles, agent_namespace, objs, 0.0)
    try:
        slow.gate = threading.Event()
        verified = bundles.verified(objs)
        events = monitor.events
        worker = threading.Thread(target=reconciler.reconcile, args=(verified,))
        worker.start()
        wait_until(  # the new release is written; its apply has not returned yet
            lambda: kube.get("v1", "ConfigMap", "a", namespace)["metadata"]["annotations"]["skerry.io/bundle-digest"]
            == verified.digest,
            10,
        )
        kubectl(kubeconfig, "patch", "configmap", "a", "-n", namespace, "-p", '{"data":{"k":"manual"}}')
        wait_until(lambda: monitor.events >= events + 2, 10)  # the new release's write, the patch
        slow.gate.set()  # only now does the apply answer reach the engine
        worker.join(15)
        assert not worker.is_alive()
        wait_until(monitor.current_drifts, 10)
        (found,) = monitor.current_drifts()
        assert (found.field, found.live, found.desired) == (".data.k", "manual", "v")
        assert found.changed_by == "kubectl-patch"
    finally:
        slow.gate.set()
        monitor.stop()


def test_a_deletion_that_lands_while_its_correction_is_answered_is_still_drift(
    kube, bundles, kubeconfig, namespace, agent_namespace
):
    """A correction that patches an object while it terminates (a CRD while the API server removes
    its custom resources) succeeds, and the object is gone a moment later. If the watch reports the
    deletion before the apply's answer is recorded, the deletion must still be drift: found by CI,
    where the agent then never re-created a CRD deleted by hand. Reverted to check: ``Monitor``'s
    DELETED events handled by ``_gone`` at once again: the drift is cleared and this test fails."""
    objs = [configmap("held", namespace, {"k": "v"})]
    slow, reconciler, monitor, _ = _applied_and_watched(kube, bundles, agent_namespace, objs, 0.0)
    try:
        def seen(count: int, what: str) -> None:
            assert wait_until(lambda: monitor.events >= count, 10), f"the monitor never saw {what}"

        # Another controller's finalizer holds the object in Terminating once it is deleted.
        events = monitor.events
        kubectl(kubeconfig, "patch", "configmap", "held", "-n", namespace, "--type=merge",
                "-p", '{"metadata":{"finalizers":["example.com/hold"]}}')
        kubectl(kubeconfig, "delete", "configmap", "held", "-n", namespace, "--wait=false")
        seen(events + 2, "the finalizer and the deletion")
        slow.gate = threading.Event()
        key = ObjectRef.from_object(objs[0]).key
        slow.answered.clear()
        worker = threading.Thread(target=reconciler.correct, args=([key],))
        worker.start()  # the correction's patch reaches the terminating object; its answer is held
        assert slow.answered.wait(10), "the correction was never answered"
        events = monitor.events
        kubectl(kubeconfig, "patch", "configmap", "held", "-n", namespace, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}')  # the finalizer goes: the object is deleted
        seen(events + 1, "the object deleted")
        slow.gate.set()  # only now does the correction's answer reach the engine
        worker.join(15)
        assert not worker.is_alive()
        assert kubectl(kubeconfig, "get", "configmap", "held", "-n", namespace, "--ignore-not-found",
                       "-o", "name").stdout.strip() == ""
        (found,) = monitor.current_drifts()
        assert found.ref.name == "held" and found.live == "<deleted>"
    finally:
        slow.gate.set()
        monitor.stop()


# --- the pure comparison ---------------------------------------------------------------------


def _live(obj, managers):
    live = {**obj, "metadata": {**obj["metadata"], "managedFields": managers}}
    return live


def test_a_value_the_server_normalised_is_not_drift_but_a_later_change_is():
    applied = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "x", "namespace": "n"}, "spec": {"cpu": "1000m"}}
    stored = _live(
        {**applied, "spec": {"cpu": "1"}},
        [{"manager": "skerry", "operation": "Apply", "fieldsV1": {"f:spec": {"f:cpu": {}}}}],
    )
    ref = ObjectRef.from_object(applied)
    fp = observed_fingerprint(applied, stored)
    assert find_drift(ref, fp, stored, field_manager="skerry") == []
    taken = _live(
        {**applied, "spec": {"cpu": "2"}},
        [{"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:cpu": {}}}}],
    )
    (d,) = find_drift(ref, fp, taken, field_manager="skerry")
    assert (d.field, d.live, d.desired, d.changed_by) == (".spec.cpu", "2", "1", "kubectl-edit")


def test_a_scale_write_is_blamed_on_its_writer_where_the_server_records_one():
    applied = deployment("web", "shop", replicas=1)
    ref = ObjectRef.from_object(applied)
    fp = fingerprint(applied)
    ours = {"manager": "skerry", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    scaled = {**applied, "spec": {**applied["spec"], "replicas": 3}}
    # 1.22+: the /scale write is kubectl's Update with subresource "scale", owning .spec.replicas.
    by_kubectl = {
        "manager": "kubectl",
        "operation": "Update",
        "subresource": "scale",
        "time": "2030-01-01T00:00:01Z",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }
    (d,) = find_drift(ref, fp, _live(scaled, [{**ours, "fieldsV1": {}}, by_kubectl]), field_manager="skerry")
    assert d.changed_by == "kubectl (via /scale)"
    # 1.20: nothing but our own entry owns it, and the controller's status update is not the writer.
    controller = {
        "manager": "kube-controller-manager",
        "operation": "Update",
        "time": "2030-01-01T00:00:02Z",
        "fieldsV1": {"f:status": {"f:replicas": {}}},
    }
    (d,) = find_drift(ref, fp, _live(scaled, [ours, controller]), field_manager="skerry")
    assert d.changed_by.startswith("unknown")


def test_secret_values_are_compared_by_digest_and_never_shown():
    applied = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"}, "data": {"pw": "czNjcmV0"}}
    fp = fingerprint(applied)
    assert "czNjcmV0" not in repr(fp) and "s3cret" not in repr(fp)
    live = _live(
        {**applied, "data": {"pw": "b3RoZXI="}},
        [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:data": {"f:pw": {}}}}],
    )
    (d,) = find_drift(ObjectRef.from_object(applied), fp, live, field_manager="skerry")
    assert d.live == d.desired == "<secret value>" and d.changed_by == "kubectl"


def test_list_elements_are_matched_by_merge_key():
    dep = deployment("web", "n")
    live = _live(
        {
            **dep,
            "spec": {
                **dep["spec"],
                "template": {
                    **dep["spec"]["template"],
                    "spec": {"containers": [{"name": "sidecar", "image": "x"}, {"name": "main", "image": "nginx:2"}]},
                },
            },
        },
        [
            {
                "manager": "kubectl-set",
                "operation": "Update",
                "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"main"}': {"f:image": {}}}}}}},
            }
        ],
    )
    drifts = find_drift(ObjectRef.from_object(dep), fingerprint(dep), live, field_manager="skerry")
    assert [(d.field, d.changed_by) for d in drifts] == [
        (".spec.template.spec.containers[name=main].image", "kubectl-set")
    ]


def test_ignore_rules_parse_and_match():
    ref = ObjectRef("apps/v1", "Deployment", "n", "web")
    rule = IgnoreRule.parse("apps/Deployment:.spec.replicas")
    assert rule.matches(ref, ".spec.replicas") and not rule.matches(ref, ".spec.replicasX")
    assert not rule.matches(ObjectRef("v1", "ConfigMap", "n", "c"), ".spec.replicas")
    assert IgnoreRule.parse("*:.metadata.annotations").matches(ref, ".metadata.annotations.x")
    with pytest.raises(ValueError):
        IgnoreRule.parse("spec.replicas")
