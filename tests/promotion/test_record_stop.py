"""A promotion record's update whose caller is cancelled (a clean stop ends the rollouts) is still stored.

A ``RecordBook`` stores its updates one at a time. Here another process's write transaction holds the
hub's SQLite database (a second real connection), so the first update's store waits for it and a second
update waits its turn behind that one; then the second one's task is cancelled, as ``Rollouts.close``
cancels each rollout at a clean stop. Once the database is free, both are stored, and the cancellation
still ends the task. Checked against the code before the fix: the cancelled update was never stored.
A store that cannot finish within ``CANCELLED_UPDATE_SECONDS`` is given up: the stop goes on, and the state
keeps the update before it (with its follow state), what the next start resumes from.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import threading

import pytest

from skerry.core.clock import FixedClock
from skerry.hub.promotion import records
from skerry.hub.promotion.records import KIND, Follow, RecordBook, RecordStore
from skerry.hub.state import open_state

NOW = _dt.datetime(2030, 1, 2, 9, 0, tzinfo=_dt.UTC)
# Longest the other process holds the database (the test lets it go far sooner).
HOLD = 30.0
# Turns of the event loop for the updates to reach their store and their turn (each a few awaits deep).
TURNS = 20


class OtherProcess:
    """Another hub process's write transaction on the same SQLite file, held until ``let_go``."""

    def __init__(self, tmp_path):
        self.state = open_state("", state_dir=tmp_path)
        self.holding, self.go = threading.Event(), threading.Event()

    def _hold(self) -> None:
        with self.state.write():
            self.holding.set()
            self.go.wait(HOLD)

    async def __aenter__(self):
        self.task = asyncio.ensure_future(asyncio.to_thread(self._hold))
        assert await asyncio.to_thread(self.holding.wait, HOLD)
        return self

    def let_go(self) -> None:
        self.go.set()

    async def __aexit__(self, *exc) -> None:
        self.go.set()
        await self.task
        self.state.close()


def promotion(book: RecordBook, app: str):
    rec = book.new(app=app, from_env="dev", to_env="prod", kind="promote", state="committed", requested_by="alice")
    book.follows[rec.id] = Follow(previous=(), auto_rollback=True, soak=60.0, deadline=NOW + _dt.timedelta(hours=1))
    return rec


def stored(state, rec) -> dict | None:
    with state.read() as tx:
        return tx.record(KIND, rec.id)


async def turns() -> None:
    for _ in range(TURNS):
        await asyncio.sleep(0)


async def test_an_update_cancelled_while_waiting_its_turn_to_store_is_still_stored(tmp_path):
    state = open_state("", state_dir=tmp_path)
    book = RecordBook(FixedClock(NOW), RecordStore(state))
    first, second = promotion(book, "web"), promotion(book, "api")
    try:
        async with OtherProcess(tmp_path) as other:
            storing = asyncio.ensure_future(book.update(first, state="rolling-out", message="waiting for the render"))
            waiting = asyncio.ensure_future(book.update(second, state="done", message="every cluster is Ready"))
            await turns()  # the first waits for the database, the second for its turn
            waiting.cancel()  # a clean stop
            await turns()
            other.let_go()
            await asyncio.wait_for(storing, HOLD)
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiting, HOLD)
        assert waiting.cancelled()
        assert stored(state, first)["record"]["state"] == "rolling-out"
        doc = stored(state, second)
        assert doc is not None, "the cancelled update was never stored"
        assert doc["record"]["state"] == "done" and doc["follow"] is None  # final: nothing left to follow
        assert second.state == "done" and second.version == 1
    finally:
        state.close()


async def test_a_cancelled_update_still_waiting_its_turn_past_the_bound_is_given_up_and_the_one_before_stays(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(records, "CANCELLED_UPDATE_SECONDS", 0.2)
    state = open_state("", state_dir=tmp_path)
    book = RecordBook(FixedClock(NOW), RecordStore(state))
    first, second = promotion(book, "web"), promotion(book, "api")
    try:
        await book.update(second, state="verifying", message="healthy; watching for 60s more")
        async with OtherProcess(tmp_path) as other:
            storing = asyncio.ensure_future(book.update(first, state="rolling-out", message="waiting for the render"))
            waiting = asyncio.ensure_future(book.update(second, state="done", message="healthy for the 60s soak"))
            await turns()
            waiting.cancel()  # a clean stop, while the database is held past the bound
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiting, HOLD)  # the stop does not wait for the database
            other.let_go()
            await asyncio.wait_for(storing, HOLD)
        assert second.state == "verifying"
        doc = stored(state, second)
        assert doc["record"]["state"] == "verifying" and doc["follow"] is not None  # the next start resumes it
    finally:
        state.close()
