"""The one backoff (skerry/core/backoff.py) and the agent's retry waits that use it: pure, no clock, no server."""

import pytest

from skerry.agent.reconcile.backoff import CorrectionBackoff
from skerry.core.backoff import MAX_EXPONENT, capped_exponential, full_jitter, spread


def test_capped_exponential_doubles_from_base_and_stops_at_the_cap():
    assert [capped_exponential(n, base=2, cap=30) for n in range(6)] == [2, 4, 8, 16, 30, 30]


def test_capped_exponential_survives_huge_attempts_and_other_factors():
    assert capped_exponential(10_000, base=1, cap=300) == 300
    assert capped_exponential(MAX_EXPONENT + 5, base=1e-30, cap=1e300) == 1e-30 * 2.0**MAX_EXPONENT
    assert capped_exponential(2, base=1, cap=100, factor=3) == 9
    assert capped_exponential(-1, base=5, cap=100) == 5


def test_full_jitter_scales_the_capped_exponential_by_the_random_draw():
    assert full_jitter(3, base=0.5, cap=30, rng=lambda: 0.5) == pytest.approx(2.0)
    assert full_jitter(50, base=0.5, cap=30, rng=lambda: 1.0) == 30
    assert full_jitter(5, base=0.5, cap=30, rng=lambda: 0.0) == 0


def test_drift_correction_waits_are_the_shared_capped_exponential():
    backoff = CorrectionBackoff(base=2, cap=60)
    assert [backoff.delay(n) for n in range(7)] == [0, 2, 4, 8, 16, 32, 60]


def test_spread_is_never_sooner_than_the_pause_and_below_twice_it():
    assert spread(5, rng=lambda: 0.0) == 5
    assert spread(5, rng=lambda: 0.999) == pytest.approx(9.995)
