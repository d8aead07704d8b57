"""Where the hub's blocking state calls run: a few threads of their own, never asyncio's default pool.

A state call blocks its thread until the database answers: with PostgreSQL stopped or behind a network
blackhole, until the pool's timeout (``skerry.hub.state.postgres.POOL_TIMEOUT``). asyncio's default
executor is what the rest of the hub's off-loop work shares (Git fetches, renders, TUF refreshes, the
follower, revocation reloads), and it has min(32, cores + 4) threads: a handful of calls waiting out a
stalled database would hold them all, and everything else would queue behind calls that cannot succeed.

So the hub's state calls run on ``StateThreads``, two of them (``skerry.hub.app`` makes both and shuts
them down when it stops, before it closes the state: calls still queued are cancelled, one still
running ends with the database's answer):

- the writes a hub process makes for its callers and its duties (release signatures CI submits, audit
  entries, approvals, promotion records, what a sync records for the replicas, the release history, the
  trust garbage at a takeover, the lease check before a publication): ``WRITE_THREADS`` threads,
  ``MAX_WAITING`` queued;
- the calls that serve agents and touch the database (enrollment's token redeemed, a nonce issued, a
  signed report kept, the attestation read back, a trust file neither in memory nor on the disk):
  ``AGENT_THREADS`` threads, ``AGENT_MAX_WAITING`` queued, so a fleet of agents retrying through an
  outage cannot hold the writes' threads either.

A call beyond its threads and queue is refused at once (``StateUnavailable``: one clear status its
caller may retry) instead of being held for the length of an outage. Components are handed
``StateThreads.run`` as their ``off_loop`` (``OffLoop``; without one, a component used on its own runs
its calls with ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from skerry.hub.state.protocol import StateUnavailable

T = TypeVar("T")
OffLoop = Callable[..., Awaitable[Any]]  # ``off_loop(fn, *args, **kwargs)``: fn's result, run off the event loop

# Threads that wait on the database for writes. Two: a writer's writes are short transactions, so one in
# flight and one more ready behind it keep up with its steady load, and PostgreSQL's pool
# (``postgres.POOL_MAX``) keeps its other connections for reads; more would only be more threads
# waiting out a stalled database.
WRITE_THREADS = 2
# Writes that may queue behind those threads: each is a caller's call or a loop's tick waiting. A stalled
# database fills this in seconds under load; past it, callers hear at once that the state is unavailable.
MAX_WAITING = 256
# Threads that wait on the database for agents' calls. Three: each is one short transaction (a token spent,
# a nonce, a report, a read of a few ms), and three clear hundreds a second while the database answers; with the
# writes' two they leave three of PostgreSQL's ``POOL_MAX`` connections to the follower and the loops' reads.
AGENT_THREADS = 3
# Agents' calls that may queue behind those: a few seconds of their work while the database answers, so a
# fleet's burst waits rather than retries; past it (a stalled database fills it in seconds) an agent hears
# at once that the state is unavailable and retries with its back-off, holding nothing here.
AGENT_MAX_WAITING = 1024


class StateThreads:
    def __init__(self, threads: int = WRITE_THREADS, *, max_waiting: int = MAX_WAITING, name: str = "state-write"):
        """``name``: what the calls are (their threads' names, ``skerry-<name>``, and the refusals say it)."""
        self._name = name
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=f"skerry-{name}")
        self._limit = threads + max_waiting
        self._lock = threading.Lock()
        self._open = 0  # submitted and not finished (running or queued)
        self._closed = False

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on these threads (with the caller's context variables, as
        ``asyncio.to_thread``); ``StateUnavailable`` at once if too many wait already, or once shut down."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        with self._lock:
            if self._closed:
                raise StateUnavailable(f"the hub is stopping: it makes no more {self._name} calls")
            if self._open >= self._limit:
                raise StateUnavailable(f"{self._open} {self._name} calls already wait for the database; try again")
            future = self._pool.submit(call)
            self._open += 1
        future.add_done_callback(self._finished)
        return await asyncio.wrap_future(future)

    def _finished(self, _future: concurrent.futures.Future) -> None:
        with self._lock:
            self._open -= 1

    @property
    def waiting(self) -> int:
        """Calls submitted and not finished (running or queued)."""
        with self._lock:
            return self._open

    def shutdown(self) -> None:
        """Accept no more calls and cancel the queued ones; a running one ends with the database's answer
        (the caller closes the state next, which ends it at once)."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
