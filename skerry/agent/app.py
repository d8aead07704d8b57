"""Composition root of the agent: config -> verifier, cache, kube, unsealer, reconciler, hub client, loops.

Wiring only. The parts, and where each decision lives:

* ``runtime.Runtime``            the watch -> verify -> cache -> apply loop (retry, freeze, trust poll)
* ``drift_control.DriftControl`` drift correction and the operator's controls (suspend, reconcile now)
* ``monitor.Monitor``            watches of what was applied: drift and health from events
* ``reporter.Reporter``          the ready file, status reports to the hub, signed reports
* ``conditions``                 what the agent says about itself, a pure function of ``snapshot()``
* ``ops.AgentOps``               metrics, the ops server, the in-cluster BundleStatus and Events

``AgentApp`` runs in-process (tests, the demo); ``run`` is the service
behind ``skerry agent run``. The facts its parts record are readable here
(``last_result``, ``reconciles``, ``suspended``, ...) so callers need not
know which part holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable

import structlog

from skerry.agent import conditions
from skerry.agent.attest import ReportSigner
from skerry.agent.cache import BundleCache
from skerry.agent.config import AgentConfig
from skerry.agent.drift_control import DriftControl
from skerry.agent.enroll import CertificateRenewer
from skerry.agent.kube import KubeClient
from skerry.agent.monitor import Monitor
from skerry.agent.ops import AgentOps
from skerry.agent.reconcile.drift import IgnoreRule
from skerry.agent.reconcile.engine import Reconciler
from skerry.agent.reconcile.model import ReconcileResult
from skerry.agent.reporter import Reporter
from skerry.agent.runtime import Runtime
from skerry.agent.secrets import GrpcUnsealer, NoUnsealer, Unsealer
from skerry.agent.stream import HubClient
from skerry.agent.trust import TufVerifier
from skerry.agent.tuf_fetch import GrpcFetcher
from skerry.core import release_number
from skerry.core.client import Endpoints
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import SkerryError
from skerry.core.files import ensure_dir
from skerry.core.rpc import keepalive_options

log = structlog.get_logger("skerry.agent")


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
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.config = config.validate()
        self.clock = clock or SystemClock()
        self._given = {"kube": kube, "unsealer": unsealer, "hub": hub}
        self._reconciler_options = dict(reconciler_options or {})
        self._retry = {"retry_base": retry_base, "retry_cap": retry_cap}
        self._renew = renew_certificate
        self._drift_backoff = drift_backoff
        self._monotonic = monotonic
        self.verifier = self.cache = self.kube = self.ops = self.unsealer = self.reconciler = self.hub = None
        # The hub replica every hub path uses now (watch, reports, signed reports, TUF, renewal).
        self.endpoints = Endpoints(self.config.hub_addresses, what="hub")
        self.monitor: Monitor | None = None
        self.report_signer: ReportSigner | None = None
        self.renewer: CertificateRenewer | None = None
        self.runtime: Runtime | None = None
        self.drift: DriftControl | None = None
        self.reporter: Reporter | None = None
        self._tasks: dict[str, asyncio.Task] = {}

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Set everything up (failing fast on bad config) and start the loops in the background."""
        cfg = self.config
        ensure_dir(cfg.state_dir)
        self.verifier = self._verifier(cfg)
        self.cache = BundleCache(cfg.state_dir)
        raw_kube = self._given["kube"]
        if raw_kube is None:
            raw_kube = await asyncio.to_thread(
                KubeClient.from_kubeconfig, cfg.kubeconfig, cfg.kube_context, in_cluster_first=True
            )
        # metrics, ops server, BundleStatus + Events (skerry/agent/ops.py)
        self.ops = AgentOps(cfg, self.clock, state=self, running=self.running)
        self.kube = self.ops.kube(raw_kube)
        await self.ops.start(raw_kube)
        self.unsealer = self._given["unsealer"]
        if self.unsealer is None:
            self.unsealer = (
                GrpcUnsealer(cfg.sealer_address, cfg.tls_files, domain=cfg.sealer_domain,
                             channel_options=keepalive_options(cfg.keepalive))
                if cfg.sealer_address
                else NoUnsealer()
            )
        self.reconciler = Reconciler(
            self.kube,
            self.unsealer,
            cfg.field_manager,
            cfg.namespace,
            allow_prune_all=cfg.allow_prune_all,
            allow_prune_protected=cfg.allow_prune_protected,
            **{"workers": cfg.apply_workers, **self._reconciler_options},
        )
        self.hub = self._given["hub"]
        if self.hub is None:
            self.hub = HubClient(
                self.endpoints, cfg.tls_files, cfg.cluster, channel_options=keepalive_options(cfg.keepalive)
            )
        self._wire_parts(cfg)
        structlog.contextvars.bind_contextvars(cluster=cfg.cluster)
        log.info(
            "agent starting",
            hub=cfg.hub_address,
            sealer=cfg.sealer_address or "",
            namespace=cfg.namespace,
            last_release=self.verifier.last_release,
            last_release_name=release_number.label(self.verifier.last_number, self.verifier.last_release),
        )
        self._spawn("main", self.runtime.run())
        self._spawn("reporter", self.reporter.run())
        if self.monitor is not None:
            self.monitor.start()
            self._spawn("drift", self.drift.run())
        if self._renew and hasattr(self.hub, "reload_credentials"):
            self.renewer = CertificateRenewer(
                self.endpoints, cfg.tls_files, cfg.cluster, on_renewed=self.hub.reload_credentials
            )
            self._spawn("renew", self.renewer.run())

    def _verifier(self, cfg: AgentConfig):
        tls_files = cfg.tls_files
        return TufVerifier(
            cfg.cluster,
            cfg.environment,
            cfg.trust_root,
            cfg.state_dir,
            lambda: GrpcFetcher(self.endpoints.current, tls_files, options=keepalive_options(cfg.keepalive)),
            self.clock,
        )

    def _wire_parts(self, cfg: AgentConfig) -> None:
        # signed reports over the watch's connection (a hub client a test hands in may have none of its own)
        self.report_signer = ReportSigner(self.endpoints, cfg.tls_files, channel=getattr(self.hub, "channel", None))
        self.reporter = Reporter(
            self.hub,
            self.clock,
            status=self.status_result,
            ready_file=cfg.ready_file,
            ready_extra=self._ready_extra,
            metrics_port=lambda: self.ops.port,
            signer=self.report_signer,
            retry_cap=self._retry["retry_cap"],
        )
        self.runtime = Runtime(
            cfg,
            self.clock,
            verifier=self.verifier,
            cache=self.cache,
            hub=self.hub,
            reconciler=self.reconciler,
            unsealer=self.unsealer,
            ops=self.ops,
            publish=self.reporter.publish,
            monotonic=self._monotonic,
            **self._retry,
        )
        drift = DriftControl(
            cfg,
            self.clock,
            self.runtime,
            publish=self.reporter.publish,
            count_corrections=self.ops.metrics.drift.inc,
            backoff=self._drift_backoff,
            monotonic=self._monotonic,
            on_handled=self.ops.handled,
        )
        self.drift = drift
        self.runtime.on_reconciled = drift.reconciled
        self.runtime.on_suspended = drift.engine_suspended
        if cfg.watch:
            loop = asyncio.get_running_loop()
            self.monitor = drift.monitor = Monitor(
                self.kube,
                self.reconciler,
                namespace=cfg.namespace,
                field_manager=cfg.field_manager,
                ignore=[IgnoreRule.parse(r) for r in cfg.drift_ignore],
                resync_seconds=cfg.resync_seconds,
                error_backoff=cfg.watch_retry,
                on_change=lambda: loop.call_soon_threadsafe(drift.wakeup.set),
                on_control=lambda annotations: loop.call_soon_threadsafe(drift.control, annotations),
            )

    def _spawn(self, name: str, coro) -> None:
        self._tasks[name] = asyncio.create_task(coro, name=f"skerry-agent-{name}")

    def running(self) -> bool:
        """Whether the main loop runs (the ops server's readiness)."""
        task = self._tasks.get("main")
        return task is not None and not task.done()

    async def stop(self, grace: float = 30.0) -> None:
        if self.drift is not None:
            self.drift.stop()
        tasks = list(self._tasks.values())
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        inflight = self.runtime.inflight if self.runtime is not None else None
        if inflight is not None and not inflight.done():
            log.info("waiting for the reconcile in progress to finish")
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(inflight), grace)
        for closing in (self.report_signer, self.hub):
            close = getattr(closing, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
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
        main = self._tasks.get("main")
        if main is not None:
            await main

    async def wait_until(self, predicate: Callable[[AgentApp], bool], timeout: float = 30.0) -> None:
        """Wait until ``predicate(self)`` holds after some reconcile/rejection/report (tests, demo)."""
        assert self.reporter is not None, "start() first"
        changed = self.reporter.changed

        async def _wait():
            async with changed:
                await changed.wait_for(lambda: predicate(self))

        await asyncio.wait_for(_wait(), timeout)

    # --- what the agent says ----------------------------------------------------------------

    def snapshot(self) -> conditions.AgentSnapshot:
        """The facts the parts recorded, at one moment."""
        runtime, drift = self.runtime, self.drift
        if runtime is None or drift is None:
            return conditions.AgentSnapshot(cluster=self.config.cluster)
        return conditions.AgentSnapshot(
            cluster=self.config.cluster,
            last_result=runtime.last_result,
            verification=runtime.verification,
            stale=runtime.stale,
            render_failure=runtime.render_failure,
            fresh_until=runtime.fresh_until,
            freeze=runtime.freeze,
            suspended=drift.suspended,
            suspension=drift.suspension,
            reconcile_request=drift.reconcile_request,
            drift=drift.view(),
            api_latency=self._api_latency(),
            slow_apply=self.config.slow_apply,
        )

    def _api_latency(self) -> conditions.ApiLatency | None:
        seen = self.kube.latency.view() if hasattr(self.kube, "latency") else None
        return None if seen is None else conditions.ApiLatency(*seen)

    def status_result(self) -> ReconcileResult:
        """The last reconcile result with the agent-level conditions (Verified, Rendered, Stale, ...) merged in."""
        return conditions.status_result(self.snapshot())

    def _ready_extra(self) -> dict:
        horizon = getattr(self.verifier, "valid_until", None)
        return {"valid_until": horizon.isoformat() if horizon else "", "frozen": self.frozen is not None}

    # --- the parts' facts, read through the app ---------------------------------------------

    @property
    def current(self):
        return self.runtime.current if self.runtime is not None else None

    @property
    def last_result(self) -> ReconcileResult | None:
        return self.runtime.last_result if self.runtime is not None else None

    @property
    def last_rejection(self):
        return self.runtime.last_rejection if self.runtime is not None else None

    @property
    def frozen(self):
        return self.runtime.frozen if self.runtime is not None else None

    @property
    def reconciles(self) -> int:
        return self.runtime.reconciles if self.runtime is not None else 0

    @property
    def suspended(self) -> bool:
        return self.drift is not None and self.drift.suspended

    @property
    def corrected(self) -> list[str]:
        return list(self.drift.corrected) if self.drift is not None else []

    @property
    def drift_corrections(self) -> int:
        return self.drift.corrections if self.drift is not None else 0

    @property
    def reports_sent(self) -> int:
        return self.reporter.reports_sent if self.reporter is not None else 0

    @property
    def signed_reports_sent(self) -> int:
        return self.reporter.signed_reports_sent if self.reporter is not None else 0


async def run(config: AgentConfig) -> None:
    """Run the agent until SIGTERM/SIGINT."""
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
