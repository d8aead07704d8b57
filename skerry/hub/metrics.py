"""The hub's Prometheus families, and the two seams that feed them.

Why a module: the hub's modules (sync, render, store, servicer) are changed
by many hands; instrumentation stays out of them. Events are counted where
results come back as data:

* ``InstrumentedEngine`` wraps the render engine (``skerry_hub_renders_total``,
  ``skerry_hub_render_duration_seconds``, ``skerry_hub_render_errors_total``);
* ``HubMetrics.observe_sync`` receives every ``SyncResult``
  (``skerry_hub_syncs_total``, ``skerry_hub_sync_duration_seconds``,
  ``skerry_hub_bundles_published_total``) and counts a refused fleet file in
  ``skerry_refusals_total{service="hub"}`` (``core.metrics.Refusals``: refused
  RPCs are counted there by the servers' error interceptor, ``refused.count``,
  and refused renders - a kustomization refused while its closure is read, or
  the engine's refusal - by ``render_refused``, the incremental renderer's
  ``on_refused``). A fleet file or path is counted once per (commit, path,
  reason): a broken commit rebuilt at every tick is one refusal;
* ``HubStateCollector`` reads the store, the status board and the stream
  registry at scrape time, so gauges are never stale: per-cluster desired
  release, metadata expiry horizon, reported health and sync state, agents
  connected, streams open and the most this replica holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client.core import GaugeMetricFamily

from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import RenderError
from skerry.core.metrics import DURATION_BUCKETS, CollectorRegistry, Counter, Histogram, Refusals

WATCH_METHOD = "/skerry.api.v1.HubService/WatchBundles"


class HubMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.refused = Refusals(registry, "hub")
        self.renders = Counter(
            "skerry_hub_renders_total", "Path renders by the render engine, by result.", ["result"], registry=registry
        )
        self.render_errors = Counter(
            "skerry_hub_render_errors_total", "Path renders that failed.", registry=registry
        )
        self.render_seconds = Histogram(
            "skerry_hub_render_duration_seconds",
            "Time to render one path.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.syncs = Counter(
            "skerry_hub_syncs_total", "Sync ticks (fetch, maybe build and publish), by result.", ["result"],
            registry=registry,
        )
        self.sync_seconds = Histogram(
            "skerry_hub_sync_duration_seconds", "Time of one sync tick.", buckets=DURATION_BUCKETS, registry=registry
        )
        self.published = Counter(
            "skerry_hub_bundles_published_total",
            "Signed releases published (new content or re-signs), by cluster.",
            ["cluster"],
            registry=registry,
        )

    def observe_sync(self, result, seconds: float) -> None:
        """Called by the sync loop with each ``SyncResult`` and how long the tick took."""
        if result.source_error is not None:
            outcome = "fetch_error"
        elif result.fleet_error is not None:
            outcome = "fleet_error"
            self.refused.count_once((result.commit, None), result.fleet_reason or "")  # None: the fleet file
        elif result.errors:
            outcome = "partial"
        elif result.rendered:
            outcome = "rendered"
        else:
            outcome = "unchanged"
        self.syncs.labels(outcome).inc()
        self.sync_seconds.observe(seconds)
        for cluster in result.published:
            self.published.labels(cluster).inc()

    def render_refused(self, commit: str, path: str, error: RenderError) -> None:
        """A path of ``commit`` refused (AliasBudget, TooLarge, RenderTimeout, ...): counted once per commit."""
        self.refused.count_once((commit, path), error.reason)


class InstrumentedEngine:
    """The render engine, counted and timed; everything else passes through."""

    def __init__(self, engine, metrics: HubMetrics):
        self._engine = engine
        self._metrics = metrics

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def render(self, *args, **kwargs):
        started = time.monotonic()
        try:
            out = self._engine.render(*args, **kwargs)
        except RenderError:
            self._metrics.renders.labels("error").inc()
            self._metrics.render_errors.inc()
            raise
        finally:
            self._metrics.render_seconds.observe(time.monotonic() - started)
        self._metrics.renders.labels("ok").inc()
        return out


def _ready_condition(status) -> str | None:
    for c in status.conditions:
        if c.type == "Ready":
            return c.status
    return None


class HubStateCollector:
    """Scrape-time gauges from the hub's live state (store, status board, fleet, streams)."""

    def __init__(self, store, statuses, fleet_view, *, streams: Callable[[], tuple[int, int]], clock: Clock | None = None,
                 max_streams: int | None = None):
        self._store = store
        self._statuses = statuses
        self._fleet = fleet_view
        self._streams = streams  # -> (agents connected, streams open)
        self._max_streams = max_streams  # the replica's cap on open streams (skerry.hub.admission), if it has one
        self._clock = clock or SystemClock()

    def describe(self):
        return []  # collected live; names are stable, no need to pre-declare

    def collect(self):
        now = self._clock.now()
        clusters = GaugeMetricFamily("skerry_hub_clusters", "Clusters in the fleet the hub serves.")
        loaded = GaugeMetricFamily("skerry_hub_fleet_loaded", "1 if the fleet file is loaded, else 0.")
        release = GaugeMetricFamily(
            "skerry_hub_bundle_release", "Desired (signed) release counter, by cluster.", labels=["cluster"]
        )
        objects = GaugeMetricFamily(
            "skerry_hub_bundle_objects", "Objects in the desired bundle, by cluster.", labels=["cluster"]
        )
        expiry = GaugeMetricFamily(
            "skerry_hub_metadata_expiry_seconds",
            "Seconds until the served bundle's signed metadata expires (negative: expired).",
            labels=["cluster"],
        )
        render_error = GaugeMetricFamily(
            "skerry_hub_render_failing", "1 if the cluster's latest commit failed to render.", labels=["cluster"]
        )
        healthy = GaugeMetricFamily(
            "skerry_hub_cluster_ready", "Reported Ready condition: 1 True, 0 False, -1 not reported.",
            labels=["cluster"],
        )
        in_sync = GaugeMetricFamily(
            "skerry_hub_cluster_in_sync", "1 if the applied bundle is the desired one, else 0.", labels=["cluster"]
        )
        applied = GaugeMetricFamily(
            "skerry_hub_cluster_applied_release", "Release the agent reports applied, by cluster.", labels=["cluster"]
        )
        names = list(self._store.clusters())
        clusters.add_metric([], len(names))
        loaded.add_metric([], 0 if getattr(self._fleet, "fleet", None) is None else 1)
        for name in names:
            current = self._store.current(name)
            reported = self._statuses.get(name)
            if current is not None:
                release.add_metric([name], current.release)
                objects.add_metric([name], current.objects)
                expiry.add_metric([name], (current.expires - now).total_seconds())
            render_error.add_metric([name], 0 if self._store.error(name) is None else 1)
            if reported is None:
                healthy.add_metric([name], -1)
                in_sync.add_metric([name], 0)
                continue
            ready = _ready_condition(reported)
            healthy.add_metric([name], 1 if ready == "True" else 0)
            applied.add_metric([name], reported.applied_version)
            same = current is not None and reported.applied_digest == current.digest
            in_sync.add_metric([name], 1 if same else 0)
        agents, streams = self._streams()
        connected = GaugeMetricFamily(
            "skerry_hub_agents_connected", "Distinct agents holding a WatchBundles stream now."
        )
        connected.add_metric([], agents)
        open_streams = GaugeMetricFamily("skerry_hub_streams_open", "WatchBundles streams open now.")
        open_streams.add_metric([], streams)
        yield from (clusters, loaded, release, objects, expiry, render_error, healthy, in_sync, applied)
        yield from (connected, open_streams)
        if self._max_streams is not None:
            cap = GaugeMetricFamily("skerry_hub_streams_max", "WatchBundles streams this replica holds at most; "
                                    "past it new ones are refused (ReplicaFull).")
            cap.add_metric([], self._max_streams)
            yield cap
