"""The agent's loop: watch the hub -> verify -> cache -> apply, and what it does when that fails.

::

    load the cached bundle -> re-verify -> re-apply it (the last good state, even without a hub)
    watch the hub -> verify each bundle -> cache it (still sealed) -> reconcile -> publish
    a reconcile that did not end Ready is retried with backoff until it does or a newer bundle arrives

A bundle that fails verification is logged with its reason (the attack
class) and published; nothing of it is applied and the last good state
stays. A render error from the hub is published; nothing is pruned. The
loop also refreshes trust metadata without a notification (every
``trust_poll``, at the latest just after the metadata's horizon) and, when
the metadata expired, freezes: the last good state stays (re-applied under
freeze policy ``keep``, left alone under ``suspend``) and nothing new is
accepted until fresh metadata arrives.

Reconciles run in a worker thread (the Kubernetes client blocks) and one
at a time (``lock``, shared with the drift correction). The loop records
facts (the last verdict, the freeze, the last result); what they mean as
conditions is ``conditions.py``. The decisions — when to retry, when to
poll — are the pure functions at the top of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from skerry.agent import evidence
from skerry.agent.conditions import FREEZE_REASONS, Freeze, RenderFailure, Stale, Verification
from skerry.agent.reconcile.model import FALSE, Condition, ReconcileResult
from skerry.agent.secrets import bundle_secrets, is_sealed_secret
from skerry.core import release_number
from skerry.core.backoff import capped_exponential
from skerry.core.bundle import VerifiedBundle
from skerry.core.clock import Clock
from skerry.core.errors import SkerryError, VerificationError

log = structlog.get_logger("skerry.agent")

# A refresh is scheduled this long after the trusted metadata's horizon (and never sooner than this
# from now): the first refresh that can see the expiry, not one a clock tick too early.
HORIZON_SLACK_SECONDS = 0.5

def retry_delay(
    last_result: ReconcileResult | None, attempt: int, *, base: float, cap: float
) -> float | None:
    """Seconds until the last bundle is reconciled again: None when it ended Ready (or nothing ran)."""
    if last_result is None or last_result.ready:
        return None
    return capped_exponential(attempt, base=base, cap=cap)


def next_poll_at(
    now: float, scheduled: float | None, *, every: float, horizon_in: float | None, frozen: bool
) -> float:
    """Monotonic time of the next unprompted trust refresh: ``every`` seconds after the last, at the
    latest just after the trusted metadata's horizon (``horizon_in`` seconds away; not while frozen)."""
    at = scheduled if scheduled is not None else now + every
    if horizon_in is not None and not frozen:
        at = min(at, now + max(horizon_in + HORIZON_SLACK_SECONDS, HORIZON_SLACK_SECONDS))
    return at


def next_wakeup(retry: float | None, poll: float | None) -> tuple[float | None, str]:
    """``(timeout, "retry" | "poll" | "")``: what the loop does if no hub event comes first."""
    if retry is None and poll is None:
        return None, ""
    if retry is None or (poll is not None and poll <= retry):
        return poll, "poll"
    return retry, "retry"


def may_reapply(current: VerifiedBundle | None, freeze: Freeze | None) -> bool:
    """Whether a retry re-applies the last bundle: not without one, nor while a freeze suspends it."""
    return current is not None and not (freeze is not None and freeze.suspends)


