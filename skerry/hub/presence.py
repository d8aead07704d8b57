"""Whether this process may serve its copy of the published state: not while it comes back from being away.

Every hub process serves agents its in-memory copy of what the writer
published (TUF metadata, each cluster's release), kept current by its
``skerry.hub.replica.Follower``. A process that was *away* — it did not run at
all (SIGSTOP, a paused VM) or its event loop stalled — wakes with that copy as
it was: meanwhile another process may have taken the lease and published
newer metadata, which agents already trust. Serving the old copy then (the
handshakes queued while it was away are answered first) makes those agents
refuse it as a TUF rollback. So after a gap it refuses (``Unavailable``,
reason ``ReplicaAway``: agents move to another replica or retry) until its
follower has looked at the change log again, a look *started* after the gap.

A database that is away is another matter: the process runs, its follower
keeps trying (each failed attempt still completes) and it keeps serving its
signed, unexpired copy, as the hub must during a PostgreSQL outage. The two
are told apart by the event loop's own heartbeat (``run``; also every
``alive``/``check`` call): a gap between two of them longer than
``AWAY_SECONDS`` is time this process did not run, whatever the database did.

The decision is pure over an injected monotonic clock; the servicers only
call ``check`` and the follower ``alive``/``looked``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from skerry.core.errors import Unavailable

# A gap between two signs of life longer than this is time away. Several follower poll intervals
# (``skerry.hub.state.feed.FOLLOW_SECONDS``, 1 s) and beats, so an ordinary busy loop is not taken for
# away; well under the default writer lease (15 s), so a writer paused long enough to lose its lease
# is always caught (a shorter pause loses no lease: only the usual follower lag, bounded by the poll).
AWAY_SECONDS = 3.0
# How often the event loop says it is alive: a fraction of ``AWAY_SECONDS``, one cheap call.
BEAT_SECONDS = 0.5
AWAY_REASON = "ReplicaAway"


class Presence:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic, *, away: float = AWAY_SECONDS):
        self._monotonic = monotonic
        self._away = away
        self._last: float | None = None  # the last sign of life (none yet: the process is starting)
        self._back: float | None = None  # when this process came back from its last time away
        self._looked = float("-inf")  # the start of the newest completed look at the change log

    def alive(self) -> float:
        """A sign of life (the event loop runs now); a gap since the last one is time away. Returns now."""
        now = self._monotonic()
        if self._last is not None and now - self._last > self._away:
            self._back = now
        self._last = now
        return now

    def looked(self, started: float) -> None:
        """The follower completed a look at the change log, read or failed, that started at ``started``
        (what ``alive`` returned before it)."""
        self.alive()
        self._looked = max(self._looked, started)

    def fresh(self) -> bool:
        """Whether this process may serve: never away, or a look started since it came back completed."""
        self.alive()
        return self._back is None or self._looked >= self._back

    def check(self) -> None:
        if not self.fresh():
            raise Unavailable("this hub process was away and has not re-read the hub state yet; another replica "
                              "serves, or this one in a moment", reason=AWAY_REASON)

    async def run(self) -> None:
        """The event loop's heartbeat, while serving."""
        while True:
            self.alive()
            await asyncio.sleep(BEAT_SECONDS)
