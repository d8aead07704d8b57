"""The state writes' own threads: bounded, refusing at once past their queue, never on the default executor.

Each write here blocks its thread until the test lets it go, as a write waits out a stalled database: the
writes beyond the threads and the queue are refused at once (``StateUnavailable``), work on asyncio's
default executor still runs meanwhile, and once let go every accepted write finishes. A shut-down
``StateThreads`` (the hub stopping) cancels what still waits and takes no more.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from skerry.hub.state import StateUnavailable
from skerry.hub.state.threads import StateThreads

THREADS, WAITING = 2, 3
# How long the test waits for a write it let go (a thread's wake-up, far below it).
LET_GO = 5.0


class Stalled:
    """A write that blocks until let go, counting the ones that entered a thread."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.entered = threading.Semaphore(0)
        self.threads: set[str] = set()

    def __call__(self, value: int) -> int:
        self.threads.add(threading.current_thread().name)
        self.entered.release()
        if not self.go.wait(LET_GO * 4):
            raise AssertionError("the write was never let go")
        return value


async def entered(stalled: Stalled, count: int) -> None:
    for _ in range(count):
        assert await asyncio.to_thread(stalled.entered.acquire, timeout=LET_GO), "a write never started"


async def test_writes_past_the_threads_and_the_queue_are_refused_at_once_and_the_rest_finish():
    writes, stalled = StateThreads(THREADS, max_waiting=WAITING), Stalled()
    try:
        accepted = [asyncio.ensure_future(writes.run(stalled, i)) for i in range(THREADS + WAITING)]
        await entered(stalled, THREADS)  # both threads wait on the "database"; the others queue
        assert writes.waiting == THREADS + WAITING
        with pytest.raises(StateUnavailable, match="already wait for the database"):
            await writes.run(stalled, -1)
        # the default executor is not theirs: work there runs while every write thread waits
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "served"), LET_GO) == "served"
        stalled.go.set()
        assert await asyncio.wait_for(asyncio.gather(*accepted), LET_GO) == list(range(THREADS + WAITING))
        assert len(stalled.threads) == THREADS and all(n.startswith("skerry-state-write") for n in stalled.threads)
        assert writes.waiting == 0
        assert await writes.run(stalled, 7) == 7  # room again
    finally:
        stalled.go.set()
        writes.shutdown()


async def test_a_write_whose_caller_gave_up_while_queued_is_never_made_and_frees_its_place():
    writes, stalled = StateThreads(1, max_waiting=1), Stalled()
    try:
        running = asyncio.ensure_future(writes.run(stalled, 1))
        await entered(stalled, 1)
        queued = asyncio.ensure_future(writes.run(stalled, 2))
        await asyncio.sleep(0)
        queued.cancel()  # its caller went away (a cancelled call) before its turn
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert writes.waiting == 1
        again = asyncio.ensure_future(writes.run(stalled, 3))  # its place is free
        stalled.go.set()
        assert await asyncio.wait_for(asyncio.gather(running, again), LET_GO) == [1, 3]
        assert writes.waiting == 0
    finally:
        stalled.go.set()
        writes.shutdown()


async def test_a_shut_down_state_writes_cancels_what_waits_and_takes_no_more():
    writes, stalled = StateThreads(1, max_waiting=1), Stalled()
    running = asyncio.ensure_future(writes.run(stalled, 1))
    await entered(stalled, 1)
    queued = asyncio.ensure_future(writes.run(stalled, 2))
    await asyncio.sleep(0)
    writes.shutdown()  # the hub stops: the queued write is dropped, the running one ends on its own
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(queued, LET_GO)
    with pytest.raises(StateUnavailable, match="stopping"):
        await writes.run(stalled, 3)
    stalled.go.set()
    assert await asyncio.wait_for(running, LET_GO) == 1
