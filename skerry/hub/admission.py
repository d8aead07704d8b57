"""Admission of new agent streams: a token bucket in front of WatchBundles, and the window to come back over.

When a hub replica dies, its agents come to the other replicas at once. Each new stream costs the
hub its TLS handshake, the interceptors' certificate parsing and the watch's first events (a
bundle, or the TUF refresh it triggers); ten thousand in one second starved the keepalive acks of
the streams already open, the dropped ones reconnected too, and the tier never recovered
(bench/fleet_ha.py). So a hub admits new streams at ``rate`` a second with bursts of ``burst``;
beyond that it refuses at once, before any bundle work, with RESOURCE_EXHAUSTED (reason
``AdmissionLimited``, counted in ``skerry_refusals_total``) and gRPC's pushback trailer saying when
to come back. The pushback places each refused agent in a virtual queue: the k-th agent refused in
a burst comes back about k / ``rate`` seconds later (jittered by one slot), so a queue drains at the
rate the hub admits. The agent keeps its connection and waits (``skerry.agent.stream``): no new
handshake for a refusal.

Every stream opened is also told this hub's ``spread``: the fleet (or its open streams, if more) over
its admission rate. An agent that loses the stream (this hub died) takes its replica's share of that
window spread over the other replicas, and waits a full-jitter delay over it before it reconnects, so
the storm is spread at the source; the admission gate catches what is left. The fleet, not the open
streams: agents told the open streams as they connected had windows that grew with their place in
the first connect, so the early ones (most of a dead replica's agents within seconds: the density of
a jitter over windows spread evenly falls like log(1/t)) came back in one lump and, at 30,000 agents,
overloaded the TLS handshakes before any stream reached the gate (bench/fleet_ha.py, load 100).

Pure apart from the clock and the random source, which are injected.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from skerry.core.errors import ConfigError, ResourceExhausted
from skerry.core.pushback import MAX_PUSHBACK_SECONDS, MAX_SPREAD_SECONDS

# New agent streams one hub admits a second, sustained. bench/fleet_ha.py (2 shared cores, 3 hubs and
# the simulated agents on one machine): a first connect of 30,000 agents at ~33 new streams a second per
# hub held; at ~170 a second per hub the hubs collapsed (load 99). Without a gate, the two hubs left after
# a replica kill took its agents back at ~150 resumes a second each (12,000 agents: 3,885 back in 12.9 s,
# load 13; 20,000: 6,539 in 23.4 s, load 25) — their ceiling here; 100 leaves the rest for the streams
# already open (their keepalive acks) and for the fan-outs. Operators with dedicated cores raise it.
ADMISSION_RATE = 100.0
# New streams admitted at once before the rate applies: a small hub restarted (a few hundred agents)
# takes its fleet back in one burst; a dead replica's ten thousand do not.
ADMISSION_BURST = 200.0
# Longest pushback the hub hands out: past it a refused agent is told to come back somewhere in
# [MAX_QUEUE_SECONDS / 2, MAX_QUEUE_SECONDS) without a place in the queue (the queue does not grow for ever).
MAX_QUEUE_SECONDS = min(120.0, MAX_PUSHBACK_SECONDS)
REASON = "AdmissionLimited"


class AdmissionGate:
    """Token bucket for new streams (``rate`` a second, up to ``burst``) with a pushback queue; one per hub process.

    ``admit`` spends a token or raises ``ResourceExhausted`` whose ``retry_after`` is this caller's place in
    the queue; ``spread(open_streams)`` is the reconnect window to advertise. ``admitted`` and ``refused``
    count decisions (the refusals are also counted by reason where the server answers them).
    """

    def __init__(
        self,
        rate: float = ADMISSION_RATE,
        burst: float = ADMISSION_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        max_queue: float = MAX_QUEUE_SECONDS,
    ):
        if not rate > 0 or not burst >= 1:
            raise ConfigError(f"stream admission: rate must be > 0 and burst >= 1 (got rate {rate:g}, burst {burst:g})")
        self.rate, self.burst, self.max_queue = float(rate), float(burst), float(max_queue)
        self._clock, self._rng = clock, rng
        self._tokens, self._last = self.burst, clock()
        self._queue_end = self._last  # when the last agent told to come back is due
        self.admitted = 0
        self.refused = 0

    def admit(self) -> None:
        """Admit one new stream now, or raise ``ResourceExhausted`` (reason ``AdmissionLimited``) with its pushback."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            self.admitted += 1
            return
        self.refused += 1
        slot = 1 / self.rate
        # behind the next token, and behind everyone already told to come back
        due = max(self._queue_end, now + (1 - self._tokens) * slot) + slot
        if due - now <= self.max_queue:
            self._queue_end = due
            wait = due - now + self._rng() * slot
        else:  # the queue is full: come back late in the window, not in step with the others
            wait = self.max_queue * (1 - self._rng() / 2)
        raise ResourceExhausted(
            f"the hub is admitting new streams at {self.rate:g}/s and is past its burst of {self.burst:g}; "
            f"come back in {wait:.1f}s",
            reason=REASON,
            retry_after=wait,
        )

    def spread(self, streams: int) -> float:
        """Seconds ``streams`` agents take to come back at this hub's rate (at most ``MAX_SPREAD_SECONDS``,
        what agents honour)."""
        return min(MAX_SPREAD_SECONDS, max(0, streams) / self.rate)
