"""One duration syntax for every flag, variable and policy field: Go's."""

from __future__ import annotations

import pytest

from skerry.core.duration import format_duration, parse_duration
from skerry.core.errors import ConfigError
from skerry.hub.promotion_policy import parse_promotion

from .helpers import error_line, skerry


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("2h0m5s", 7205), ("250ms", 0.25), ("1.5h", 5400), ("7d", 604800),
    ("90", 90),  # a bare number stays seconds, for settings written before
])
def test_go_style_durations_parse(text, seconds):
    assert parse_duration(text, "--x") == seconds


@pytest.mark.parametrize("text", ["", "5 m", "1h30", "-5s", "h", "5min", "1e3s", "11000d"])
def test_anything_else_is_refused_naming_the_setting(text):
    with pytest.raises(ConfigError, match="--interval"):
        parse_duration(text, "--interval")


def test_the_canonical_form_reads_back():
    for seconds in (0, 0.25, 59, 90, 5400, 86400 + 61):
        assert parse_duration(format_duration(seconds), "x") == seconds
    assert format_duration(5400) == "1h30m"


def test_promotion_soak_and_flags_take_the_same_syntax(tmp_path):
    policy = parse_promotion({"environments": {"dev": {"soak": "1h30m"}}}, ("dev", "prod"))
    assert policy.rules("dev").soak_seconds == 5400
    proc = skerry("cluster", "add", "oslo", "--ttl", "1h30", "--state-dir", str(tmp_path))
    assert proc.returncode == 1 and "'1h30' is not a duration" in error_line(proc)
    assert skerry("cluster", "add", "oslo", "--ttl", "1h30m", "--state-dir", str(tmp_path)).returncode == 0
