"""Pure: per-object exponential backoff of drift corrections, so a fight never becomes a hot loop.

When another controller (or a person with a script) keeps changing a field
Git owns, correcting at once every time turns two controllers into a write
loop against the API server. The first correction of an object is
immediate (the seed's manual fix is reverted at once); each further one
within ``RESET_AFTER_SECONDS`` of the previous waits twice as long as the
last, from ``BASE_SECONDS`` up to ``CAP_SECONDS``. The drift stays reported
meanwhile, with how often it was corrected and for how long the agent backs
off — what Argo CD's self-heal backoff does (2 s, factor 2 here, cap 5 min).

Times are monotonic seconds passed in by the caller; nothing here sleeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable

from skerry.core.backoff import capped_exponential

# The wait before the second correction of an object: long enough that a controller re-writing
# every second is not matched write for write, short enough that a one-off mistake made twice is
# still reverted within seconds.
BASE_SECONDS = 2.0
# Doubling per correction: a fight costs O(log t) writes, not O(t).
FACTOR = 2.0
# The longest wait: half the default 10-minute resync, so even a fought-over object is put back
# at least as often as a full re-list would notice it.
CAP_SECONDS = 300.0
# An object not corrected for this long starts again at an immediate correction: a drift an
# hour after the last fight is a new event, not the same fight.
RESET_AFTER_SECONDS = 600.0


@dataclasses.dataclass
class _State:
    corrections: int  # in the current fight
    last: float  # when the last correction was made
    first: float  # when the current fight began


@dataclasses.dataclass(frozen=True)
class Waiting:
    """An object whose correction is held back."""

    key: Hashable
    corrections: int
    seconds_left: float
    fighting_for: float  # seconds since the fight's first correction


class CorrectionBackoff:
    def __init__(
        self,
        *,
        base: float = BASE_SECONDS,
        factor: float = FACTOR,
        cap: float = CAP_SECONDS,
        reset_after: float = RESET_AFTER_SECONDS,
    ):
        self.base, self.factor, self.cap, self.reset_after = base, factor, cap, reset_after
        self._state: dict[Hashable, _State] = {}

    def delay(self, corrections: int) -> float:
        """The wait after ``corrections`` corrections in a row (0 before the first)."""
        if corrections <= 0:
            return 0.0
        return capped_exponential(corrections - 1, base=self.base, cap=self.cap, factor=self.factor)

    def _live(self, key: Hashable, now: float) -> _State | None:
        state = self._state.get(key)
        if state is not None and now - state.last >= self.reset_after:
            del self._state[key]
            return None
        return state

    def split(self, keys: Iterable[Hashable], now: float) -> tuple[list[Hashable], list[Waiting]]:
        """``(due now, held back)`` among the drifted ``keys``."""
        due: list[Hashable] = []
        held: list[Waiting] = []
        for key in keys:
            state = self._live(key, now)
            if state is None:
                due.append(key)
                continue
            left = state.last + self.delay(state.corrections) - now
            if left <= 0:
                due.append(key)
            else:
                held.append(Waiting(key, state.corrections, left, now - state.first))
        return due, held

    def corrected(self, key: Hashable, now: float) -> int:
        """Record a correction of ``key``; returns how many the current fight has seen."""
        state = self._live(key, now)
        if state is None:
            self._state[key] = _State(1, now, now)
            return 1
        state.corrections += 1
        state.last = now
        return state.corrections

    def corrections(self, key: Hashable, now: float) -> int:
        state = self._live(key, now)
        return state.corrections if state is not None else 0

    def forget(self, keep: Iterable[Hashable]) -> None:
        """Drop the state of objects no longer managed."""
        wanted = set(keep)
        for key in [k for k in self._state if k not in wanted]:
            del self._state[key]
