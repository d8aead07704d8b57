"""The agent's decisions without an API server: conditions, freeze, retry and poll timing, drift policy, controls."""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import pathlib

import pytest

from skerry.agent.conditions import (
    MAX_DRIFTS_SHOWN,
    AgentSnapshot,
    DriftView,
    Freeze,
    HeldCorrection,
    RenderFailure,
    Stale,
    Verification,
    drift_mode,
    status_result,
)
from skerry.agent.config import AgentConfig
from skerry.agent.drift_control import DriftControl, correction_note, plan_controls, should_correct
from skerry.agent.reconcile.applied import AppliedState
from skerry.agent.reconcile.drift import Drift
from skerry.agent.reconcile.inventory import RECONCILE_ANNOTATION, SUSPEND_ANNOTATION
from skerry.agent.reconcile.model import FALSE, TRUE, Condition, ObjectRef, ObjectResult, ReconcileResult
from skerry.agent.reporter import Reporter
from skerry.agent.runtime import Runtime, may_reapply, next_poll_at, next_wakeup, retry_delay
from skerry.core.clock import FixedClock
from skerry.core.errors import Unavailable, VerificationError
from tests.steps import ends_cancelled, steps

NOW = _dt.datetime(2030, 1, 1, tzinfo=_dt.UTC)
WEB = ObjectRef("apps/v1", "Deployment", "shop", "web")
READY = ReconcileResult(
    "oslo", 3, "sha256:c", "r" * 40, conditions=(Condition("Ready", TRUE, "ReconciliationSucceeded"),)
)
NOT_READY = ReconcileResult(
    "oslo", 3, "sha256:c", "r" * 40, conditions=(Condition("Ready", FALSE, "ApplyFailed"),)
)


def by_type(snapshot: AgentSnapshot) -> dict[str, Condition]:
    return {c.type: c for c in status_result(snapshot).conditions}


# --- conditions ------------------------------------------------------------------------------


def test_before_anything_is_applied_the_agent_says_so():
    conditions = by_type(AgentSnapshot(cluster="oslo"))
    assert (conditions["Ready"].status, conditions["Ready"].reason) == (FALSE, "NothingApplied")
    assert set(conditions) == {"Ready"}
    assert status_result(AgentSnapshot(cluster="oslo")).cluster == "oslo"


def test_a_refused_bundle_is_verified_false_with_its_reason_and_the_applied_release_stays():
    refused = Verification(False, "r4", reason="Rollback", error="release r4 is older than r5")
    conditions = by_type(AgentSnapshot(cluster="oslo", last_result=READY, verification=refused))
    assert (conditions["Verified"].status, conditions["Verified"].reason) == (FALSE, "Rollback")
    assert conditions["Verified"].message == "release r4: release r4 is older than r5"
    assert (
        conditions["Ready"].is_true and status_result(AgentSnapshot("oslo", last_result=READY)).release == 3
    )


def test_a_cached_expired_bundle_is_verified_from_the_cache_and_stale():
    snapshot = AgentSnapshot(
        cluster="oslo",
        last_result=READY,
        verification=Verification(True, "r3", "sha256:c", from_cache=True),
        stale=Stale("r3", NOW),
    )
    conditions = by_type(snapshot)
    assert conditions["Verified"].reason == "CachedBundle"
    assert (conditions["Stale"].status, conditions["Stale"].reason) == (TRUE, "Expired")
    assert NOW.isoformat() in conditions["Stale"].message


def test_a_render_failure_is_rendered_false_naming_the_revision():
    conditions = by_type(AgentSnapshot("oslo", render_failure=RenderFailure("", "kustomize: no such file")))
    assert conditions["Rendered"] == Condition(
        "Rendered", FALSE, "RenderFailed", "revision ?: kustomize: no such file"
    )


def test_a_freeze_replaces_fresh_and_says_whether_reconciling_is_suspended():
    fresh = by_type(AgentSnapshot("oslo", fresh_until=NOW))
    assert fresh["Fresh"].message == f"trusted metadata valid until {NOW.isoformat()}"
    keep = by_type(
        AgentSnapshot("oslo", fresh_until=NOW, freeze=Freeze("timestamp expired", "r7", suspends=False))
    )
    assert "Fresh" not in keep and keep["Frozen"].is_true
    assert keep["Frozen"].message == "timestamp expired — last good release r7 stays applied"
    suspend = by_type(AgentSnapshot("oslo", freeze=Freeze("timestamp expired", "r7", suspends=True)))
    assert suspend["Frozen"].message.endswith("and reconciling is suspended")


