"""Pure: what the agent says about itself, as conditions computed from one snapshot of its facts.

The reconcile result carries the engine's conditions (Applied, Pruned,
Inventory, Ready); the agent adds its own, each from a fact the loop, the
drift control or the monitor recorded (``AgentSnapshot``):

    Verified          the last verdict on a bundle (True from the hub or the cache; False: the refusal reason)
    Stale             the bundle re-applied from the cache had expired
    Rendered          False while the hub cannot render this cluster
    Fresh / Frozen    the trusted metadata's horizon, or the freeze after it passed
    Suspended         the operator's suspend annotation (or the engine refusing under it)
    ReconcileRequest  the last reconcile-now request handled
    Drifted, DriftCorrected, CorrectionBackoff, Healthy, Watching   from the monitor's watches
    APIServerSlow     True while the API server's recent applies are slow (absent otherwise)

Keeping this a function of data (no clock, no I/O, no locks) is what lets
every message and status be tested without an API server, and gives the
ready file, the hub report and the signed report one source.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt

from skerry.agent.config import SLOW_APPLY_SECONDS
from skerry.agent.reconcile.drift import Drift
from skerry.agent.reconcile.inventory import RECONCILE_ANNOTATION, SUSPEND_ANNOTATION
from skerry.agent.reconcile.model import FALSE, TRUE, Condition, ReconcileResult

# Bounds on what a status report carries about drift (a report is not a log).
MAX_DRIFTS_SHOWN = 10


@dataclasses.dataclass(frozen=True)
class Verification:
    """The last verdict on a bundle."""

    accepted: bool
    release: str  # as people read it (``r7``); "?" when a refused message named none
    digest: str = ""
    reason: str = ""  # a refusal's reason (the attack class)
    error: str = ""  # a refusal's message
    from_cache: bool = False  # re-verified from the local cache at start


@dataclasses.dataclass(frozen=True)
class Stale:
    """The bundle re-applied from the cache had expired (kept as the last good state)."""

    release: str  # as people read it (``r7``)
    expired_at: _dt.datetime


@dataclasses.dataclass(frozen=True)
class RenderFailure:
    revision: str
    message: str


# The refusal reasons of a freeze (expired metadata: nothing new is accepted, the last good state stays).
# ``Freeze``: the hub serves metadata it has not re-signed (stopped, or a mirror replaying old files).
# ``ClockSkew``: the hub re-signed its timestamp since this agent's last refresh and it is *already*
# expired by this host's clock: the two clocks disagree (this one ahead, or the hub's behind).
FREEZE = "Freeze"
CLOCK_SKEW = "ClockSkew"
FREEZE_REASONS = (FREEZE, CLOCK_SKEW)


@dataclasses.dataclass(frozen=True)
class Freeze:
    """Trusted metadata expired: nothing new is accepted."""

    error: str
    last_release: str  # as people read it (``r7``)
    suspends: bool  # freeze policy ``suspend``: the last good state is not even re-applied
    reason: str = FREEZE  # or CLOCK_SKEW: the Frozen condition's reason


@dataclasses.dataclass(frozen=True)
class HeldCorrection:
    """A drift correction held back by the correction backoff."""

    ref: str
    corrections: int
    fighting_for: float  # seconds
    seconds_left: float


@dataclasses.dataclass(frozen=True)
class DriftView:
    """What the monitor and the drift control know (absent without watches)."""

    drifts: tuple[Drift, ...] = ()
    policy: str = "correct"  # correct | detect
    held: tuple[HeldCorrection, ...] = ()
    corrected: tuple[str, ...] = ()  # recent correction notes, newest last
    corrections: int = 0
    health: Condition | None = None  # the health rollup once something was applied
    watch_errors: tuple[tuple[str, str], ...] = ()  # (watch, last error)


@dataclasses.dataclass(frozen=True)
class ApiLatency:
    """How long the API server took to answer the agent's recent applies (``metrics.LatencyWindow``)."""

    median: float  # seconds
    samples: int


@dataclasses.dataclass(frozen=True)
class AgentSnapshot:
    cluster: str
    last_result: ReconcileResult | None = None
    verification: Verification | None = None
    stale: Stale | None = None
    render_failure: RenderFailure | None = None
    fresh_until: _dt.datetime | None = None
    freeze: Freeze | None = None
    suspended: bool = False
    suspension: str = ""  # why: the annotation, or the engine's refusal message
    reconcile_request: str = ""  # the requested-at value last handled ("" none shown)
    drift: DriftView | None = None
    api_latency: ApiLatency | None = None
    slow_apply: float = SLOW_APPLY_SECONDS  # the median apply time from which the API server is called slow


def status_result(snapshot: AgentSnapshot) -> ReconcileResult:
    """The last reconcile result with the agent's conditions merged in (what every report shows)."""
    base = snapshot.last_result or ReconcileResult(
        cluster=snapshot.cluster,
        release=0,
        digest="",
        revision="",
        conditions=(Condition("Ready", FALSE, "NothingApplied", "no verified bundle applied yet"),),
    )
    return base.with_conditions(agent_conditions(snapshot))


