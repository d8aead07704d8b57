"""The hub's writer: the one process that may publish, holding a fenced lease in the hub state.

Every hub process may serve; one at a time writes (releases, promotion acts,
approvals). ``Writer`` holds the lease (``skerry.hub.state``: a row with an
epoch, renewed on the database's clock) and opens every writer transaction
through ``write()``, which the state fences: a process whose lease was taken
over or ran out may go on computing, but none of its transactions commits.
On ``Fenced`` the writer steps down (drops its lease) and ``Duties`` waits to
take it again; until then every write raises ``Fenced``.

``holder`` names the process (``--hub-id``; by default host name, process id
and a random suffix, ``skerry.hub.config.default_hub_id``, so no two processes
share one, as Kubernetes leader election names its candidates). The same holder
re-acquires at once with a new epoch; its old incarnation, if still alive, is
fenced out by the epoch. So a name is one process's: two processes given the
same ``--hub-id`` would each take the other's live lease. A process that stops
cleanly (SIGTERM, SIGINT) gives its lease up (``release``: expired at once, in
a transaction that touches only its own epoch), so its successor takes over at
once; after a crash the next holder waits at most the lease's lifetime, unless
it is the same holder restarted (an explicit ``--hub-id`` kept across restarts).

``Duties`` runs the writer's work (Git sync, render, sign, online TUF roles,
promotion acts) only while this process holds the lease, and stops it when
the lease is lost (``--role``: a ``serve`` process never takes the lease).

``Releases`` is the only allocator of release counters: a persisted, strictly
increasing counter per cluster (``Tx.next_release``), so a release never goes
down across restarts, writers or clock steps; a release's counter, records and
TUF files commit in one fenced transaction (``Releases.open``).
``InMemoryReleases`` is for tests and benchmarks that run a store without a
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Protocol

import structlog

from skerry.hub.state import Fenced, HubState, Lease, StateUnavailable, Tx
from skerry.hub.state.threads import OffLoop

log = structlog.get_logger("skerry.hub.writer")

# Lease lifetime: how long a dead writer blocks publishing before another process may take over.
DEFAULT_LEASE_TTL = 15.0
# Renew at this fraction of the lifetime: two renewals may fail before the lease is lost.
RENEW_FRACTION = 1 / 3


class Writer:
    def __init__(self, state: HubState, holder: str, *, ttl: float = DEFAULT_LEASE_TTL,
                 off_loop: OffLoop = asyncio.to_thread):
        """``off_loop``: where ``confirm``'s transaction runs (the hub's state-write threads)."""
        if not holder:
            raise ValueError("a writer needs a holder name")
        self.state = state
        self._off_loop = off_loop
        self.holder = holder
        self.ttl = ttl
        self.lease: Lease | None = None

    @property
    def is_writer(self) -> bool:
        return self.lease is not None

    def try_acquire(self) -> bool:
        lease = self.state.acquire_lease(self.holder, self.ttl)
        if lease is not None:
            self.lease = lease
            log.info("writer lease acquired", holder=self.holder, epoch=lease.epoch)
        return lease is not None

    def renew(self) -> None:
        if self.lease is None:
            raise Fenced(f"{self.holder} holds no writer lease")
        try:
            self.lease = self.state.renew_lease(self.lease, self.ttl)
        except Fenced:
            self._step_down()
            raise

    def _step_down(self) -> None:
        if self.lease is not None:
            log.error("writer lease lost; stepping down", holder=self.holder, epoch=self.lease.epoch)
        self.lease = None

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        """A fenced transaction; ``Fenced`` (and stepping down) if this process is not the writer."""
        if self.lease is None:
            raise Fenced(f"{self.holder} is not the writer; nothing committed")
        try:
            with self.state.write(self.lease) as tx:
                yield tx
        except Fenced:
            self._step_down()
            raise

    async def confirm(self) -> None:
        """Raise (``StateUnavailable``, ``Fenced``) unless the database answers and this process holds the lease.

        Asked off the event loop before the loop publishes: a release's fenced transaction runs on the loop
        (its store and watchers live there), and with the database away it would hold every agent's stream
        and fetch for the pool's timeout. A database lost between this and the release still costs that wait.
        """
        await self._off_loop(self._confirm)

    def _confirm(self) -> None:
        with self.write():
            pass

    def release(self) -> None:
        """Give the lease up (a clean stop): the next holder need not wait for it to expire. Fenced: a lease
        already taken over is left as it is; a database that is away leaves it to expire."""
        if self.lease is not None:
            try:
                self.state.release_lease(self.lease)
                log.info("writer lease released", holder=self.holder, epoch=self.lease.epoch)
            except StateUnavailable as e:
                log.warning("writer lease not released; it expires on its own", reason=e.reason, error=str(e))
            self.lease = None

    async def acquire(self, *, poll: float = 1.0) -> Lease:
        """Wait until this process holds the lease (another holder's lease must expire first)."""
        waiting = False
        while not await asyncio.to_thread(self.try_acquire):
            if not waiting:
                log.info("waiting for the writer lease", holder=self.holder)
                waiting = True
            await asyncio.sleep(poll)
        assert self.lease is not None
        return self.lease

    async def hold(self) -> None:
        """Renew the lease until it is lost; then return (stepped down).

        Renewals run on a thread of their own, not on the event loop: a writer whose loop is busy for
        longer than the lease (publishing a release to thousands of clusters is CPU work on the loop)
        still renews on time, while a process that really stops (SIGSTOP, a VM pause) stops renewing
        and loses it. Database errors are retried: once the lease expired on the database's clock, the
        next renewal is refused."""
        loop = asyncio.get_running_loop()
        lost = loop.create_future()
        stop = threading.Event()

        def renewing() -> None:
            while self.lease is not None and not stop.wait(self.ttl * RENEW_FRACTION):
                try:
                    self.renew()
                except Fenced:
                    break
                except StateUnavailable as e:
                    log.error("cannot renew the writer lease", reason=e.reason, error=str(e))
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(lambda: lost.done() or lost.set_result(None))

        threading.Thread(target=renewing, name=f"skerry-lease-{self.holder}", daemon=True).start()
        try:
            await lost
        finally:
            stop.set()


class Duties:
    """The writer's work (Git sync, render, sign, online TUF roles, promotion acts): run only under the lease.

    ``run`` waits for the lease, calls ``start()`` (which returns the tasks it started), renews the
    lease until it is lost (taken over, expired, or refused after a pause), then cancels those tasks
    and calls ``stop()``, and waits for the lease again. A process that lost the lease may still be
    computing when it notices; whatever it then tries to commit fails ``Fenced``.
    """

    def __init__(self, writer: Writer, start: Callable[[], Awaitable[list[asyncio.Task]]],
                 stop: Callable[[], Awaitable[None]], *, poll: float = 1.0):
        self.writer = writer
        self._start = start
        self._stop = stop
        self._poll = poll
        self.terms = 0  # how many times this process became the writer

    async def run(self) -> None:
        while True:
            if self.writer.lease is None:
                await self.writer.acquire(poll=self._poll)
            self.terms += 1
            tasks: list[asyncio.Task] = []
            # renewed from the moment it is taken: starting (a reload and a full sync of the fleet) may
            # take longer than the lease itself
            holding = asyncio.create_task(self.writer.hold(), name="skerry-hub-lease")
            try:
                tasks = await self._start()
                await holding
            except Fenced:
                pass  # lost while starting
            except StateUnavailable as e:  # the database went away while starting: start again (a new term)
                log.error("cannot start the writer's duties; retrying", reason=e.reason, error=str(e))
                await asyncio.sleep(self._poll)
            finally:
                holding.cancel()
                tasks.append(holding)
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                await self._stop()
            log.warning("writer duties stopped; waiting for the lease", holder=self.writer.holder)


class Releases:
    """Release counters and current bundles in the hub state (see the module docstring).

    ``open()`` is one fenced writer transaction: the store allocates counters and records the
    released bundles in it, and ``journal`` (the trust repository's storage, if it keeps its files
    in the state) writes the TUF files the release signed into the same transaction, so a release
    is all there or not at all, and a writer paused past its lease commits none of it.
    """

    def __init__(self, writer: Writer, journal: Journal | None = None):
        self._writer = writer
        self._journal = journal

    @contextlib.contextmanager
    def open(self) -> Iterator[Tx]:
        try:
            with self._writer.write() as tx:
                if self._journal is None:
                    yield tx
                else:
                    with self._journal.within(tx):
                        yield tx
        except BaseException:
            if self._journal is not None:
                self._journal.abandoned()
            raise
        if self._journal is not None:
            self._journal.committed()

    def next(self, cluster: str) -> int:
        with self.open() as tx:
            return tx.next_release(cluster)


class Journal(Protocol):
    """What joins a release's transaction besides counters (``skerry.hub.state.trust_files``)."""

    def within(self, tx: Tx) -> contextlib.AbstractContextManager[None]:
        """Write everything buffered (and everything written while open) into ``tx``."""

    def committed(self) -> None:
        """``tx`` committed (export what it wrote)."""

    def abandoned(self) -> None:
        """``tx`` rolled back or was fenced: forget what it would have written."""


class _MemoryTx:
    def __init__(self, owner: InMemoryReleases):
        self._owner = owner

    def next_release(self, cluster: str) -> int:
        last = self._owner._last
        last[cluster] = last.get(cluster, self._owner._start) + 1
        return last[cluster]

    def next_releases(self, clusters: Iterable[str]) -> dict[str, int]:
        return {c: self.next_release(c) for c in dict.fromkeys(clusters)}

    def release_floor(self) -> int:
        return self._owner._start

    def put_record(self, kind: str, key: str, doc: Mapping | None) -> None:
        pass  # nothing outlives the process

    def put_records(self, kind: str, docs: Mapping[str, Mapping | None]) -> None:
        pass

    def alive(self) -> None:
        pass


class InMemoryReleases:
    """A process-local counter per cluster, forgotten on exit: for tests and benchmarks only."""

    def __init__(self, start: int = 0):
        self._last: dict[str, int] = {}
        self._start = start

    @contextlib.contextmanager
    def open(self) -> Iterator[_MemoryTx]:
        yield _MemoryTx(self)

    def next(self, cluster: str) -> int:
        return _MemoryTx(self).next_release(cluster)
