"""The agent's operability parts, wired in one place: metrics, ops HTTP server, BundleStatus + Events.

``AgentApp`` makes one ``AgentOps``; the loop (``runtime.py``) calls it at
its seams (a reconcile starts, a reconcile result comes back, a bundle is
refused, the hub cannot render), so the loop's own edits stay a few lines. Kubernetes calls run in a worker
thread and never fail the loop: a status that cannot be written is logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from skerry.agent.events import ClusterStatusPublisher
from skerry.agent.metrics import AgentMetrics, AgentStateCollector, InstrumentedKube
from skerry.core.metrics import OpsServer, new_registry

log = structlog.get_logger("skerry.agent.ops")


class AgentOps:
    def __init__(self, config, clock, *, state, running: Callable[[], bool]):
        """``state`` has ``config``, ``last_result`` and ``current`` (read at scrape time);
        ``running`` says whether the agent loop runs (the readiness probe)."""
        self.config = config
        self.clock = clock
        self._running = running
        self.registry = new_registry()
        self.metrics = AgentMetrics(self.registry)
        self.registry.register(AgentStateCollector(state, clock))
        self.publisher: ClusterStatusPublisher | None = None
        self.server: OpsServer | None = None
        self.port: int | None = None

    def kube(self, kube):
        return InstrumentedKube(kube, self.metrics)

    async def start(self, kube) -> None:
        cfg = self.config
        if all(hasattr(kube, m) for m in ("create_event", "apply_status", "crd_established")):
            self.publisher = ClusterStatusPublisher(
                kube, cfg.cluster, cfg.namespace, hub=cfg.hub_address, field_manager=cfg.field_manager,
                now=self.clock.now,
            )
            await self._run(self.publisher.ensure_crd)
        if getattr(cfg, "metrics_listen", ""):
            self.server = OpsServer(cfg.metrics_listen, self.registry, readiness=self._readiness)
            self.port = self.server.start()

    def _readiness(self) -> tuple[bool, str]:
        if not self._running():
            return False, "agent loop not running"
        return True, "agent loop running"

    async def _run(self, fn, *args, **kwargs) -> None:
        try:
            await asyncio.to_thread(fn, *args, **kwargs)
        except Exception:  # noqa: BLE001 - in-cluster status is best effort; the reconcile is what counts
            log.exception("cannot publish the in-cluster status")

    async def reconciling(self, verified) -> None:
        if self.publisher is not None:
            await self._run(self.publisher.reconciling, verified.release, verified.digest, verified.bundle.revision)

    async def reconciled(self, result, seconds: float, verified=None) -> None:
        drift = self.metrics.observe_reconcile(result, seconds)
        log.info("reconcile", release=result.release, digest=result.digest, revision=result.revision,
                 ready=result.ready, duration_ms=round(seconds * 1000, 2), drift_corrected=drift,
                 **{k: v for k, v in result.counts().items() if v})
        if self.publisher is not None:
            expires = getattr(verified, "expires", None)
            await self._run(self.publisher.reconciled, result, seconds, drift=drift, expires=expires)

    async def handled(self, requested: str) -> None:
        if self.publisher is not None:
            await self._run(self.publisher.handled, requested)

    async def verified(self) -> None:
        self.metrics.verified.inc()

    def refused(self, error) -> None:
        """The agent refused what the hub sent (a bundle, a metadata refresh, a freeze): counted by reason."""
        self.metrics.refused.count(error)

    async def rejected(self, error, signed) -> None:
        self.metrics.rejected.labels(getattr(error, "reason", "unknown")).inc()
        if self.publisher is not None:
            # a refusal may come from a metadata refresh with no bundle message at all
            version = getattr(signed, "version", 0) if signed is not None else 0
            await self._run(self.publisher.rejected, getattr(error, "reason", ""), str(error), version)

    async def render_failed(self, revision: str, message: str) -> None:
        if self.publisher is not None:
            await self._run(self.publisher.event, "Warning", "RenderFailed",
                            f"the hub cannot render revision {revision[:12] or '?'}: {message}; keeping the applied state")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
