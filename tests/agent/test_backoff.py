"""Drift-correction backoff (pure): immediate first, then doubling to a cap, reset after a quiet spell."""

from __future__ import annotations

from skerry.agent.reconcile.backoff import BASE_SECONDS, CAP_SECONDS, RESET_AFTER_SECONDS, CorrectionBackoff

KEY = ("apps", "Deployment", "shop", "web")
OTHER = ("", "ConfigMap", "shop", "settings")


def test_the_first_correction_is_immediate_and_the_next_ones_wait_twice_as_long():
    b = CorrectionBackoff()
    assert b.split([KEY], 0.0) == ([KEY], [])
    assert b.corrected(KEY, 0.0) == 1
    due, (held,) = b.split([KEY], 1.0)
    assert due == [] and held.corrections == 1 and held.seconds_left == BASE_SECONDS - 1.0
    assert b.split([KEY], BASE_SECONDS)[0] == [KEY]
    b.corrected(KEY, BASE_SECONDS)
    assert b.split([KEY], BASE_SECONDS + 2 * BASE_SECONDS - 0.1)[0] == []
    assert b.split([KEY], BASE_SECONDS + 2 * BASE_SECONDS)[0] == [KEY]


def test_a_fight_costs_logarithmically_many_writes_up_to_the_cap():
    b = CorrectionBackoff()
    writes, t = 0, 0.0
    while t < 3600:  # someone re-writes the field every second for an hour
        if b.split([KEY], t)[0]:
            b.corrected(KEY, t)
            writes += 1
        t += 1.0
    assert writes <= 8 + 3600 / CAP_SECONDS + 1
    assert b.delay(100) == CAP_SECONDS


def test_objects_back_off_independently_and_a_quiet_spell_resets():
    b = CorrectionBackoff()
    b.corrected(KEY, 0.0)
    assert b.split([KEY, OTHER], 0.5)[0] == [OTHER]
    assert b.split([KEY], RESET_AFTER_SECONDS)[0] == [KEY]
    assert b.corrected(KEY, RESET_AFTER_SECONDS) == 1
    b.forget([OTHER])
    assert b.corrections(KEY, RESET_AFTER_SECONDS) == 0
