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

A replica also bounds what it holds: every agent stream is a connection, a file descriptor, and past
the process's open-file limit everything the hub opens fails (a database connection, a trust file:
EMFILE), as the two replicas left after a SIGKILL at 30,000 agents showed (bench/fleet_ha.py, issue
14). So a hub holds at most ``max_streams`` streams, counting the agents it told to come back (each
waits on its connection): by default its open-file limit less ``RESERVED_FILES``
(``derived_max_streams``; the hub raises its soft limit to the hard one at start). An agent holds one
connection at its hub: its signed reports share its watch's (``skerry.agent.attest``). Past it a new stream
is refused at once with RESOURCE_EXHAUSTED, reason ``ReplicaFull`` (``skerry.core.pushback``), and a
pushback for an agent that has no other replica to go to; one that has goes to another at once. A
newer watch of an agent that already holds one here replaces it and takes no new slot (the servicer
does not count the old one).

Pure apart from the clock, the random source and the open-file limit (``derived_max_streams`` takes it
as an argument), which are injected.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable

from skerry.core.errors import ConfigError, ResourceExhausted
from skerry.core.openfiles import open_file_limit
from skerry.core.pushback import MAX_PUSHBACK_SECONDS, MAX_SPREAD_SECONDS, REPLICA_FULL

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

# Open files a hub keeps back from agent streams when it derives its cap from its open-file limit: the
# PostgreSQL pool (up to 8) and its listening connection, the gRPC, enrollment, metrics, dashboard and
# webhook listeners, gRPC's and asyncio's polling and wake-up descriptors, the render worker's and Git
# fetches' pipes, trust and state files read per request, logs, and the connections that hold no stream:
# TLS handshakes in flight, operators' and sealers' calls, agents between a refusal and their close, the
# connection an agent opens for a TUF refresh (closed after it). Tens of these in steady state; the rest
# is room for handshakes and refreshes during a reconnect storm or a release's fan-out (at the 20,000-file
# limit of bench/fleet_ha.py: a cap of 17,952, so two replicas of three hold 30,000 agents with room).
RESERVED_FILES = 2048
# The cap a process without an open-file limit (or with a huge one) derives: an mTLS stream pins 81-88 KiB
# of the hub's memory (grpc.aio; most of it BoringSSL's two 17 KiB buffers), so 100,000 streams are
# ~8.5 GiB before any bundle. A host with the memory sets --max-streams above it.
MAX_DERIVED_STREAMS = 100_000
# How long a full replica tells an agent that cannot go elsewhere to stay away (jittered over its second
# half): a full replica gains room only as streams end (agents lost, connections retired at their maximum
# age over half an hour), so asking sooner only earns another refusal; an agent behind one Service address
# may reach another replica on its next dial.
FULL_PUSHBACK_SECONDS = 30.0


def derived_max_streams(open_files: int | None, reserve: int = RESERVED_FILES) -> int:
    """The streams a replica holds at most given its soft open-file limit (None: no limit): the limit less
    ``reserve``, or half of a limit smaller than twice the reserve; at least one, at most
    ``MAX_DERIVED_STREAMS``."""
    if open_files is None:
        return MAX_DERIVED_STREAMS
    return max(1, min(MAX_DERIVED_STREAMS, open_files - min(reserve, open_files // 2)))


class AdmissionGate:
    """Token bucket for new streams (``rate`` a second, up to ``burst``) with a pushback queue, and the cap on
    streams held (``max_streams``; None: derived from this process's open-file limit); one per hub process.

    ``admit(open_streams)`` refuses past the cap (``ReplicaFull``), else spends a token or raises
    ``ResourceExhausted`` whose ``retry_after`` is this caller's place in the queue; ``spread(open_streams)``
    is the reconnect window to advertise. ``admitted``, ``refused`` and ``full`` count decisions (the
    refusals are also counted by reason where the server answers them).
    """

    def __init__(
        self,
        rate: float = ADMISSION_RATE,
        burst: float = ADMISSION_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        max_queue: float = MAX_QUEUE_SECONDS,
        max_streams: int | None = None,
    ):
        if not rate > 0 or not burst >= 1:
            raise ConfigError(f"stream admission: rate must be > 0 and burst >= 1 (got rate {rate:g}, burst {burst:g})")
        if max_streams is not None and max_streams < 1:
            raise ConfigError(f"max_streams: a replica must hold at least one stream (got {max_streams})")
        self.rate, self.burst, self.max_queue = float(rate), float(burst), float(max_queue)
        self.max_streams = derived_max_streams(open_file_limit()) if max_streams is None else int(max_streams)
        self._clock, self._rng = clock, rng
        self._tokens, self._last = self.burst, clock()
        self._queue_end = self._last  # when the last agent told to come back is due
        self._due: list[float] = []  # when each agent told to come back is due (a heap; fewer than max_streams)
        self.admitted = 0
        self.refused = 0
        self.full = 0

    def admit(self, open_streams: int) -> None:
        """Admit one new stream now, beside ``open_streams`` held, or raise ``ResourceExhausted`` with a pushback:
        reason ``ReplicaFull`` past the cap, ``AdmissionLimited`` past the rate."""
        now = self._clock()
        while self._due and self._due[0] <= now:  # came back (admitted or refused again) or gave up
            heapq.heappop(self._due)
        if open_streams + len(self._due) >= self.max_streams:
            self.full += 1
            raise ResourceExhausted(
                f"this hub replica holds {open_streams} agent streams and {len(self._due)} agents due back, its cap "
                f"of {self.max_streams}; go to another replica (or come back later)",
                reason=REPLICA_FULL,
                retry_after=FULL_PUSHBACK_SECONDS * (1 - self._rng() / 2),
            )
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
        heapq.heappush(self._due, now + wait)  # it waits on its connection: held like a stream until then
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
