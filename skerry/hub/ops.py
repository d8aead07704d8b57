"""The hub's operability parts, wired in one place: metrics registry, ops HTTP server, dashboard.

``HubApp`` (the composition root) makes one ``HubOps`` and hands it the
engine, store, status board and sync loop; this keeps the root's own edits
to a few lines. Both servers are off unless configured
(``metrics_listen``, ``dashboard_listen``).

The ops server (``/healthz``, ``/readyz``, ``/metrics``) starts first, before
the hub may wait for anything (``start_probes``): a replica waiting for the
writer's first import on a fresh state answers its probes, alive and not
ready, naming what it waits for (``waiting``), instead of refusing them.
Ready means caught up: the fleet loaded by this process's sync, or (a replica
that does not sync) the writer's releases read from the hub state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from skerry.core.clock import Clock
from skerry.core.errors import SkerryError
from skerry.core.metrics import GrpcMetricsInterceptor, OpsServer, new_registry
from skerry.core.rpc import peer_name
from skerry.core.tls import ROLE_AGENT
from skerry.hub.dashboard.model import ReleaseHistory, build_snapshot, cluster_detail
from skerry.hub.dashboard.server import DashboardServer, read_token
from skerry.hub.metrics import WATCH_METHOD, HubMetrics, HubStateCollector, InstrumentedEngine
from skerry.hub.state.threads import OffLoop

log = structlog.get_logger("skerry.hub.ops")


class HubOps:
    def __init__(self, config, clock: Clock):
        self.config = config
        self.clock = clock
        self.registry = new_registry()
        self.metrics = HubMetrics(self.registry)
        self.interceptor = GrpcMetricsInterceptor(self.registry, peer_of=peer_name)
        self.ops_server: OpsServer | None = None
        self.dashboard = None
        self._syncer = None
        self._promotions = None
        self._off_loop: OffLoop = asyncio.to_thread  # where the release history is stored (``attach``)
        # A replica that does not sync (standby, --role serve) is ready once it caught up with the state.
        self.caught_up: Callable[[], bool] | None = None
        self._waiting: str | None = None  # what the hub waits for before it can serve (readyz names it)

    def engine(self, engine):
        return InstrumentedEngine(engine, self.metrics)

    def attach(self, store, statuses, syncer, state=None, off_loop: OffLoop = asyncio.to_thread, *,
               max_streams: int | None = None) -> None:
        """Show these parts; ``off_loop``: where the release history is stored (the hub's state-write threads);
        ``max_streams``: the replica's stream cap, shown beside its open streams."""
        self._syncer = syncer
        self._off_loop = off_loop
        self._parts = (store, statuses, syncer)
        self._history = ReleaseHistory(state=state)  # with a hub state: kept across restarts
        syncer.observers.append(self.metrics.observe_sync)
        syncer.renderer.on_refused = self.metrics.render_refused
        syncer.observers.append(lambda result, seconds: self._record_history(store))
        self.registry.register(
            HubStateCollector(
                store, statuses, syncer, clock=self.clock,
                streams=lambda: (self.interceptor.peers(WATCH_METHOD), self.interceptor.streams(WATCH_METHOD)),
                max_streams=max_streams,
            )
        )

    async def _record_history(self, store) -> None:
        """After a sync: the releases noted on the loop, stored off it (a database away must not hold it)."""
        grown = self._history.note_fleet(store, self.clock.now())
        try:
            await self._off_loop(self._history.store, grown)
        except SkerryError as e:  # the database is gone: the history stays in memory, stored after the next sync
            self._history.unstored(grown)
            log.error("release history not stored; retried after the next sync", reason=e.reason, error=str(e))

    def promotion_source(self, promoter) -> None:
        """Show the promoter's history on the dashboard."""
        self._promotions = PromoterHistory(promoter)

    def snapshot(self) -> dict:
        store, statuses, syncer = self._parts
        return build_snapshot(syncer, store, statuses, self._history, self.clock.now(), connected=self._connected(),
                              promotions=self._promotions)

    def _connected(self) -> set[str]:
        prefix = f"{ROLE_AGENT}:"
        return {p[len(prefix):] for p in self.interceptor.holders(WATCH_METHOD) if p.startswith(prefix)}

    def cluster_detail(self, name: str) -> dict | None:
        store, statuses, syncer = self._parts
        return cluster_detail(name, syncer, store, statuses, self._history, self.clock.now(),
                              connected=self._connected())

    def waiting(self, reason: str | None) -> None:
        """The hub waits for ``reason`` before it can serve (not ready, saying so); None: no longer."""
        self._waiting = reason

    def _readiness(self) -> tuple[bool, str]:
        if self._waiting is not None:
            return False, self._waiting
        if self.caught_up is not None and self.caught_up() and (self._syncer is None or self._syncer.fleet is None):
            return True, "caught up with the writer's releases in the hub state"
        if self._syncer is None or self._syncer.fleet is None:
            return False, f"fleet not loaded: {getattr(self._syncer, 'fleet_error', None) or 'no sync yet'}"
        return True, "fleet loaded"

    def start_probes(self) -> None:
        """Start the ops server if configured (once): probes are answered from here on, not ready until the
        hub serves."""
        if self.config.metrics_listen and self.ops_server is None:
            self.ops_server = OpsServer(self.config.metrics_listen, self.registry, readiness=self._readiness)
            self.ops_server.start()

    async def start(self) -> dict:
        """Start whatever is configured (the ops server unless ``start_probes`` did); the ports to put in the
        ready file."""
        ports: dict[str, int] = {}
        cfg = self.config
        self.start_probes()
        if self.ops_server is not None:
            ports["metrics_port"] = self.ops_server.port
        if cfg.dashboard_listen:
            self.dashboard = DashboardServer(
                cfg.dashboard_listen, cfg.require_tls(), self.snapshot, token=read_token(cfg.dashboard_token_file),
                detail=self.cluster_detail, count_refusal=self.metrics.refused.count_reason,
            )
            ports["dashboard_port"] = await self.dashboard.start()
        return ports

    async def stop(self) -> None:
        if self.dashboard is not None:
            await self.dashboard.stop()
        if self.ops_server is not None:
            self.ops_server.stop()


class PromoterHistory:
    """The dashboard's ``PromotionSource`` over the promoter's in-memory records (bounded by the promoter)."""

    def __init__(self, promoter):
        self._promoter = promoter

    def history(self, app: str | None = None) -> list[dict]:
        records = [r for r in list(self._promoter.records.values()) if app is None or r.app == app]
        records.sort(key=lambda r: r.updated.timestamp() if r.updated else 0, reverse=True)
        return [
            {
                "app": r.app, "from": r.from_env, "to": r.to_env, "kind": r.kind, "state": r.state,
                "commit": r.commit, "by": r.requested_by, "approved_by": list(r.approved_by),
                "at": r.updated.isoformat(timespec="seconds") if r.updated else None, "message": r.message,
            }
            for r in records
        ]