def agent_conditions(snapshot: AgentSnapshot) -> list[Condition]:
    out = [
        c
        for c in (
            _verified(snapshot.verification),
            _stale(snapshot.stale),
            _rendered(snapshot.render_failure),
            _trust(snapshot),
            _suspended(snapshot),
            _request(snapshot.reconcile_request),
            _api_slow(snapshot.api_latency, snapshot.slow_apply),
        )
        if c is not None
    ]
    if snapshot.drift is not None:
        out.extend(drift_conditions(snapshot.drift, suspended=snapshot.suspended))
    return out


def _verified(v: Verification | None) -> Condition | None:
    if v is None:
        return None
    if not v.accepted:
        return Condition("Verified", FALSE, v.reason, f"release {v.release}: {v.error}")
    if v.from_cache:
        return Condition(
            "Verified", TRUE, "CachedBundle", f"release {v.release} re-verified from the local cache"
        )
    return Condition("Verified", TRUE, "Verified", f"release {v.release} ({v.digest}) verified")


def _stale(stale: Stale | None) -> Condition | None:
    if stale is None:
        return None
    return Condition(
        "Stale",
        TRUE,
        "Expired",
        f"release {stale.release} re-applied from the cache; its signature expired at {stale.expired_at.isoformat()}",
    )


def _rendered(failure: RenderFailure | None) -> Condition | None:
    if failure is None:
        return None
    return Condition(
        "Rendered", FALSE, "RenderFailed", f"revision {failure.revision or '?'}: {failure.message}"
    )


def _trust(snapshot: AgentSnapshot) -> Condition | None:
    freeze = snapshot.freeze
    if freeze is not None:
        return Condition(
            "Frozen",
            TRUE,
            freeze.reason,
            f"{freeze.error} — last good release {freeze.last_release} stays applied"
            + (" and reconciling is suspended" if freeze.suspends else ""),
        )
    if snapshot.fresh_until is not None:
        return Condition(
            "Fresh", TRUE, "ValidUntil", f"trusted metadata valid until {snapshot.fresh_until.isoformat()}"
        )
    return None


def _suspended(snapshot: AgentSnapshot) -> Condition | None:
    if not snapshot.suspended:
        return None
    message = snapshot.suspension or f"{SUSPEND_ANNOTATION}=true: nothing is applied or corrected"
    return Condition("Suspended", TRUE, "Suspended", message)


def _request(requested: str) -> Condition | None:
    if not requested:
        return None
    return Condition("ReconcileRequest", TRUE, "Handled", f"{RECONCILE_ANNOTATION}={requested} handled")


def _api_slow(latency: ApiLatency | None, slow_from: float) -> Condition | None:
    if latency is None or latency.median < slow_from:
        return None
    return Condition(
        "APIServerSlow",
        TRUE,
        "SlowRequests",
        f"the API server took {latency.median:.1f} s per apply (median of the last {latency.samples}, slow "
        f"from {slow_from:g} s): reconciles take longer, one at a time; nothing is pruned on a failure",
    )


def drift_mode(policy: str, *, suspended: bool, held: int) -> str:
    """How drift is being handled, in words."""
    if policy == "detect":
        return "not corrected (detect-only)"
    if suspended:
        return "not corrected (suspended)"
    return f"being corrected ({held} object(s) backing off)" if held else "being corrected"


def drift_conditions(view: DriftView, *, suspended: bool) -> list[Condition]:
    """Drifted, DriftCorrected, CorrectionBackoff, Healthy, Watching."""
    out: list[Condition] = []
    if view.drifts:
        shown = "; ".join(d.describe() for d in view.drifts[:MAX_DRIFTS_SHOWN])
        hidden = len(view.drifts) - MAX_DRIFTS_SHOWN
        more = f" (+{hidden} more)" if hidden > 0 else ""
        mode = drift_mode(view.policy, suspended=suspended, held=len(view.held))
        message = f"{len(view.drifts)} drifted field(s), {mode}: {shown}{more}"
        out.append(Condition("Drifted", TRUE, "DriftDetected", message))
    else:
        out.append(Condition("Drifted", FALSE, "InSync", "live objects match Git"))
    if view.corrected:
        latest = " | ".join(view.corrected[-MAX_DRIFTS_SHOWN:])
        out.append(
            Condition(
                "DriftCorrected", TRUE, "Corrected", f"{view.corrections} correction(s); latest: {latest}"
            )
        )
    if view.held and view.drifts:
        shown = "; ".join(
            f"{w.ref}: corrected {w.corrections} times in {w.fighting_for:.0f} s, "
            f"backing off, next correction in {w.seconds_left:.0f} s"
            for w in view.held[:MAX_DRIFTS_SHOWN]
        )
        message = f"{shown} (something keeps changing what Git owns: another controller or a script?)"
        out.append(Condition("CorrectionBackoff", TRUE, "BackingOff", message))
    if view.health is not None:
        out.append(view.health)
    if view.watch_errors:
        watch, error = view.watch_errors[0]
        message = f"{len(view.watch_errors)} watch(es) failing; {watch}: {error}"
        out.append(Condition("Watching", FALSE, "WatchFailed", message))
    return out