def test_suspension_shows_the_annotation_or_the_engines_refusal():
    by_annotation = by_type(AgentSnapshot("oslo", suspended=True))
    assert by_annotation["Suspended"].message == f"{SUSPEND_ANNOTATION}=true: nothing is applied or corrected"
    by_engine = by_type(AgentSnapshot("oslo", suspended=True, suspension="release 4 not applied"))
    assert by_engine["Suspended"].message == "release 4 not applied"
    assert "Suspended" not in by_type(AgentSnapshot("oslo", suspension="stale message"))


def test_drift_conditions_count_bound_and_say_how_drift_is_handled():
    drifts = tuple(Drift(WEB, f".spec.f{i}", "1", "2", "kubectl") for i in range(MAX_DRIFTS_SHOWN + 2))
    held = (HeldCorrection(str(WEB), 3, 40.0, 8.0),)
    view = DriftView(
        drifts=drifts,
        held=held,
        corrected=("t1 a", "t2 b"),
        corrections=2,
        watch_errors=(("v1 Pod", "forbidden"),),
    )
    conditions = by_type(AgentSnapshot("oslo", last_result=READY, drift=view))
    drifted = conditions["Drifted"]
    assert drifted.is_true and drifted.message.startswith(
        f"{len(drifts)} drifted field(s), being corrected (1 object(s) backing off)"
    )
    assert drifted.message.endswith("(+2 more)")
    assert conditions["DriftCorrected"].message == "2 correction(s); latest: t1 a | t2 b"
    assert (
        "corrected 3 times in 40 s, backing off, next correction in 8 s"
        in conditions["CorrectionBackoff"].message
    )
    assert conditions["Watching"] == Condition(
        "Watching", FALSE, "WatchFailed", "1 watch(es) failing; v1 Pod: forbidden"
    )
    in_sync = by_type(AgentSnapshot("oslo", drift=DriftView(held=held)))
    assert in_sync["Drifted"].reason == "InSync" and "CorrectionBackoff" not in in_sync


def test_drift_mode_in_words():
    assert drift_mode("correct", suspended=False, held=0) == "being corrected"
    assert drift_mode("correct", suspended=True, held=2) == "not corrected (suspended)"
    assert drift_mode("detect", suspended=True, held=0) == "not corrected (detect-only)"


# --- the loop's timing -----------------------------------------------------------------------


def test_a_reconcile_that_did_not_end_ready_is_retried_with_capped_exponential_backoff():
    assert retry_delay(None, 0, base=2, cap=300) is None
    assert retry_delay(READY, 5, base=2, cap=300) is None
    assert [retry_delay(NOT_READY, n, base=2, cap=20) for n in range(5)] == [2, 4, 8, 16, 20]


def test_the_trust_poll_runs_every_interval_and_at_the_latest_just_after_the_horizon():
    assert next_poll_at(100.0, None, every=60, horizon_in=None, frozen=False) == 160.0
    assert next_poll_at(100.0, 130.0, every=60, horizon_in=None, frozen=False) == 130.0
    assert next_poll_at(100.0, None, every=60, horizon_in=10.0, frozen=False) == 110.5
    assert next_poll_at(100.0, None, every=60, horizon_in=-30.0, frozen=False) == 100.5
    assert next_poll_at(100.0, None, every=60, horizon_in=-30.0, frozen=True) == 160.0


def test_the_loop_wakes_for_whichever_comes_first_and_a_tie_polls():
    assert next_wakeup(None, None) == (None, "")
    assert next_wakeup(5.0, None) == (5.0, "retry")
    assert next_wakeup(None, 7.0) == (7.0, "poll")
    assert next_wakeup(5.0, 7.0) == (5.0, "retry")
    assert next_wakeup(7.0, 7.0) == (7.0, "poll")


def test_a_freeze_under_policy_suspend_stops_retries_and_policy_keep_does_not():
    current = object()
    assert not may_reapply(None, None)
    assert may_reapply(current, None)
    assert may_reapply(current, Freeze("expired", "r1", suspends=False))
    assert not may_reapply(current, Freeze("expired", "r1", suspends=True))


