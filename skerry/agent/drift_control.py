"""Drift correction and the operator's controls: what the agent does about what the monitor sees.

The ``Monitor`` reports drift found on its watches (object, field, the
manager that changed it). Under drift policy ``correct`` (the default) the
drifted objects are re-applied at once, object by object, through the
engine's ``correct``; a fight with another controller is slowed by a
per-object backoff (``reconcile/backoff.py``) and reported as
``CorrectionBackoff``. Under ``detect`` drift is only reported.

The operator's controls live as annotations on the inventory ConfigMap,
which the monitor also watches: ``skerry.io/suspend: "true"`` (the engine
applies nothing while it is set; drift is reported, not corrected; removing
it re-applies the current bundle) and ``skerry.io/reconcile-requested-at``
(a new value forces a full reconcile now, like Flux's requestedAt).

The decisions (``should_correct``, ``plan_controls``, ``correction_note``)
are pure functions; ``DriftControl`` carries them out on the event loop,
holding the runtime's lock while it corrects, so a correction never
interleaves with a reconcile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog

from skerry.agent.conditions import DriftView, HeldCorrection
from skerry.agent.reconcile.backoff import CorrectionBackoff, Waiting
from skerry.agent.reconcile.drift import Drift
from skerry.agent.reconcile.inventory import RECONCILE_ANNOTATION, SUSPEND_ANNOTATION
from skerry.agent.reconcile.model import FAILED, Condition
from skerry.core.clock import Clock

log = structlog.get_logger("skerry.agent")

# Recent corrections kept for the DriftCorrected condition (a report is not a log).
MAX_CORRECTIONS_KEPT = 50


def should_correct(drifts: list[Drift], *, policy: str, suspended: bool, has_bundle: bool) -> bool:
    """Correct now: there is drift, the policy corrects, nothing suspends it, and a bundle says what is right."""
    return bool(drifts) and policy == "correct" and not suspended and has_bundle


def correction_note(stamp: str, drift: Drift, corrections: int) -> str:
    """``<time> <drift> (correction n in a row)``: one line of the DriftCorrected condition."""
    again = f" (correction {corrections} in a row)" if corrections > 1 else ""
    return f"{stamp} {drift.describe()}{again}"


@dataclasses.dataclass(frozen=True)
class ControlStep:
    """What the inventory annotations ask for now."""

    suspend: bool | None  # True: suspend, False: resume, None: unchanged
    reconcile_now: bool  # a new reconcile request to act on
    handled: str  # the request value that is handled from now on


def plan_controls(
    annotations: Mapping[str, str], *, suspended: bool, handled: str, reconciles: int, has_bundle: bool
) -> ControlStep:
    """The operator's annotations against the agent's state.

    A reconcile request already present when the agent starts (before its
    first reconcile) is taken as handled, not acted on: it was for an
    earlier agent. While suspended a request is noted, not acted on.
    """
    wants_suspend = str(annotations.get(SUSPEND_ANNOTATION, "")).lower() == "true"
    requested = str(annotations.get(RECONCILE_ANNOTATION, ""))
    change = wants_suspend if wants_suspend != suspended else None
    if not requested or requested == handled:
        return ControlStep(change, False, handled)
    first = not handled and reconciles == 0
    return ControlStep(change, not first and has_bundle and not wants_suspend, requested)


class DriftControl:
    """Corrects drift and follows the operator's controls; its facts feed the conditions."""

    def __init__(
        self,
        config,
        clock: Clock,
        runtime,
        *,
        monitor=None,
        publish: Callable[[], object],
        count_corrections: Callable[[int], None] = lambda n: None,
        backoff: CorrectionBackoff | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        on_handled: Callable[[str], Awaitable[None]] | None = None,
    ):
        self.config = config
        self.clock = clock
        self.runtime = runtime
        self.monitor = monitor
        self._publish = publish
        self._count = count_corrections
        # Per-object backoff of drift corrections (a fight with another controller is no hot loop).
        self.backoff = backoff if backoff is not None else CorrectionBackoff()
        self._monotonic = monotonic
        self._on_handled = on_handled  # a requested reconcile is done (the in-cluster status says so)
        self.wakeup = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        # Facts.
        self.suspended = False
        self.suspension = ""  # why, when the engine refused under the annotation ("" the annotation)
        self.reconcile_request = ""  # the last request acted on, for its condition
        self._handled = ""
        self.corrected: list[str] = []  # recent correction notes, newest last (bounded)
        self.corrections = 0
        self.held: list[Waiting] = []  # corrections held back now

    # --- hooks from the runtime -------------------------------------------------------------

    def reconciled(self) -> None:
        """A reconcile finished: watch what it applied; forget the backoff of objects it no longer has."""
        if self.monitor is not None:
            self.monitor.retarget()
            self.backoff.forget(list(self.runtime.reconciler.applied.refs()))

    def engine_suspended(self, condition: Condition) -> None:
        """The engine applied nothing: the suspend annotation was set when it looked."""
        self.suspended = True
        self.suspension = condition.message

    # --- the operator's controls ------------------------------------------------------------

    def control(self, annotations: dict) -> None:
        """The inventory ConfigMap's annotations changed (runs on the event loop)."""
        runtime = self.runtime
        step = plan_controls(
            annotations,
            suspended=self.suspended,
            handled=self._handled,
            reconciles=runtime.reconciles,
            has_bundle=runtime.current is not None,
        )
        self._handled = step.handled
        if step.suspend is True:
            self.suspended, self.suspension = True, ""
            log.warning("reconciliation suspended by the inventory annotation", annotation=SUSPEND_ANNOTATION)
            asyncio.ensure_future(self._publish())
        elif step.suspend is False:
            self.suspended, self.suspension = False, ""
            log.info("reconciliation resumed")
            if runtime.current is not None:
                asyncio.ensure_future(runtime.guarded(runtime.apply, runtime.current))
            else:
                asyncio.ensure_future(self._publish())
        if step.reconcile_now:
            log.info("reconcile requested", requested_at=step.handled)
            self.reconcile_request = step.handled
            asyncio.ensure_future(self._reconcile_now(step.handled))

    async def _reconcile_now(self, requested: str) -> None:
        await self.runtime.guarded(self.runtime.apply, self.runtime.current)
        if self._on_handled is not None:
            await self._on_handled(requested)

    # --- drift ------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            await self.runtime.guarded(self.on_drift)

    async def on_drift(self) -> None:
        held: list[Waiting] = []
        if should_correct(
            self.monitor.current_drifts(),
            policy=self.config.drift_policy,
            suspended=self.suspended,
            has_bundle=self.runtime.current is not None,
        ):
            async with self.runtime.lock:
                held = await self._correct()
        self.held = held
        await self._publish()

    async def _correct(self) -> list[Waiting]:
        drifts = self.monitor.current_drifts()  # re-read: a reconcile may have fixed them
        keys = list(dict.fromkeys(d.ref.key for d in drifts))
        now = self._monotonic()
        due, held = self.backoff.split(keys, now)
        self.held = held  # now, not after the corrections: status never shows a due key as held
        if due:
            results = await asyncio.to_thread(self.runtime.reconciler.correct, due)
            stamp = self.clock.now().isoformat()
            counts = {k: self.backoff.corrected(k, now) for k in due}
            for d in drifts:
                if d.ref.key not in counts:
                    continue
                log.warning(
                    "drift corrected",
                    object=str(d.ref),
                    field=d.field,
                    changed_by=d.changed_by,
                    live=d.live,
                    git=d.desired,
                    corrections=counts[d.ref.key],
                )
                self.corrected.append(correction_note(stamp, d, counts[d.ref.key]))
            self.corrected = self.corrected[-MAX_CORRECTIONS_KEPT:]
            self.corrections += len(due)
            self._count(len(due))
            failed = [r for r in results if r.action == FAILED]
            if failed:
                log.warning("drift correction failed", first=failed[0].message)
        if held:
            self._wake_after(held)
        return held

    def _wake_after(self, held: list[Waiting]) -> None:
        wait = min(w.seconds_left for w in held)
        log.warning(
            "drift correction backing off",
            objects=len(held),
            first=str(self.runtime.reconciler.applied.ref_of(held[0].key)),
            corrections=held[0].corrections,
            seconds=round(wait, 1),
        )
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(wait, self.wakeup.set)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.monitor is not None:
            self.monitor.stop()

    # --- facts for the conditions -----------------------------------------------------------

    def view(self) -> DriftView | None:
        """The drift facts (None without a monitor)."""
        monitor = self.monitor
        if monitor is None:
            return None
        runtime = self.runtime
        health = None
        if runtime.last_result is not None and runtime.applied_at is not None:
            health = monitor.health_condition(
                elapsed_seconds=self._monotonic() - runtime.applied_at,
                timeout_seconds=self.config.health_timeout,
            )
        applied = runtime.reconciler.applied
        return DriftView(
            drifts=tuple(monitor.current_drifts()),
            policy=self.config.drift_policy,
            held=tuple(
                HeldCorrection(str(applied.ref_of(w.key)), w.corrections, w.fighting_for, w.seconds_left)
                for w in self.held
            ),
            corrected=tuple(self.corrected),
            corrections=self.corrections,
            health=health,
            watch_errors=tuple(dict(monitor.errors).items()),
        )
