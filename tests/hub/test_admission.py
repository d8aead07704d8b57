"""The hub's admission gate for new agent streams (skerry/hub/admission.py): pure, an injected clock and draw."""

from __future__ import annotations

import pytest

from skerry.core.errors import ConfigError, ResourceExhausted
from skerry.core.pushback import MAX_SPREAD_SECONDS
from skerry.hub.admission import (
    FULL_PUSHBACK_SECONDS,
    MAX_DERIVED_STREAMS,
    REASON,
    RESERVED_FILES,
    AdmissionGate,
    derived_max_streams,
)
from skerry.hub.servicer import StreamRegistry


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refusal(gate: AdmissionGate) -> ResourceExhausted:
    with pytest.raises(ResourceExhausted) as err:
        gate.admit(0)
    assert err.value.reason == REASON
    return err.value


def test_the_burst_is_admitted_and_the_next_stream_is_told_when_to_come_back():
    clock = Clock()
    gate = AdmissionGate(rate=10, burst=3, clock=clock, rng=lambda: 0.0)
    for _ in range(3):
        gate.admit(0)
    first = refusal(gate)
    # the next token is due in 0.1 s; this agent's slot is the one after it
    assert first.retry_after == pytest.approx(0.2)
    assert (gate.admitted, gate.refused) == (3, 1)


def test_refused_agents_queue_one_slot_apart_so_the_queue_drains_at_the_rate():
    clock = Clock()
    gate = AdmissionGate(rate=100, burst=1, clock=clock, rng=lambda: 0.0)
    gate.admit(0)
    waits = [refusal(gate).retry_after for _ in range(500)]
    assert waits == pytest.approx([0.01 * (k + 2) for k in range(500)])  # 500 agents over 5 s, not at once
    # the jitter moves an agent by less than one slot: the order of the queue is kept
    jittered = AdmissionGate(rate=100, burst=1, clock=clock, rng=lambda: 0.999)
    jittered.admit(0)
    assert [refusal(jittered).retry_after for _ in range(3)] == pytest.approx([0.02999, 0.03999, 0.04999])


def test_tokens_come_back_at_the_rate_and_never_above_the_burst():
    clock = Clock()
    gate = AdmissionGate(rate=10, burst=2, clock=clock, rng=lambda: 0.0)
    gate.admit(0), gate.admit(0)
    refusal(gate)
    clock.now += 0.1
    gate.admit(0)  # one token came back
    clock.now += 3600  # an idle hour refills up to the burst, no further
    gate.admit(0), gate.admit(0)
    refusal(gate)


def test_a_full_queue_scatters_the_rest_late_in_its_window_and_stops_growing():
    clock = Clock()
    draws = iter([0.0, 0.0, 0.0, 1.0, 0.0] + [0.5] * 10)
    gate = AdmissionGate(rate=1, burst=1, clock=clock, rng=lambda: next(draws), max_queue=3)
    gate.admit(0)
    assert [refusal(gate).retry_after for _ in range(2)] == pytest.approx([2, 3])
    # the queue is full (the next slot is 4 s away): come back in [1.5, 3) s, the queue left as it is
    assert [refusal(gate).retry_after for _ in range(3)] == pytest.approx([3, 1.5, 3])
    clock.now += 3
    gate.admit(0)


def test_the_spread_is_open_streams_over_the_rate_within_what_agents_honour():
    gate = AdmissionGate(rate=100, burst=10)
    assert gate.spread(10_000) == pytest.approx(100)
    assert gate.spread(0) == 0
    assert gate.spread(10**9) == MAX_SPREAD_SECONDS


@pytest.mark.parametrize(("rate", "burst"), [(0, 10), (-1, 10), (10, 0.5)])
def test_a_rate_or_burst_that_admits_nothing_is_refused_at_start(rate, burst):
    with pytest.raises(ConfigError, match="stream admission"):
        AdmissionGate(rate, burst)


def test_the_stream_registry_counts_open_streams_through_supersession_and_close():
    woken: list[str] = []
    registry = StreamRegistry(woken.append)
    a = registry.open("fp-a", "oslo", None)
    registry.open("fp-b", "bergen", None)
    newer = registry.open("fp-a", "oslo", None)  # supersedes a
    assert len(registry) == 2 and woken == ["oslo"]
    registry.close(a)  # already gone: not counted twice
    assert len(registry) == 2
    registry.close(newer)
    assert len(registry) == 1


# --- the cap on streams a replica holds ------------------------------------------------------------------


def full_refusal(gate: AdmissionGate, open_streams: int) -> ResourceExhausted:
    with pytest.raises(ResourceExhausted) as err:
        gate.admit(open_streams)
    assert err.value.reason == "ReplicaFull"
    return err.value


@pytest.mark.parametrize(
    ("open_files", "cap"),
    [
        (20_000, 20_000 - RESERVED_FILES),  # this machine's limit: two replicas of three hold 30,000 agents
        (2 * RESERVED_FILES, RESERVED_FILES),
        (1024, 512),  # a limit below twice the reserve: half of it is kept back
        (1, 1),  # at least one
        (10**9, MAX_DERIVED_STREAMS),  # memory binds before descriptors do
        (None, MAX_DERIVED_STREAMS),  # no limit at all
    ],
)
def test_the_derived_cap_is_the_open_file_limit_less_the_reserve(open_files, cap):
    assert derived_max_streams(open_files) == cap


def test_past_the_cap_a_stream_is_refused_as_full_with_a_jittered_pushback_and_admitted_again_below_it():
    gate = AdmissionGate(rate=100, burst=10, rng=lambda: 0.5, max_streams=2)
    gate.admit(0), gate.admit(1)
    refused = full_refusal(gate, 2)
    assert refused.retry_after == pytest.approx(FULL_PUSHBACK_SECONDS * 0.75)  # in its window's second half
    assert (gate.admitted, gate.refused, gate.full) == (2, 0, 1)
    gate.admit(1)  # one stream closed: room again


def test_agents_told_to_come_back_hold_a_place_under_the_cap_until_they_are_due():
    clock = Clock()
    gate = AdmissionGate(rate=1, burst=1, clock=clock, rng=lambda: 0.0, max_streams=3)
    gate.admit(0)
    assert refusal(gate).retry_after == pytest.approx(2)  # waits on its connection: a descriptor held here
    refusal(gate)  # due in 3 s
    # one stream open and two agents due back: a third newcomer finds the replica full
    full_refusal(gate, 1)
    clock.now += 2.5  # the first is due (admitted or refused again, it no longer waits on that place)
    gate.admit(1)  # room under the cap again (and a token)


def test_a_cap_below_one_stream_is_refused_at_start_naming_the_setting():
    with pytest.raises(ConfigError, match="^max_streams: "):
        AdmissionGate(max_streams=0)