# --- drift policy and the operator's controls ------------------------------------------------


def test_drift_is_corrected_only_under_policy_correct_unsuspended_with_a_bundle():
    drifts = [Drift(WEB, ".spec.replicas", "2", "5", "kubectl")]
    assert should_correct(drifts, policy="correct", suspended=False, has_bundle=True)
    assert not should_correct([], policy="correct", suspended=False, has_bundle=True)
    assert not should_correct(drifts, policy="detect", suspended=False, has_bundle=True)
    assert not should_correct(drifts, policy="correct", suspended=True, has_bundle=True)
    assert not should_correct(drifts, policy="correct", suspended=False, has_bundle=False)


def test_a_correction_note_counts_a_fight():
    drift = Drift(WEB, ".spec.replicas", "2", "5", "kubectl")
    assert correction_note("t", drift, 1) == f"t {drift.describe()}"
    assert correction_note("t", drift, 3).endswith("(correction 3 in a row)")


def test_suspend_and_resume_follow_the_annotation():
    on = plan_controls(
        {SUSPEND_ANNOTATION: "True"}, suspended=False, handled="", reconciles=1, has_bundle=True
    )
    assert on.suspend is True and not on.reconcile_now
    off = plan_controls({}, suspended=True, handled="", reconciles=1, has_bundle=True)
    assert off.suspend is False
    same = plan_controls(
        {SUSPEND_ANNOTATION: "true"}, suspended=True, handled="", reconciles=1, has_bundle=True
    )
    assert same.suspend is None


def test_a_new_reconcile_request_is_acted_on_once_and_one_left_from_before_the_start_is_not():
    ask = {RECONCILE_ANNOTATION: "2030-01-01T00:00:00Z"}
    at_start = plan_controls(ask, suspended=False, handled="", reconciles=0, has_bundle=True)
    assert not at_start.reconcile_now and at_start.handled == ask[RECONCILE_ANNOTATION]
    new = plan_controls(ask, suspended=False, handled="older", reconciles=1, has_bundle=True)
    assert new.reconcile_now and new.handled == ask[RECONCILE_ANNOTATION]
    again = plan_controls(
        ask, suspended=False, handled=ask[RECONCILE_ANNOTATION], reconciles=2, has_bundle=True
    )
    assert not again.reconcile_now
    suspended = plan_controls(
        {**ask, SUSPEND_ANNOTATION: "true"}, suspended=True, handled="x", reconciles=2, has_bundle=True
    )
    assert not suspended.reconcile_now and suspended.handled == ask[RECONCILE_ANNOTATION]
    nothing = plan_controls(ask, suspended=False, handled="x", reconciles=2, has_bundle=False)
    assert not nothing.reconcile_now


# --- the reporter ----------------------------------------------------------------------------


class FlakyHub:
    """The hub's side of ReportStatus, in-process: fails the first ``failures`` reports."""

    def __init__(self, failures: int):
        self.failures = failures
        self.reports = []

    async def report(self, status) -> None:
        if self.failures:
            self.failures -= 1
            raise Unavailable("hub down")
        self.reports.append(status)


async def test_the_reporter_writes_the_ready_file_and_delivers_the_newest_status_after_failures(tmp_path):
    hub = FlakyHub(failures=1)
    reporter = Reporter(
        hub,
        FixedClock(NOW),
        status=lambda: READY,
        ready_file=tmp_path / "ready.json",
        ready_extra=lambda: {"frozen": False},
        metrics_port=lambda: 9100,
        retry_cap=0.01,
    )
    task = asyncio.create_task(reporter.run())
    try:
        await reporter.publish()
        doc = json.loads((tmp_path / "ready.json").read_text())
        assert doc["applied_release"] == 3 and doc["ready"] is True
        assert doc["metrics_port"] == 9100 and doc["frozen"] is False and doc["updated"] == NOW.isoformat()
        async with reporter.changed:
            await asyncio.wait_for(reporter.changed.wait_for(lambda: reporter.reports_sent == 1), 5)
        assert [r.applied_version for r in hub.reports] == [3] and hub.failures == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_burst_of_statuses_while_the_hub_refuses_is_not_a_burst_of_reports(tmp_path):
    hub = FlakyHub(failures=1000)
    attempts = []
    original = hub.report

    async def counted(status):
        attempts.append(status)
        await original(status)

    hub.report = counted
    reporter = Reporter(hub, FixedClock(NOW), status=lambda: READY)
    task = asyncio.create_task(reporter.run())
    try:
        for _ in range(10):  # e.g. one publish per failing watch
            await reporter.publish()
            await asyncio.sleep(0.01)
        assert len(attempts) == 1  # the next one waits for the first retry step (0.5 s), then sends the newest
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("steps_between", [0, 1, 2, 3])
async def test_a_reporter_waiting_to_retry_stops_when_cancelled_as_a_newer_status_arrives(steps_between):
    """A cancel (the agent stopping) that lands as a newer status wakes the retry wait ends the reporter: it
    was lost, and the agent's stop waited for a reporter that went on retrying."""
    hub = FlakyHub(failures=1000)
    reporter = Reporter(hub, FixedClock(NOW), status=lambda: READY)
    task = asyncio.create_task(reporter.run())
    await reporter.publish()
    await steps(5)  # the first report failed: waiting for the retry step or a newer status
    await reporter.publish()
    await steps(steps_between)
    assert await ends_cancelled(task), "the reporter went on after its cancel"


