"""An injectable clock, so expiry, freshness and backoff are testable without sleeping."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> _dt.datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> _dt.datetime:
        return _dt.datetime.now(_dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: _dt.datetime | None = None):
        self._now = start or _dt.datetime(2030, 1, 1, tzinfo=_dt.UTC)
        self._mono = 0.0

    def now(self) -> _dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += _dt.timedelta(seconds=seconds)
        self._mono += seconds
