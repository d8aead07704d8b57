"""Composition root of the agent: config -> verifier, cache, kube, unsealer, reconciler, hub client.

The loop::

    load the cached bundle -> re-verify -> re-apply it (the last good state, even without a hub)
    watch the hub -> verify each bundle -> cache it (still sealed) -> reconcile -> report status
    a reconcile that did not end Ready is retried with backoff until it does or a newer bundle arrives

A bundle that fails verification is logged with its reason (the attack
class) and reported; nothing of it is applied and the last good state
stays. A render error from the hub is reported; nothing is pruned.
Reconciles run in a worker thread (the Kubernetes client blocks) and one
at a time. After each one the status goes to the hub (retried until it
arrives, newest wins) and, if ``ready_file`` is set, a small JSON file is
written atomically::

    {"cluster": "oslo", "applied_release": 7, "applied_digest": "sha256:...",
     "revision": "<sha>", "ready": true, "conditions": [...]}

Beside the hub loop, a ``Monitor`` watches what was applied: drift found
on its watches is reported (object, field, the manager that changed it) and,
under the default policy ``correct``, re-applied at once, object by object;
under ``detect`` it is only reported. Health is rolled up per bundle into a
``Healthy`` condition (False after ``health_timeout`` of progress). The
operator's controls live as annotations on the inventory ConfigMap, which
the monitor watches: ``skerry.io/suspend: "true"`` (the engine applies
nothing while it is set; drift is reported, not corrected) and
``skerry.io/reconcile-requested-at`` (a new value forces a full reconcile
now, like Flux's requestedAt).

``AgentApp`` runs in-process (tests, the demo); ``run`` is the service
behind ``skerry agent run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import time
from collections.abc import Callable

import structlog

from skerry.agent.cache import BundleCache
from skerry.agent.config import AgentConfig
from skerry.agent.ops import AgentOps
from skerry.agent.reconcile.model import FALSE, TRUE, Condition, ReconcileResult
from skerry.agent.secrets import GrpcUnsealer, NoUnsealer, Unsealer, bundle_secrets, is_sealed_secret
from skerry.agent.status import to_proto
from skerry.core.bundle import VerifiedBundle
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import SkerryError, VerificationError
from skerry.core.files import atomic_write, ensure_dir

log = structlog.get_logger("skerry.agent")

# Bounds on what a status report carries about drift (a report is not a log).
MAX_DRIFTS_SHOWN = 10
MAX_CORRECTIONS_KEPT = 50


class AgentApp:
    def __init__(
        self,
        config: AgentConfig,
        *,
        kube=None,
        unsealer: Unsealer | None = None,
        hub=None,
        clock: Clock | None = None,
        reconciler_options: dict | None = None,
        retry_base: float = 2.0,
        retry_cap: float = 300.0,
        renew_certificate: bool = True,
        drift_backoff=None,
    ):
        self.config = config.validate()
        self.clock = clock or SystemClock()
        self._kube = kube
        self._unsealer = unsealer
        self._hub = hub
        self._reconciler_options = dict(reconciler_options or {})
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self.verifier = None  # skerry.agent.tuf_client.TufVerifier
        self.cache: BundleCache | None = None
        self.kube = None
        self.ops: AgentOps | None = None
        self.unsealer: Unsealer | None = None
        self.reconciler = None
        self.hub = None
        self.current: VerifiedBundle | None = None  # the last verified bundle (applied or being applied)
        self.last_result: ReconcileResult | None = None
        self.last_rejection: VerificationError | None = None
        self.reconciles = 0
        self.reports_sent = 0
        self._conditions: dict[str, Condition] = {}
        self._retry_attempt = 0
        self._main_task: asyncio.Task | None = None
        self._report_task: asyncio.Task | None = None
        self._inflight: asyncio.Future | None = None
        self._pending_report = None
        self._report_wakeup: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None
        self.frozen: VerificationError | None = None  # set while trusted metadata is expired
        self.report_signer = None
        self.signed_reports_sent = 0
        self._next_poll: float | None = None
        self.monitor = None
        self.suspended = False
        self.corrected: list[str] = []  # recent drift corrections, newest last (bounded)
        self.drift_corrections = 0
        self._handled_request = ""
        self._applied_at: float | None = None
        self._drift_wakeup: asyncio.Event | None = None
        self._drift_task: asyncio.Task | None = None
        from skerry.agent.reconcile.backoff import CorrectionBackoff

        # Per-object backoff of drift corrections (a fight with another controller is no hot loop).
        self.drift_backoff = drift_backoff if drift_backoff is not None else CorrectionBackoff()
        self._held: list = []  # corrections held back now (backoff.Waiting), for status
        self._backoff_timer: asyncio.TimerHandle | None = None
        self._lock: asyncio.Lock | None = None
        self._renew = renew_certificate
        self.renewer = None
        self._renew_task: asyncio.Task | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Set everything up (failing fast on bad config) and start the loop in the background."""
        cfg = self.config
        ensure_dir(cfg.state_dir)
        self.verifier = self._tuf_verifier(cfg)
        self.cache = BundleCache(cfg.state_dir)
        if self._kube is None:
            from skerry.agent.kube import KubeClient

            self._kube = await asyncio.to_thread(KubeClient.from_kubeconfig, cfg.kubeconfig, cfg.kube_context)
        self.ops = AgentOps(self)  # metrics, ops server, BundleStatus + Events (skerry/agent/ops.py)
        self.kube = self.ops.kube(self._kube)
        await self.ops.start(self._kube)
        if self._unsealer is None:
            self._unsealer = (
                GrpcUnsealer(cfg.sealer_address, cfg.tls_files, domain=cfg.sealer_domain)
                if cfg.sealer_address
                else NoUnsealer()
            )
        self.unsealer = self._unsealer
        from skerry.agent.reconcile.engine import Reconciler

        self.reconciler = Reconciler(
            self.kube,
            self.unsealer,
            cfg.field_manager,
            cfg.namespace,
            allow_prune_all=cfg.allow_prune_all,
            **{"workers": cfg.apply_workers, **self._reconciler_options},
        )
        if self._hub is None:
            from skerry.agent.stream import HubClient

            self._hub = HubClient(cfg.hub_address, cfg.tls_files, cfg.cluster)
        self.hub = self._hub
        self._changed = asyncio.Condition()
        self._report_wakeup = asyncio.Event()
        self._drift_wakeup = asyncio.Event()
        self._lock = asyncio.Lock()
        if cfg.watch:
            from skerry.agent.monitor import Monitor
            from skerry.agent.reconcile.drift import IgnoreRule

            loop = asyncio.get_running_loop()
            self.monitor = Monitor(
                self.kube,
                self.reconciler,
                namespace=cfg.namespace,
                field_manager=cfg.field_manager,
                ignore=[IgnoreRule.parse(r) for r in cfg.drift_ignore],
                resync_seconds=cfg.resync_seconds,
                on_change=lambda: loop.call_soon_threadsafe(self._drift_wakeup.set),
                on_control=lambda annotations: loop.call_soon_threadsafe(self._control, annotations),
            )
            self.monitor.start()
        structlog.contextvars.bind_contextvars(cluster=cfg.cluster)
        log.info(
            "agent starting",
            hub=cfg.hub_address,
            sealer=cfg.sealer_address or "",
            namespace=cfg.namespace,
            last_release=self.verifier.last_release,
        )
        self._main_task = asyncio.create_task(self._main(), name="skerry-agent-main")
        self._report_task = asyncio.create_task(self._reporter(), name="skerry-agent-reporter")
        if self.monitor is not None:
            self._drift_task = asyncio.create_task(self._drift_loop(), name="skerry-agent-drift")
        if self._renew and hasattr(self.hub, "reload_credentials"):
            from skerry.agent.enroll import CertificateRenewer

            self.renewer = CertificateRenewer(
                cfg.hub_address, cfg.tls_files, cfg.cluster, on_renewed=self.hub.reload_credentials
            )
            self._renew_task = asyncio.create_task(self.renewer.run(), name="skerry-agent-renew")

    def _tuf_verifier(self, cfg):
        from skerry.agent.attest import ReportSigner
        from skerry.agent.tuf_client import GrpcFetcher, TufVerifier

        tls_files = cfg.tls_files
        self.report_signer = ReportSigner(cfg.hub_address, tls_files)
        return TufVerifier(cfg.cluster, cfg.environment, cfg.trust_root, cfg.state_dir,
                           lambda: GrpcFetcher(cfg.hub_address, tls_files), self.clock)

    async def stop(self, grace: float = 30.0) -> None:
        if self._backoff_timer is not None:
            self._backoff_timer.cancel()
        if self.monitor is not None:
            self.monitor.stop()
        tasks = (self._main_task, self._report_task, self._drift_task, self._renew_task)
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._inflight is not None and not self._inflight.done():
            log.info("waiting for the reconcile in progress to finish")
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._inflight), grace)
        if self.report_signer is not None:
            with contextlib.suppress(Exception):
                await self.report_signer.close()
        if self.hub is not None and hasattr(self.hub, "close"):
            with contextlib.suppress(Exception):
                await self.hub.close()
        if self.ops is not None:
            self.ops.stop()
        for closable in (self.unsealer, self.kube):
            close = getattr(closable, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        log.info("agent stopped")

    async def wait(self) -> None:
        """Until the loop ends (it only ends on stop, or on an unexpected error, which is raised)."""
        if self._main_task is not None:
            await self._main_task

    async def wait_until(self, predicate: Callable[[AgentApp], bool], timeout: float = 30.0) -> None:
        """Wait until ``predicate(self)`` holds after some reconcile/rejection/report (tests, demo)."""
        assert self._changed is not None, "start() first"

        async def _wait():
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

        await asyncio.wait_for(_wait(), timeout)

    # --- the loop ---------------------------------------------------------------------------

    async def _main(self) -> None:
        await self._guarded(self._restore_from_cache)
        # the director may have moved on while we were away: ask now, not at the first event
        await self._guarded(self._on_bundle, None)
        assert self.hub is not None and self.verifier is not None
        verifier = self.verifier
        watch = self.hub.watch(position=lambda: (verifier.last_release, verifier.last_digest))
        next_event: asyncio.Future | None = None
        try:
            while True:
                if next_event is None:
                    next_event = asyncio.ensure_future(anext(watch))
                delay = self._retry_delay()
                poll = self._poll_delay()
                timeout = poll if delay is None else (delay if poll is None else min(delay, poll))
                done, _ = await asyncio.wait({next_event}, timeout=timeout)
                if next_event in done:
                    response = next_event.result()
                    next_event = None
                    await self._guarded(self._on_response, response)
                elif poll is not None and timeout == poll:
                    await self._guarded(self._on_bundle, None)
                else:
                    await self._guarded(self._retry)
        finally:
            if next_event is not None:
                next_event.cancel()
                with contextlib.suppress(BaseException):
                    await next_event
            with contextlib.suppress(BaseException):
                await watch.aclose()

    async def _guarded(self, fn, *args) -> None:
        try:
            await fn(*args)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad event must not stop the agent
            log.exception("unexpected error handling an event; the agent carries on")

    async def _on_response(self, response) -> None:
        event = response.WhichOneof("event")
        if event == "bundle":
            await self._on_bundle(response.bundle)
        elif event == "render_error":
            err = response.render_error
            log.warning(
                "hub cannot render this cluster; keeping the applied state",
                revision=err.revision,
                error=err.message,
            )
            self._conditions["Rendered"] = Condition(
                "Rendered", FALSE, "RenderFailed", f"revision {err.revision or '?'}: {err.message}"
            )
            await self.ops.render_failed(err.revision, err.message)
            await self._publish()
        else:
            log.warning("ignoring an empty watch event from the hub")

    def _poll_delay(self) -> float | None:
        """Seconds until the next TUF refresh without a notification (at the latest, at expiry)."""
        import time

        now = time.monotonic()
        if self._next_poll is None:
            self._next_poll = now + self.config.trust_poll
        horizon = getattr(self.verifier, "valid_until", None)
        if horizon is not None and self.frozen is None:
            until = (horizon - self.clock.now()).total_seconds() + 0.5
            self._next_poll = min(self._next_poll, now + max(until, 0.5))
        return max(0.0, self._next_poll - now)

    def _freshness(self) -> None:
        """The "valid until" horizon as a condition."""
        horizon = getattr(self.verifier, "valid_until", None)
        if horizon is not None and self.frozen is None:
            self._conditions["Fresh"] = Condition("Fresh", TRUE, "ValidUntil",
                                                  f"trusted metadata valid until {horizon.isoformat()}")

    async def _on_bundle(self, signed) -> None:
        assert self.verifier is not None and self.cache is not None
        self._next_poll = None
        try:
            verified = await asyncio.to_thread(self.verifier.verify_message, signed)
        except SkerryError as e:
            if not isinstance(e, VerificationError):
                log.warning("cannot refresh trust metadata; keeping the applied state", error=str(e))
                return
            if e.reason == "Freeze":
                await self._freeze(e)
                return
            self.last_rejection = e
            log.error(
                "bundle rejected; nothing of it is applied",
                reason=e.reason,
                error=str(e),
                version=getattr(signed, "version", 0),
                digest=getattr(signed, "digest", ""),
            )
            self._conditions["Verified"] = Condition(
                "Verified", FALSE, e.reason, f"release {getattr(signed, 'version', '?')}: {e}"
            )
            await self.ops.rejected(e, signed)
            await self._publish()
            return
        if self.frozen is not None:
            log.warning("trust metadata is fresh again; the freeze is over")
            self.frozen = None
            self._conditions.pop("Frozen", None)
        if verified is None:  # the director still names the applied bundle
            self._freshness()
            await self._publish()
            return
        await self.ops.verified()
        self._freshness()
        self._conditions.pop("Rendered", None)
        self._conditions.pop("Stale", None)
        self._conditions["Verified"] = Condition(
            "Verified", TRUE, "Verified", f"release {verified.release} ({verified.digest}) verified"
        )
        try:
            await asyncio.to_thread(self.cache.save, verified)
        except (OSError, SkerryError) as e:
            log.warning("cannot cache the verified bundle; applying anyway", error=str(e))
        await self._apply(verified)

    async def _restore_from_cache(self) -> None:
        assert self.cache is not None and self.verifier is not None
        try:
            restored = await asyncio.to_thread(self.cache.restore, self.verifier)
        except VerificationError as e:
            log.error("cached bundle no longer verifies; not re-applied", reason=e.reason, error=str(e))
            return
        if restored is None:
            log.info("no cached bundle; waiting for the hub")
            return
        verified = restored.verified
        self._conditions["Verified"] = Condition(
            "Verified", TRUE, "CachedBundle", f"release {verified.release} re-verified from the local cache"
        )
        if restored.expired:
            log.warning(
                "cached bundle expired; re-applying the last good state until the hub sends a fresh one",
                release=verified.release,
                expired_at=verified.expires.isoformat(),
            )
            self._conditions["Stale"] = Condition(
                "Stale",
                TRUE,
                "Expired",
                f"release {verified.release} re-applied from the cache; its signature expired at "
                f"{verified.expires.isoformat()}",
            )
        else:
            log.info("re-applying the cached bundle", release=verified.release)
        await self._apply(verified)

    async def _freeze(self, error: VerificationError) -> None:
        """Expired metadata: keep the last good state, accept nothing new, say so loudly."""
        self.frozen = self.last_rejection = error
        policy = self.config.freeze_policy
        log.error(
            "FROZEN: trusted metadata expired; no change is accepted until the hub serves fresh metadata",
            reason=error.reason, error=str(error), applied_release=self.verifier.last_release,
            policy=policy,
        )
        self._conditions.pop("Fresh", None)
        self._conditions["Frozen"] = Condition(
            "Frozen", TRUE, "Freeze",
            f"{error} — last good release {self.verifier.last_release} stays applied"
            + (" and reconciling is suspended" if policy == "suspend" else ""),
        )
        await self._publish()

    async def _retry(self) -> None:
        if self.current is None or (self.frozen is not None and self.config.freeze_policy == "suspend"):
            return
        log.info("retrying the reconcile", release=self.current.release, attempt=self._retry_attempt)
        await self._apply(self.current, retry=True)

    def _retry_delay(self) -> float | None:
        if self.current is None or self.last_result is None or self.last_result.ready:
            return None
        return min(self._retry_cap, self._retry_base * (2 ** min(self._retry_attempt, 20)))

    def _reconcile(self, verified: VerifiedBundle) -> ReconcileResult:
        # The sealer unseals only what this signed bundle holds; plaintext lives for this reconcile only.
        metadata = verified.metadata
        if self.unsealer is not None and any(is_sealed_secret(o) for o in verified.bundle.objects):
            # the sealer re-verifies the director/release metadata this agent trusted.
            from skerry.agent import evidence

            try:
                metadata = evidence.read(self.verifier.metadata_dir, self.config.cluster, self.config.environment)
            except VerificationError as e:
                log.warning("no TUF evidence for the sealer; bundle unseal will be refused", error=str(e))
        with bundle_secrets(self.unsealer, metadata, verified.raw, verified.bundle.objects):
            return self.reconciler.reconcile(verified)

    async def _apply(self, verified: VerifiedBundle, *, retry: bool = False) -> None:
        assert self.reconciler is not None and self._lock is not None
        async with self._lock:
            await self._apply_locked(verified, retry=retry)

    async def _apply_locked(self, verified: VerifiedBundle, *, retry: bool = False) -> None:
        assert self.reconciler is not None
        self.current = verified
        await self.ops.reconciling(verified)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self._inflight = loop.run_in_executor(None, self._reconcile, verified)
        try:
            result = await asyncio.shield(self._inflight)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - reported as a condition
            log.exception("reconcile failed unexpectedly")
            msg = f"{type(e).__name__}: {e}"
            result = ReconcileResult(
                cluster=verified.bundle.cluster,
                release=verified.release,
                digest=verified.digest,
                revision=verified.bundle.revision,
                conditions=(Condition("Ready", FALSE, "ReconcileError", msg),),
            )
        suspended = result.condition("Suspended")
        if suspended is not None:
            # Nothing was applied: keep showing what is applied, and why the new one is not.
            self.suspended = True
            self._conditions["Suspended"] = suspended
            self.reconciles += 1
            await self._publish()
            return
        self._retry_attempt = self._retry_attempt + 1 if (retry and not result.ready) else 0
        self.last_result = result
        await self.ops.reconciled(result, time.monotonic() - started, verified)
        self.reconciles += 1
        self._applied_at = time.monotonic()
        if self.monitor is not None:
            self.monitor.retarget()
            with self.reconciler._lock:
                self.drift_backoff.forget(list(self.reconciler.applied))
        await self._publish()

    # --- drift and controls -----------------------------------------------------------------

    def _control(self, annotations: dict) -> None:
        """The operator's annotations on the inventory ConfigMap changed (runs on the event loop)."""
        from skerry.agent.monitor import RECONCILE_ANNOTATION, SUSPEND_ANNOTATION

        suspended = str(annotations.get(SUSPEND_ANNOTATION, "")).lower() == "true"
        requested = str(annotations.get(RECONCILE_ANNOTATION, ""))
        if suspended != self.suspended:
            self.suspended = suspended
            if suspended:
                log.warning("reconciliation suspended by the inventory annotation", annotation=SUSPEND_ANNOTATION)
                self._conditions["Suspended"] = Condition(
                    "Suspended", TRUE, "Suspended", f"{SUSPEND_ANNOTATION}=true: nothing is applied or corrected"
                )
                asyncio.ensure_future(self._publish())
            else:
                log.info("reconciliation resumed")
                self._conditions.pop("Suspended", None)
                if self.current is not None:
                    asyncio.ensure_future(self._guarded(self._apply, self.current))
                else:
                    asyncio.ensure_future(self._publish())
        if requested and requested != self._handled_request:
            first = not self._handled_request and self.reconciles == 0
            self._handled_request = requested
            if not first and self.current is not None and not self.suspended:
                log.info("reconcile requested", requested_at=requested)
                self._conditions["ReconcileRequest"] = Condition(
                    "ReconcileRequest", TRUE, "Handled", f"{RECONCILE_ANNOTATION}={requested} handled"
                )
                asyncio.ensure_future(self._guarded(self._apply, self.current))

    async def _drift_loop(self) -> None:
        assert self._drift_wakeup is not None and self.monitor is not None
        while True:
            await self._drift_wakeup.wait()
            self._drift_wakeup.clear()
            await self._guarded(self._on_drift)

    async def _on_drift(self) -> None:
        assert self.monitor is not None and self.reconciler is not None and self._lock is not None
        drifts = self.monitor.current_drifts()
        held: list = []
        if drifts and self.config.drift_policy == "correct" and not self.suspended and self.current is not None:
            async with self._lock:
                drifts = self.monitor.current_drifts()  # re-read: a reconcile may have fixed them
                keys = list(dict.fromkeys(d.ref.key for d in drifts))
                now = time.monotonic()
                due, held = self.drift_backoff.split(keys, now)
                self._held = held  # now, not after the corrections: status never shows a due key as held
                if due:
                    results = await asyncio.to_thread(self.reconciler.correct, due)
                    stamp = self.clock.now().isoformat()
                    counts = {k: self.drift_backoff.corrected(k, now) for k in due}
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
                        n = counts[d.ref.key]
                        again = f" (correction {n} in a row)" if n > 1 else ""
                        self.corrected.append(f"{stamp} {d.describe()}{again}")
                    self.corrected = self.corrected[-MAX_CORRECTIONS_KEPT:]
                    self.drift_corrections += len(due)
                    self.ops.metrics.drift.inc(len(due))
                    failed = [r for r in results if r.action == "failed"]
                    if failed:
                        log.warning("drift correction failed", first=failed[0].message)
                if held:
                    wait = min(w.seconds_left for w in held)
                    log.warning(
                        "drift correction backing off",
                        objects=len(held),
                        first=str(self._ref_of(held[0].key)),
                        corrections=held[0].corrections,
                        seconds=round(wait, 1),
                    )
                    if self._backoff_timer is not None:
                        self._backoff_timer.cancel()
                    self._backoff_timer = asyncio.get_running_loop().call_later(
                        wait, self._drift_wakeup.set
                    )
        self._held = held
        await self._publish()

    def _ref_of(self, key):
        assert self.reconciler is not None
        with self.reconciler._lock:
            entry = self.reconciler.applied.get(key)
        return entry[0] if entry is not None else "/".join(key)

    def agent_conditions(self) -> list[Condition]:
        """Drift, correction and health conditions from the monitor (empty without one)."""
        out: list[Condition] = []
        if self.monitor is None:
            return out
        drifts = self.monitor.current_drifts()
        if drifts:
            shown = "; ".join(d.describe() for d in drifts[:MAX_DRIFTS_SHOWN])
            more = f" (+{len(drifts) - MAX_DRIFTS_SHOWN} more)" if len(drifts) > MAX_DRIFTS_SHOWN else ""
            mode = "being corrected" if self.config.drift_policy == "correct" and not self.suspended else "not corrected (detect-only)" if self.config.drift_policy == "detect" else "not corrected (suspended)"
            if self._held and mode == "being corrected":
                mode = f"being corrected ({len(self._held)} object(s) backing off)"
            out.append(Condition("Drifted", TRUE, "DriftDetected", f"{len(drifts)} drifted field(s), {mode}: {shown}{more}"))
        else:
            out.append(Condition("Drifted", FALSE, "InSync", "live objects match Git"))
        if self.corrected:
            out.append(
                Condition(
                    "DriftCorrected",
                    TRUE,
                    "Corrected",
                    f"{self.drift_corrections} correction(s); latest: " + " | ".join(self.corrected[-MAX_DRIFTS_SHOWN:]),
                )
            )
        if self._held and drifts:
            shown = "; ".join(
                f"{self._ref_of(w.key)}: corrected {w.corrections} times in {w.fighting_for:.0f} s, "
                f"backing off, next correction in {w.seconds_left:.0f} s"
                for w in self._held[:MAX_DRIFTS_SHOWN]
            )
            out.append(
                Condition(
                    "CorrectionBackoff",
                    TRUE,
                    "BackingOff",
                    f"{shown} (something keeps changing what Git owns: another controller or a script?)",
                )
            )
        if self.last_result is not None and self._applied_at is not None:
            elapsed = time.monotonic() - self._applied_at
            out.append(
                self.monitor.health_condition(elapsed_seconds=elapsed, timeout_seconds=self.config.health_timeout)
            )
        errors = dict(self.monitor.errors)
        if errors:
            first = next(iter(errors.items()))
            out.append(Condition("Watching", FALSE, "WatchFailed", f"{len(errors)} watch(es) failing; {first[0]}: {first[1]}"))
        return out

    # --- status -----------------------------------------------------------------------------

    def status_result(self) -> ReconcileResult:
        """The last reconcile result with the agent-level conditions (Verified, Rendered, Stale) merged in."""
        base = self.last_result or ReconcileResult(
            cluster=self.config.cluster,
            release=0,
            digest="",
            revision="",
            conditions=(Condition("Ready", FALSE, "NothingApplied", "no verified bundle applied yet"),),
        )
        return base.with_conditions([*self._conditions.values(), *self.agent_conditions()])

    async def _publish(self) -> None:
        result = self.status_result()
        if self.config.ready_file is not None:
            try:
                horizon = getattr(self.verifier, "valid_until", None)
                extra = {"valid_until": horizon.isoformat() if horizon else "", "frozen": self.frozen is not None}
                await asyncio.to_thread(
                    _write_ready_file, self.config.ready_file, result, self.clock.now(), extra,
                    metrics_port=self.ops.port,
                )
            except OSError as e:
                log.warning("cannot write the ready file", path=str(self.config.ready_file), error=e.strerror)
        self._pending_report = to_proto(result, observed=self.clock.now())
        if self._report_wakeup is not None:
            self._report_wakeup.set()
        await self._notify()

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    async def _reporter(self) -> None:
        """Deliver the newest status to the hub; retried with backoff, superseded by newer ones."""
        assert self._report_wakeup is not None and self.hub is not None
        attempt = 0
        while True:
            await self._report_wakeup.wait()
            status = self._pending_report
            if status is None:
                self._report_wakeup.clear()
                continue
            try:
                await self.hub.report(status)
            except SkerryError as e:
                delay = min(self._retry_cap, 0.5 * (2 ** min(attempt, 10)))
                attempt += 1
                log.warning("status report failed; will retry", reason=e.reason, error=str(e), retry_in=delay)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wait_newer(status), delay)
                continue
            attempt = 0
            self.reports_sent += 1
            if self.report_signer is not None:
                try:
                    await self.report_signer.send(self.status_result(), status.observed_unix_ms)
                    self.signed_reports_sent += 1
                except SkerryError as e:
                    log.warning("signed report not delivered", reason=e.reason, error=str(e))
            if self._pending_report is status:
                self._pending_report = None
                self._report_wakeup.clear()
            await self._notify()

    async def _wait_newer(self, status) -> None:
        assert self._changed is not None
        async with self._changed:
            await self._changed.wait_for(lambda: self._pending_report is not status)


def _write_ready_file(
    path, result: ReconcileResult, now: _dt.datetime, extra: dict | None = None, *, metrics_port: int | None = None
) -> None:
    doc = {
        "cluster": result.cluster,
        "applied_release": result.release,
        "applied_digest": result.digest,
        "revision": result.revision,
        "ready": result.ready,
        "conditions": [
            {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
            for c in result.conditions
        ],
        "updated": now.isoformat(),
        **(extra or {}),
    }
    if metrics_port is not None:
        doc["metrics_port"] = metrics_port
    atomic_write(path, json.dumps(doc, sort_keys=True, indent=2).encode() + b"\n", mode=0o644)


async def run(config: AgentConfig) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    import signal

    app = AgentApp(config)
    await app.start()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    main = asyncio.ensure_future(app.wait())
    stop_wait = asyncio.ensure_future(stopping.wait())
    try:
        done, _ = await asyncio.wait({main, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if main in done:
            exc = main.exception()
            if exc is not None:
                raise SkerryError(f"the agent loop stopped: {type(exc).__name__}: {exc}") from exc
    finally:
        stop_wait.cancel()
        await app.stop()
