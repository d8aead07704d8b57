"""The sealer's Prometheus families: unseals (count, latency, refusals) and key ages.

Why a module: the unseal gate and the key registry are the sealer's
security core and change under review; instrumentation wraps them instead
(``InstrumentedGate`` around ``UnsealGate.unseal``, ``KeyAgeCollector``
reading the registry at scrape time). ``skerry_refusals_total{service="sealer"}``
(``core.metrics.Refusals``) counts every refused RPC (in the server's error
interceptor) and each secret refused inside an answered bundle unseal (here).
Labels carry outcomes, reasons,
domains and key ids only - never a namespace/name pair (unbounded) and
never any sealed or plain value.
"""

from __future__ import annotations

import time

from prometheus_client.core import GaugeMetricFamily

from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import PermissionDenied, SkerryError
from skerry.core.metrics import CollectorRegistry, Counter, Histogram, Refusals

# RSA-4096 decryption of a few items: ~1 ms .. ~1 s.
UNSEAL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class SealerMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.refused = Refusals(registry, "sealer")
        self.unseals = Counter(
            "skerry_sealer_unseals_total", "Unseal attempts, by outcome (allowed, denied, failed).", ["outcome"],
            registry=registry,
        )
        self.refusals = Counter(
            "skerry_sealer_unseal_refusals_total", "Unseal attempts refused or failed, by reason.", ["reason"],
            registry=registry,
        )
        self.seconds = Histogram(
            "skerry_sealer_unseal_duration_seconds", "Time of one unseal (authorise, decrypt every item, audit).",
            buckets=UNSEAL_BUCKETS, registry=registry,
        )
        self.items = Counter(
            "skerry_sealer_unsealed_items_total", "Secret items decrypted for authorised agents.", registry=registry
        )


class InstrumentedGate:
    """``UnsealGate`` with every attempt counted and timed."""

    def __init__(self, gate, metrics: SealerMetrics):
        self._gate = gate
        self._metrics = metrics

    def unseal(self, identity, request):
        out = self._attempt(self._gate.unseal, identity, request)
        self._allowed(len(out))
        return out

    def unseal_bundle(self, identity, metadata, bundle, **kw):
        """The bundle-scoped path: a refused bundle counts once, then each secret by its own outcome."""
        page = self._attempt(self._gate.unseal_bundle, identity, metadata, bundle, **kw)
        for result in page.results:
            if result.error is None:
                self._allowed(len(result.data))
            else:
                self._refused(result.error)
                self._metrics.refused.count(result.error)  # answered, so the error interceptor never sees it
        return page

    def _attempt(self, call, *args, **kw):
        """``call``, timed; a refusal of the whole call counted by its outcome and reason."""
        started = time.monotonic()
        try:
            return call(*args, **kw)
        except SkerryError as e:
            self._refused(e)
            raise
        finally:
            self._metrics.seconds.observe(time.monotonic() - started)

    def _allowed(self, items: int) -> None:
        self._metrics.unseals.labels("allowed").inc()
        self._metrics.items.inc(items)

    def _refused(self, error: SkerryError) -> None:
        self._metrics.unseals.labels("denied" if isinstance(error, PermissionDenied) else "failed").inc()
        self._metrics.refusals.labels(error.reason).inc()

    def __getattr__(self, name):  # re_encrypt and the rest pass through uncounted
        return getattr(self._gate, name)


class KeyAgeCollector:
    """Per key: its age; per domain: how many keys and the sealing key's age (rotation alerts)."""

    def __init__(self, registry, clock: Clock | None = None):
        self._registry = registry
        self._clock = clock or SystemClock()

    def describe(self):
        return []

    def collect(self):
        now = self._clock.now()
        age = GaugeMetricFamily("skerry_sealer_key_age_seconds", "Age of each retained key.",
                                labels=["domain", "key_id"])
        sealing = GaugeMetricFamily("skerry_sealer_sealing_key_age_seconds",
                                    "Age of the key new secrets are sealed with, by domain.", labels=["domain"])
        count = GaugeMetricFamily("skerry_sealer_keys", "Retained keys, by domain.", labels=["domain"])
        for domain in self._registry.domains:
            keys = self._registry.keys(domain)
            count.add_metric([domain], len(keys))
            for key in keys:
                age.add_metric([domain, key.key_id], (now - key.created).total_seconds())
            if keys:
                sealing.add_metric([domain], (now - keys[0].created).total_seconds())
        yield from (age, sealing, count)
