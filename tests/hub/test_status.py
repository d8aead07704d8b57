"""The status board: the latest report per cluster, never moved backwards by reports that cross."""

from __future__ import annotations

from skerry.hub.status import MAX_TEXT, ClusterStatus, Condition, StatusBoard


def test_latest_report_wins_and_older_ones_are_ignored():
    board = StatusBoard()
    assert board.report(ClusterStatus("a", applied_version=2, observed_unix_ms=2000))
    assert not board.report(ClusterStatus("a", applied_version=1, observed_unix_ms=1000))
    assert board.get("a").applied_version == 2
    assert board.report(ClusterStatus("a", applied_version=2, observed_unix_ms=3000))
    assert board.get("a").observed_unix_ms == 3000


def test_report_about_a_newer_release_is_taken_even_if_the_agent_clock_stepped_back():
    board = StatusBoard()
    board.report(ClusterStatus("a", applied_version=2, observed_unix_ms=5000))
    assert board.report(ClusterStatus("a", applied_version=3, observed_unix_ms=1000))
    assert board.get("a").applied_version == 3


def test_reports_are_bounded_and_forgotten_with_their_cluster():
    board = StatusBoard()
    board.report(ClusterStatus("a", conditions=(Condition("Ready", "False", "Failed", "x" * 100_000),)))
    board.report(ClusterStatus("b"))
    assert len(board.get("a").conditions[0].message) == MAX_TEXT
    board.retain(["b"])
    assert board.get("a") is None and set(board.all()) == {"b"}