# --- drift control with injected time (the other side of each call is a stand-in, named so) -----


class StandInMonitor:
    """What DriftControl reads of the monitor: its drifts, watch errors and health."""

    def __init__(self, drifts):
        self.drifts = list(drifts)
        self.errors: dict[str, str] = {}

    def current_drifts(self):
        return list(self.drifts)

    def health_condition(self, *, elapsed_seconds, timeout_seconds):
        return Condition("Healthy", TRUE, "Healthy", f"{elapsed_seconds:g}/{timeout_seconds:g}")

    def stop(self):
        pass


class StandInEngine:
    """The engine's ``correct`` and its applied-state memory."""

    def __init__(self):
        self.applied = AppliedState()
        self.applied.record(WEB, resource_version="1", digest="d", fingerprint={})
        self.corrected: list[list] = []

    def correct(self, keys):
        self.corrected.append(list(keys))
        return [ObjectResult(WEB, "configured")]


class StandInRuntime:
    def __init__(self, engine):
        self.lock = asyncio.Lock()
        self.reconciler = engine
        self.current = object()
        self.reconciles = 1
        self.last_result = READY
        self.applied_at = 0.0
        self.applied: list = []

    async def guarded(self, fn, *args):
        await fn(*args)

    async def apply(self, verified):
        self.applied.append(verified)


def drift_control(policy: str, now: list[float]):
    engine = StandInEngine()
    runtime = StandInRuntime(engine)
    published: list[int] = []

    async def publish():
        published.append(1)

    config = AgentConfig(cluster="oslo", hub_address="h:1", drift_policy=policy, health_timeout=300)
    control = DriftControl(
        config,
        FixedClock(NOW),
        runtime,
        monitor=StandInMonitor([Drift(WEB, ".spec.replicas", "2", "5", "kubectl")]),
        publish=publish,
        monotonic=lambda: now[0],
    )
    return control, engine, runtime, published


async def test_drift_is_corrected_at_once_then_held_back_by_the_backoff_in_fake_time():
    now = [100.0]
    control, engine, _, published = drift_control("correct", now)
    try:
        await control.on_drift()
        assert engine.corrected == [[WEB.key]] and control.corrections == 1 and published
        assert control.corrected == [
            f"{NOW.isoformat()} {Drift(WEB, '.spec.replicas', '2', '5', 'kubectl').describe()}"
        ]
        now[0] = 101.0  # the other manager wrote again one second later: within the 2 s backoff
        await control.on_drift()
        assert engine.corrected == [[WEB.key]]
        view = control.view()
        assert [(h.ref, h.corrections, h.seconds_left) for h in view.held] == [(str(WEB), 1, 1.0)]
        assert view.health.message == "101/300"
        now[0] = 102.0
        await control.on_drift()
        assert engine.corrected == [[WEB.key], [WEB.key]] and control.corrected[-1].endswith(
            "(correction 2 in a row)"
        )
    finally:
        control.stop()