class Runtime:
    """The loop and its facts; ``AgentApp`` wires it, ``DriftControl`` shares its lock."""

    def __init__(
        self,
        config,
        clock: Clock,
        *,
        verifier,
        cache,
        hub,
        reconciler,
        unsealer,
        ops,
        publish: Callable[[], Awaitable[None]],
        retry_base: float = 2.0,
        retry_cap: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.clock = clock
        self.verifier = verifier
        self.cache = cache
        self.hub = hub
        self.reconciler = reconciler
        self.unsealer = unsealer
        self.ops = ops
        self._publish = publish
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._monotonic = monotonic
        self.lock = asyncio.Lock()  # one reconcile or correction at a time
        # Hooks the app wires to the drift control.
        self.on_reconciled: Callable[[], None] = lambda: None
        self.on_suspended: Callable[[Condition], None] = lambda condition: None
        # Facts.
        self.current: VerifiedBundle | None = None  # the last verified bundle (applied or being applied)
        self.last_result: ReconcileResult | None = None
        self.last_rejection: VerificationError | None = None
        self.verification: Verification | None = None
        self.stale: Stale | None = None
        self.render_failure: RenderFailure | None = None
        self.fresh_until = None  # the horizon of the trusted metadata last verified
        self.freeze: Freeze | None = None
        self.frozen: VerificationError | None = None  # set while trusted metadata is expired
        self.reconciles = 0
        self.applied_at: float | None = None  # monotonic time of the last reconcile
        self.inflight: asyncio.Future | None = None
        self._retry_attempt = 0
        # Monotonic time of the next retry of a reconcile that did not end Ready (None: no retry due).
        # A deadline, not a delay recomputed at each wake-up: a trust poll or a hub event that comes
        # sooner than the retry must not postpone it (a poll every 2 s kept a 2 s retry from ever firing).
        self._retry_at: float | None = None
        self._next_poll: float | None = None

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        await self.guarded(self.restore_from_cache)
        # the director may have moved on while we were away: ask now, not at the first event
        await self.guarded(self.on_bundle, None)
        verifier = self.verifier
        watch = self.hub.watch(position=lambda: (verifier.last_release, verifier.last_digest))
        next_event: asyncio.Future | None = None
        try:
            while True:
                if next_event is None:
                    next_event = asyncio.ensure_future(anext(watch))
                retry_in = None if self._retry_at is None else max(0.0, self._retry_at - self._monotonic())
                timeout, then = next_wakeup(None if self.current is None else retry_in, self._poll_delay())
                done, _ = await asyncio.wait({next_event}, timeout=timeout)
                if next_event in done:
                    response = next_event.result()
                    next_event = None
                    await self.guarded(self.on_response, response)
                elif then == "poll":
                    await self.guarded(self.on_bundle, None)
                else:
                    await self.guarded(self.retry)
        finally:
            if next_event is not None:
                next_event.cancel()
                with contextlib.suppress(BaseException):
                    await next_event
            with contextlib.suppress(BaseException):
                await watch.aclose()

    async def guarded(self, fn, *args) -> None:
        try:
            await fn(*args)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad event must not stop the agent
            log.exception("unexpected error handling an event; the agent carries on")

    def _poll_delay(self) -> float | None:
        """Seconds until the next refresh without a notification."""
        now = self._monotonic()
        horizon = getattr(self.verifier, "valid_until", None)
        horizon_in = None if horizon is None else (horizon - self.clock.now()).total_seconds()
        self._next_poll = next_poll_at(
            now,
            self._next_poll,
            every=self.config.trust_poll,
            horizon_in=horizon_in,
            frozen=self.frozen is not None,
        )
        return max(0.0, self._next_poll - now)

    # --- events -----------------------------------------------------------------------------

    async def on_response(self, response) -> None:
        event = response.WhichOneof("event")
        if event == "bundle":
            await self.on_bundle(response.bundle)
        elif event == "render_error":
            err = response.render_error
            log.warning(
                "hub cannot render this cluster; keeping the applied state",
                revision=err.revision,
                error=err.message,
            )
            self.render_failure = RenderFailure(err.revision, err.message)
            await self.ops.render_failed(err.revision, err.message)
            await self._publish()
        else:
            log.warning("ignoring an empty watch event from the hub")

    async def on_bundle(self, signed) -> None:
        self._next_poll = None
        try:
            verified = await asyncio.to_thread(self.verifier.verify_message, signed)
        except SkerryError as e:
            await self._refused(e, signed)
            return
        if self.frozen is not None:
            log.warning("trust metadata is fresh again; the freeze is over")
            self.frozen = self.freeze = None
        if verified is None:  # the director still names the applied bundle
            self._freshness()
            await self._publish()
            return
        await self.ops.verified()
        self._freshness()
        self.render_failure = self.stale = None
        self.verification = Verification(True, verified.label, verified.digest)
        try:
            await asyncio.to_thread(self.cache.save, verified)
        except SkerryError as e:
            log.warning("cannot cache the verified bundle; applying anyway", reason=e.reason, error=str(e))
        await self.apply(verified)

    async def _refused(self, e: SkerryError, signed) -> None:
        if not isinstance(e, VerificationError):
            log.warning("cannot refresh trust metadata; keeping the applied state", reason=e.reason, error=str(e))
            return
        self.ops.refused(e)
        if e.reason in FREEZE_REASONS:
            await self._freeze(e)
            return
        self.last_rejection = e
        log.error(
            "bundle rejected; nothing of it is applied",
            reason=e.reason,
            error=str(e),
            version=getattr(signed, "version", 0),
            release_name=release_number.hinted(signed),
            digest=getattr(signed, "digest", ""),
        )
        self.verification = Verification(False, release_number.hinted(signed), reason=e.reason, error=str(e))
        await self.ops.rejected(e, signed)
        await self._publish()

    def _freshness(self) -> None:
        """Remember the "valid until" horizon of what was just verified."""
        horizon = getattr(self.verifier, "valid_until", None)
        if horizon is not None and self.frozen is None:
            self.fresh_until = horizon

    async def restore_from_cache(self) -> None:
        try:
            restored = await asyncio.to_thread(self.cache.restore, self.verifier)
        except VerificationError as e:
            log.error("cached bundle no longer verifies; not re-applied", reason=e.reason, error=str(e))
            return
        if restored is None:
            log.info("no cached bundle; waiting for the hub")
            return
        verified = restored.verified
        self.verification = Verification(True, verified.label, verified.digest, from_cache=True)
        if restored.expired:
            log.warning(
                "cached bundle expired; re-applying the last good state until the hub sends a fresh one",
                release=verified.release,
                release_name=verified.label,
                expired_at=verified.expires.isoformat(),
            )
            self.stale = Stale(verified.label, verified.expires)
        else:
            log.info("re-applying the cached bundle", release=verified.release, release_name=verified.label)
        await self.apply(verified)

    async def _freeze(self, error: VerificationError) -> None:
        """Expired metadata: keep the last good state, accept nothing new, say so loudly."""
        self.frozen = self.last_rejection = error
        policy = self.config.freeze_policy
        log.error(
            "FROZEN: trusted metadata expired; no change is accepted until the hub serves fresh metadata",
            reason=error.reason,
            error=str(error),
            applied_release=self.verifier.last_release,
            applied_release_name=self._last_label(),
            policy=policy,
        )
        self.fresh_until = None
        self.freeze = Freeze(str(error), self._last_label(), suspends=policy == "suspend", reason=error.reason)
        await self._publish()

    def _last_label(self) -> str:
        """The last verified release as people read it (``r7``)."""
        return release_number.label(self.verifier.last_number, self.verifier.last_release)

    def _schedule_retry(self) -> None:
        delay = retry_delay(self.last_result, self._retry_attempt, base=self._retry_base, cap=self._retry_cap)
        self._retry_at = None if delay is None else self._monotonic() + delay

    async def retry(self) -> None:
        if not may_reapply(self.current, self.freeze):
            self._schedule_retry()  # not now; look again one delay later
            return
        log.info("retrying the reconcile", release=self.current.release, release_name=self.current.label,
                 attempt=self._retry_attempt)
        await self.apply(self.current, retry=True)

    # --- applying ---------------------------------------------------------------------------

    async def apply(self, verified: VerifiedBundle, *, retry: bool = False) -> None:
        async with self.lock:
            await self._apply_locked(verified, retry=retry)

    async def _apply_locked(self, verified: VerifiedBundle, *, retry: bool = False) -> None:
        self.current = verified
        await self.ops.reconciling(verified)
        started = self._monotonic()
        self.inflight = asyncio.get_running_loop().run_in_executor(None, self._reconcile, verified)
        try:
            result = await asyncio.shield(self.inflight)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - reported as a condition
            log.exception("reconcile failed unexpectedly")
            result = ReconcileResult(
                cluster=verified.bundle.cluster,
                release=verified.release,
                number=verified.number,
                digest=verified.digest,
                revision=verified.bundle.revision,
                conditions=(Condition("Ready", FALSE, "ReconcileError", f"{type(e).__name__}: {e}"),),
            )
        suspended = result.condition("Suspended")
        if suspended is not None:
            # Nothing was applied: keep showing what is applied, and why the new one is not.
            self.on_suspended(suspended)
            self.reconciles += 1
            await self._publish()
            return
        self._retry_attempt = self._retry_attempt + 1 if (retry and not result.ready) else 0
        self.last_result = result
        self._schedule_retry()
        await self.ops.reconciled(result, self._monotonic() - started, verified)
        self.reconciles += 1
        self.applied_at = self._monotonic()
        self.on_reconciled()
        await self._publish()

    def _reconcile(self, verified: VerifiedBundle) -> ReconcileResult:
        # The sealer unseals only what this signed bundle holds; plaintext lives for this reconcile only.
        metadata = verified.metadata
        if self.unsealer is not None and any(is_sealed_secret(o) for o in verified.bundle.objects):
            # The sealer re-verifies the director/release metadata this agent trusted.
            try:
                metadata = evidence.read(
                    self.verifier.metadata_dir, self.config.cluster, self.config.environment, verified.digest
                )
            except VerificationError as e:
                log.warning("no TUF evidence for the sealer; bundle unseal will be refused", error=str(e))
        with bundle_secrets(self.unsealer, metadata, verified.raw, verified.bundle.objects):
            return self.reconciler.reconcile(verified)
