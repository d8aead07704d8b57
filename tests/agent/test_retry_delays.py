"""The one backoff (skerry/core/backoff.py), the server's reconnect hints it heeds (skerry/core/pushback.py) and the
agent's retry waits that use it: pure, no clock, no server."""

import pytest

from skerry.agent.reconcile.backoff import CorrectionBackoff
from skerry.core import pushback
from skerry.core.backoff import MAX_EXPONENT, capped_exponential, full_jitter, reconnect_delay, spread


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


def test_a_reconnect_after_a_pushback_waits_exactly_what_the_server_said():
    assert reconnect_delay(0, base=0.5, cap=15, spread=60, pushback=7.25, rng=lambda: 0.0) == 7.25
    assert reconnect_delay(9, base=0.5, cap=15, pushback=0.0, rng=lambda: 0.9) == 0.0


def test_a_reconnect_after_a_lost_stream_is_full_jitter_over_the_wider_of_backoff_and_spread():
    # a dead hub that advertised 40 s: its agents come back anywhere in [0, 40 s), not within 0.5 s
    assert reconnect_delay(0, base=0.5, cap=15, spread=40, rng=lambda: 0.5) == pytest.approx(20)
    assert reconnect_delay(0, base=0.5, cap=15, spread=40, rng=lambda: 0.999) == pytest.approx(39.96)
    # a narrow spread never shortens the backoff of a failure streak
    assert reconnect_delay(5, base=0.5, cap=15, spread=1, rng=lambda: 0.5) == pytest.approx(7.5)
    assert reconnect_delay(0, base=0.5, cap=15, rng=lambda: 0.5) == full_jitter(0, base=0.5, cap=15, rng=lambda: 0.5)


def test_a_lost_replica_s_agents_take_its_share_of_the_fleet_window_over_the_others():
    # a 300 s fleet window, 3 replicas: the dead one held a third, shared by 2 others -> 50 s
    assert reconnect_delay(0, base=0.5, cap=15, spread=300, replicas=3, rng=lambda: 0.999) == pytest.approx(49.95)
    assert reconnect_delay(0, base=0.5, cap=15, spread=300, replicas=2, rng=lambda: 0.5) == pytest.approx(75)
    # one address (a Service in front of the replicas): the whole window
    assert reconnect_delay(0, base=0.5, cap=15, spread=300, replicas=1, rng=lambda: 0.5) == pytest.approx(150)


def test_hints_from_a_server_are_read_as_milliseconds_and_bounded():
    assert pushback.entry(pushback.PUSHBACK_METADATA, 1.2341) == ("grpc-retry-pushback-ms", "1235")
    assert pushback.pushback([("skerry-reason", "AdmissionLimited"), ("grpc-retry-pushback-ms", "1500")]) == 1.5
    assert pushback.pushback([("grpc-retry-pushback-ms", b"250")]) == 0.25
    assert pushback.spread([(pushback.SPREAD_METADATA, "30000")]) == 30.0
    # a hostile or broken hub cannot park an agent for ever
    assert pushback.pushback([("grpc-retry-pushback-ms", str(10**11))]) == pushback.MAX_PUSHBACK_SECONDS
    assert pushback.spread([(pushback.SPREAD_METADATA, str(86_400_000))]) == pushback.MAX_SPREAD_SECONDS
    # not a non-negative integer (gRFC A6): ignored, the client's own backoff applies
    for bad in ("-5", "1.5", "", "soon", "9" * 40):
        assert pushback.pushback([("grpc-retry-pushback-ms", bad)]) is None
    assert pushback.pushback(None) is None and pushback.spread(()) is None