async def test_detect_only_and_suspended_agents_report_drift_without_correcting():
    now = [0.0]
    detect, engine, _, _ = drift_control("detect", now)
    await detect.on_drift()
    assert engine.corrected == [] and detect.corrections == 0
    suspended, engine, runtime, _ = drift_control("correct", now)
    suspended.control({SUSPEND_ANNOTATION: "true"})
    await suspended.on_drift()
    assert engine.corrected == [] and suspended.suspended
    suspended.control({})  # resume: the current bundle is re-applied
    await asyncio.sleep(0)
    assert not suspended.suspended and runtime.applied == [runtime.current]


# --- the loop's freeze, with stand-ins for the verifier and the ops seams ----------------------


class StandInVerifier:
    """A TUF verifier's surface: each ``verify_message`` answers with the next scripted outcome."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.valid_until = NOW + _dt.timedelta(hours=1)
        self.last_release = 7
        self.last_number = 0

    def verify_message(self, _signed):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class StandInOps:
    def __init__(self):
        self.rejections: list[str] = []
        self.refusals: list[str] = []

    def refused(self, error):
        self.refusals.append(error.reason)

    async def rejected(self, error, _signed):
        self.rejections.append(error.reason)

    async def verified(self):
        pass


def runtime_with(verifier, freeze_policy="keep"):
    """A Runtime whose every publish records the snapshot the agent would report."""
    published: list[AgentSnapshot] = []
    runtimes: list[Runtime] = []

    async def publish():
        published.append(snapshot_of(runtimes[0]))

    # The trust root is never read here: only its presence says "TUF mode".
    config = AgentConfig(
        cluster="oslo",
        hub_address="h:1",
        freeze_policy=freeze_policy,
        trust_root=pathlib.Path("/absent/root.json"),
    )
    runtimes.append(
        Runtime(
            config,
            FixedClock(NOW),
            verifier=verifier,
            cache=None,
            hub=None,
            reconciler=None,
            unsealer=None,
            ops=StandInOps(),
            publish=publish,
            monotonic=lambda: 0.0,
        )
    )
    return runtimes[0], published


def snapshot_of(runtime) -> AgentSnapshot:
    return AgentSnapshot(
        cluster="oslo",
        last_result=READY,
        verification=runtime.verification,
        fresh_until=runtime.fresh_until,
        freeze=runtime.freeze,
    )


async def test_expired_metadata_freezes_the_agent_and_fresh_metadata_ends_the_freeze():
    expired = VerificationError("timestamp expired at 2029-12-31", reason="Freeze")
    runtime, published = runtime_with(StandInVerifier([None, expired, None]), freeze_policy="suspend")
    await runtime.on_bundle(None)  # the director still names the applied bundle
    assert by_type(published[-1])["Fresh"].message.startswith("trusted metadata valid until")
    await runtime.on_bundle(None)
    frozen = by_type(published[-1])
    assert "Fresh" not in frozen and frozen["Frozen"].message.endswith("and reconciling is suspended")
    assert runtime.frozen is expired and not may_reapply(object(), runtime.freeze)
    assert runtime.ops.rejections == []  # a freeze is not a refused bundle
    await runtime.on_bundle(None)
    thawed = by_type(published[-1])
    assert "Frozen" not in thawed and thawed["Fresh"].is_true and runtime.frozen is None


async def test_a_freeze_from_clocks_that_disagree_says_so_in_its_condition_and_ends_when_they_agree():
    skew = VerificationError("timestamp metadata expired at 2030-01-01T00:00:00+00:00; this host's clock is ahead",
                             reason="ClockSkew")
    runtime, published = runtime_with(StandInVerifier([skew, None]))
    await runtime.on_bundle(None)
    frozen = by_type(published[-1])["Frozen"]
    assert frozen.is_true and frozen.reason == "ClockSkew" and "clock is ahead" in frozen.message
    assert runtime.ops.refusals == ["ClockSkew"] and runtime.ops.rejections == []  # counted, not a bad bundle
    await runtime.on_bundle(None)  # the clocks agree again: fresh metadata verifies
    assert "Frozen" not in by_type(published[-1]) and runtime.frozen is None


async def test_a_refused_bundle_is_recorded_with_its_reason_and_nothing_is_applied():
    runtime, published = runtime_with(StandInVerifier([VerificationError("bad", reason="BadSignature")]))
    await runtime.on_bundle(None)
    assert by_type(published[-1])["Verified"] == Condition(
        "Verified", FALSE, "BadSignature", "release ?: bad"
    )
    assert runtime.ops.rejections == ["BadSignature"] and runtime.current is None
