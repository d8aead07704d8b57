"""A hub process back from being away serves nothing until it re-read the state (skerry/hub/presence.py):
pure, an injected monotonic clock."""

from __future__ import annotations

import pytest

from skerry.core.errors import Unavailable
from skerry.hub.presence import AWAY_REASON, AWAY_SECONDS, BEAT_SECONDS, Presence


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def running(presence: Presence, clock: Clock, seconds: float) -> None:
    """The event loop runs for ``seconds``: its heartbeat beats."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now = min(end, clock.now + BEAT_SECONDS)
        presence.alive()


def refused(presence: Presence) -> str:
    with pytest.raises(Unavailable) as err:
        presence.check()
    return err.value.reason


def test_a_process_that_was_away_is_refused_until_a_look_started_after_it_completes():
    clock = Clock()
    presence = Presence(clock)
    started = presence.alive()
    running(presence, clock, 0.5)
    presence.looked(started)
    presence.check()  # never away: serves

    in_flight = presence.alive()  # a look under way when the process stops (SIGSTOP)
    clock.now += AWAY_SECONDS * 10
    assert refused(presence) == AWAY_REASON  # the handshakes queued while it was away
    presence.looked(in_flight)  # it completes after the gap: what it read may be from before it
    assert refused(presence) == AWAY_REASON

    started = presence.alive()  # the follower's next look
    running(presence, clock, 0.3)
    assert refused(presence) == AWAY_REASON  # not done yet
    presence.looked(started)
    presence.check()
    running(presence, clock, 5)
    presence.check()


def test_the_first_request_after_the_gap_is_refused_before_the_heartbeat_runs_again():
    clock = Clock()
    presence = Presence(clock)
    presence.looked(presence.alive())
    clock.now += AWAY_SECONDS + 0.1
    assert not presence.fresh()


def test_a_database_away_is_not_time_away_its_replica_keeps_serving():
    clock = Clock()
    presence = Presence(clock)
    presence.looked(presence.alive())
    for _ in range(3):  # each attempt hangs on the connection pool for 30 s, then fails
        started = presence.alive()
        running(presence, clock, 30)
        presence.check()  # serves its signed copy meanwhile
        presence.looked(started)
        presence.check()


def test_a_stalled_event_loop_is_time_away_and_a_short_pause_is_not():
    clock = Clock()
    presence = Presence(clock)
    presence.looked(presence.alive())
    clock.now += AWAY_SECONDS * 0.9
    presence.check()
    clock.now += AWAY_SECONDS * 1.5  # the loop ran nothing for that long
    presence.alive()  # the heartbeat notices first
    assert refused(presence) == AWAY_REASON
    presence.looked(presence.alive())
    presence.check()


def test_a_starting_process_is_not_away():
    clock = Clock()
    presence = Presence(clock)
    clock.now += 60  # starting up (its first sync) before it serves and beats
    presence.check()
