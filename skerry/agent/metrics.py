"""The agent's Prometheus families, fed where reconcile results come back as data.

Why a module: the reconcile engine and the app loop are changed by many
hands; instrumentation stays out of them. ``InstrumentedKube`` times each
server-side apply and each prune delete (the per-object durations);
``AgentMetrics.observe_reconcile`` counts each ``ReconcileResult`` (per
action, drift corrected, ready or not) and ``AgentStateCollector`` reads
the app's current bundle at scrape time (applied release, Ready, metadata
expiry horizon).

Every bundle or metadata refresh the agent refuses (verification, freeze) is counted once in
``skerry_refusals_total{service="agent"}`` (``core.metrics.Refusals``), by ``AgentOps.refused``.

Drift: an object the agent had to change (``configured``) while
re-applying the digest it had already applied - someone or something
edited it in the cluster - is counted in ``skerry_agent_drift_corrected_total``.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time

from prometheus_client.core import GaugeMetricFamily

from skerry.core.clock import Clock, SystemClock
from skerry.core.metrics import DURATION_BUCKETS, CollectorRegistry, Counter, Histogram, Refusals

# Per-object apply/delete calls are fast; their buckets start lower than the request ones.
OBJECT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.refused = Refusals(registry, "agent")
        self.reconciles = Counter(
            "skerry_agent_reconciles_total", "Reconciles of a verified bundle, by outcome.", ["result"],
            registry=registry,
        )
        self.reconcile_seconds = Histogram(
            "skerry_agent_reconcile_duration_seconds", "Time of one whole reconcile (apply, prune, inventory).",
            buckets=DURATION_BUCKETS, registry=registry,
        )
        self.objects = Counter(
            "skerry_agent_objects_total", "Per-object reconcile results, by action.", ["action"], registry=registry
        )
        self.applies = Counter(
            "skerry_agent_applies_total", "Server-side apply calls, by result.", ["result"], registry=registry
        )
        self.apply_seconds = Histogram(
            "skerry_agent_apply_duration_seconds", "Time of one server-side apply call.",
            buckets=OBJECT_BUCKETS, registry=registry,
        )
        self.prunes = Counter(
            "skerry_agent_prunes_total", "Prune (delete) calls, by result.", ["result"], registry=registry
        )
        self.prune_seconds = Histogram(
            "skerry_agent_prune_duration_seconds", "Time of one prune delete call.",
            buckets=OBJECT_BUCKETS, registry=registry,
        )
        self.drift = Counter(
            "skerry_agent_drift_corrected_total",
            "Objects changed back to Git after a change made outside Git (live drift corrected).",
            registry=registry,
        )
        self.verified = Counter(
            "skerry_agent_bundles_verified_total", "Bundles from the hub that verified.", registry=registry
        )
        self.rejected = Counter(
            "skerry_agent_bundles_rejected_total", "Bundles refused by verification, by reason.", ["reason"],
            registry=registry,
        )
        self._last_applied_digest = ""

    def observe_reconcile(self, result, seconds: float) -> int:
        """Count one result; returns how many objects were drift-corrected in it."""
        self.reconciles.labels("ready" if result.ready else "not_ready").inc()
        self.reconcile_seconds.observe(seconds)
        drift = 0
        for r in result.objects:
            self.objects.labels(r.action).inc()
            if r.action == "configured" and result.digest == self._last_applied_digest:
                drift += 1
        if drift:
            self.drift.inc(drift)
        if result.ready:
            self._last_applied_digest = result.digest
        return drift


# Applies whose latency says whether the API server is slow now: about one reconcile of a small
# bundle, so a slow spell shows after one reconcile and its end after the next.
LATENCY_WINDOW = 8


class LatencyWindow:
    """The durations of the last ``size`` applies (thread-safe: apply workers record in parallel)."""

    def __init__(self, size: int = LATENCY_WINDOW):
        self._samples: collections.deque[float] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)

    def view(self) -> tuple[float, int] | None:
        """``(median seconds, samples)``, None before the first apply."""
        with self._lock:
            samples = list(self._samples)
        return (statistics.median(samples), len(samples)) if samples else None


class InstrumentedKube:
    """The agent's Kubernetes client with apply and delete timed; everything else passes through.

    Apply durations also feed ``latency``, which the status reads (``APIServerSlow``).
    """

    def __init__(self, kube, metrics: AgentMetrics):
        self._kube = kube
        self._metrics = metrics
        self.latency = LatencyWindow()

    @property
    def wrapped(self):
        return self._kube

    def __getattr__(self, name):
        return getattr(self._kube, name)

    def _timed(self, fn, counter, histogram, *args, **kwargs):
        started = time.monotonic()
        try:
            out = fn(*args, **kwargs)
        except Exception:
            counter.labels("error").inc()
            raise
        finally:
            histogram.observe(time.monotonic() - started)
        counter.labels("ok").inc()
        return out

    def apply(self, *args, **kwargs):
        started = time.monotonic()
        try:
            return self._timed(self._kube.apply, self._metrics.applies, self._metrics.apply_seconds, *args, **kwargs)
        finally:
            self.latency.observe(time.monotonic() - started)

    def delete(self, *args, **kwargs):
        return self._timed(self._kube.delete, self._metrics.prunes, self._metrics.prune_seconds, *args, **kwargs)


class AgentStateCollector:
    """Scrape-time gauges from the running agent (``AgentApp``)."""

    def __init__(self, app, clock: Clock | None = None):
        self._app = app
        self._clock = clock or SystemClock()

    def describe(self):
        return []

    def collect(self):
        app = self._app
        cluster = app.config.cluster
        release = GaugeMetricFamily("skerry_agent_applied_release", "Release of the last reconciled bundle.",
                                    labels=["cluster"])
        ready = GaugeMetricFamily("skerry_agent_ready", "1 if the last reconcile ended Ready, else 0.",
                                  labels=["cluster"])
        expiry = GaugeMetricFamily(
            "skerry_agent_metadata_expiry_seconds",
            "Seconds until the current bundle's signed metadata expires (negative: expired).", labels=["cluster"],
        )
        info = GaugeMetricFamily("skerry_agent_bundle_info", "The bundle the agent holds (value 1).",
                                 labels=["cluster", "digest", "revision"])
        last = app.last_result
        release.add_metric([cluster], last.release if last is not None else 0)
        ready.add_metric([cluster], 1 if last is not None and last.ready else 0)
        current = app.current
        if current is not None:
            expiry.add_metric([cluster], (current.expires - self._clock.now()).total_seconds())
            info.add_metric([cluster, current.digest, current.bundle.revision], 1)
        yield from (release, ready, expiry, info)
