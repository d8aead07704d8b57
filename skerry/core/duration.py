"""The one duration syntax of every flag, variable and config field: Go's (``30s``, ``5m``, ``1h30m``).

Why one: ``kubectl``, ``flux`` and Kubernetes fields all write durations as Go's
``time.ParseDuration`` does, and three syntaxes in one tool make every flag a guess. Accepted:
one or more ``<number><unit>`` with unit ``ms``, ``s``, ``m``, ``h`` — plus ``d`` (24h) for the
long lifetimes of keys and metadata — and, for configurations written before, a bare number
of seconds. ``format_duration`` writes the canonical form back (``5400`` -> ``1h30m``).
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from skerry.core.errors import ConfigError

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")
_BARE = re.compile(r"^\d+(?:\.\d+)?$")
# No setting needs longer than ten years; a bigger value is a typo.
MAX_SECONDS = 10 * 365 * 86400.0


def parse_duration(value: Any, what: str) -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m``, ``7d``, ``250ms`` (or a bare number of seconds / timedelta)."""
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = float(max(-1, min(value, MAX_SECONDS + 1)))  # an int too large for a float is out of range
    elif isinstance(value, float):
        seconds = value
    else:
        text = str(value).strip()
        if _BARE.match(text):
            seconds = float(text)
        elif _WHOLE.match(text):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
        else:
            raise ConfigError(f"{what}: {value!r} is not a duration (e.g. 30s, 5m, 1h30m, 7d)")
    if not 0 <= seconds <= MAX_SECONDS:
        raise ConfigError(f"{what}: {value!r} is outside 0 .. 10 years")
    return seconds


def format_duration(seconds: float) -> str:
    """The canonical Go-style text: ``90`` -> ``1m30s``, ``0.25`` -> ``250ms``, ``0`` -> ``0s``."""
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    rest = round(seconds)
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"
