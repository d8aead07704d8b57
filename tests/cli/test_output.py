"""How releases read on screen (display only; the counters themselves are plain numbers)."""

from __future__ import annotations

from skerry.cli.output import readable_release


def test_small_counters_read_as_numbers_and_nothing_as_a_dash():
    assert readable_release(7) == "r7"
    assert readable_release("12") == "r12"
    assert readable_release(0) == "-"


def test_a_millisecond_counter_reads_as_its_utc_instant_and_consecutive_ones_never_read_the_same():
    first = 1796415910010  # 2026-12-04T20:25:10.010Z
    assert readable_release(first) == "r2026-12-04T20:25:10.010"
    assert readable_release(first + 1) == "r2026-12-04T20:25:10.011"
    assert len({readable_release(first + i) for i in range(2000)}) == 2000
