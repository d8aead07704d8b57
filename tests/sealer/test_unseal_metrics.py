"""The sealer's unseal counters: each outcome counted once, by outcome and reason, every call timed."""

from __future__ import annotations

import types

import pytest

from skerry.core.errors import PermissionDenied, SealError
from skerry.core.metrics import CollectorRegistry
from skerry.sealer.metrics import InstrumentedGate, SealerMetrics

DENIED = PermissionDenied("cluster b may not unseal a's secret", reason="WrongCluster")
FAILED = SealError("no key opens it", reason="NoKey")


class ScriptedGate:
    """Stands in for ``UnsealGate``: answers or refuses as each request says (the counting is under test)."""

    def unseal(self, identity, request):
        if isinstance(request, Exception):
            raise request
        return request

    def unseal_bundle(self, identity, metadata, bundle, **kw):
        if isinstance(bundle, Exception):
            raise bundle
        return types.SimpleNamespace(results=bundle)


def counted(registry: CollectorRegistry, name: str, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def outcomes(registry: CollectorRegistry) -> dict[str, float]:
    """Unseals by outcome, refusals by reason, items and timed calls: what the gate counted."""
    out = {o: counted(registry, "skerry_sealer_unseals_total", outcome=o) for o in ("allowed", "denied", "failed")}
    out |= {r: counted(registry, "skerry_sealer_unseal_refusals_total", reason=r) for r in ("WrongCluster", "NoKey")}
    out["items"] = counted(registry, "skerry_sealer_unsealed_items_total")
    out["timed"] = counted(registry, "skerry_sealer_unseal_duration_seconds_count")
    return out


@pytest.fixture
def gate():
    registry = CollectorRegistry()
    return registry, InstrumentedGate(ScriptedGate(), SealerMetrics(registry))


def test_single_unseals_count_each_outcome_and_its_items(gate):
    registry, instrumented = gate
    assert instrumented.unseal("a", {"user": b"u", "pw": b"p"}) == {"user": b"u", "pw": b"p"}
    for error in (DENIED, FAILED):
        with pytest.raises(type(error)):
            instrumented.unseal("b", error)
    assert outcomes(registry) == {"allowed": 1, "denied": 1, "failed": 1, "WrongCluster": 1, "NoKey": 1,
                                  "items": 2, "timed": 3}
    # a refused call is answered as an error: the server's error interceptor counts it, not the gate
    assert counted(registry, "skerry_refusals_total", service="sealer", reason="WrongCluster") == 0


def test_a_bundle_unseal_counts_a_refused_bundle_once_and_each_secret_by_its_outcome(gate):
    registry, instrumented = gate
    with pytest.raises(PermissionDenied):
        instrumented.unseal_bundle("b", b"{}", DENIED)
    results = [types.SimpleNamespace(error=None, data={"pw": b"p"}), types.SimpleNamespace(error=FAILED, data={})]
    assert instrumented.unseal_bundle("a", b"{}", results).results == results
    assert outcomes(registry) == {"allowed": 1, "denied": 1, "failed": 1, "WrongCluster": 1, "NoKey": 1,
                                  "items": 1, "timed": 2}
    # the secret refused inside an answered bundle never reaches the error interceptor: counted here
    assert counted(registry, "skerry_refusals_total", service="sealer", reason="NoKey") == 1
