"""The hub's writer: the one process that may publish, holding a fenced lease in the hub state.

Every hub process may serve; one at a time writes (releases, promotion acts,
approvals). ``Writer`` holds the lease (``skerry.hub.state``: a row with an
epoch, renewed on the database's clock) and opens every writer transaction
through ``write()``, which the state fences: a process whose lease was taken
over or ran out may go on computing, but none of its transactions commits.
On ``Fenced`` the writer steps down (drops its lease) and ``keep`` tries to
take it again; until then every write raises ``Fenced``.

``holder`` names the process (``--hub-id``, default the host name). The same
holder re-acquires at once with a new epoch, so a restarted hub does not wait
for its own old lease to run out; its old incarnation, if still alive, is
fenced out by the epoch.

``Releases`` is the only allocator of release counters: a persisted, strictly
increasing counter per cluster (``Tx.next_release``), so a release never goes
down across restarts, writers or clock steps. ``InMemoryReleases`` is for
tests and benchmarks that run a store without a database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator

import structlog

from skerry.hub.state import Fenced, HubState, Lease, StateUnavailable, Tx

log = structlog.get_logger("skerry.hub.writer")

# Lease lifetime: how long a dead writer blocks publishing before another process may take over.
DEFAULT_LEASE_TTL = 15.0
# Renew at this fraction of the lifetime: two renewals may fail before the lease is lost.
RENEW_FRACTION = 1 / 3


class Writer:
    def __init__(self, state: HubState, holder: str, *, ttl: float = DEFAULT_LEASE_TTL):
        if not holder:
            raise ValueError("a writer needs a holder name")
        self.state = state
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

    def release(self) -> None:
        if self.lease is not None:
            with contextlib.suppress(StateUnavailable):
                self.state.release_lease(self.lease)
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

    async def keep(self) -> None:
        """Renew the lease for ever; after losing it (or the database), take it again when possible."""
        while True:
            await asyncio.sleep(self.ttl * RENEW_FRACTION)
            try:
                if self.lease is not None:
                    await asyncio.to_thread(self.renew)
                else:
                    await asyncio.to_thread(self.try_acquire)
            except Fenced:
                pass  # logged by _step_down; try to take it again next round
            except StateUnavailable as e:
                log.error("cannot renew the writer lease", reason=e.reason, error=str(e))


class Releases:
    """Release counters in the hub state (see the module docstring)."""

    def __init__(self, writer: Writer):
        self._writer = writer

    def next(self, cluster: str) -> int:
        with self._writer.write() as tx:
            return tx.next_release(cluster)

    def next_many(self, clusters: Iterable[str]) -> dict[str, int]:
        """One counter each, in one transaction (a fleet-wide release is one commit, not thousands)."""
        with self._writer.write() as tx:
            return {c: tx.next_release(c) for c in clusters}


class InMemoryReleases:
    """A process-local counter per cluster, forgotten on exit: for tests and benchmarks only."""

    def __init__(self, start: int = 0):
        self._last: dict[str, int] = {}
        self._start = start

    def next(self, cluster: str) -> int:
        self._last[cluster] = self._last.get(cluster, self._start) + 1
        return self._last[cluster]

    def next_many(self, clusters: Iterable[str]) -> dict[str, int]:
        return {c: self.next(c) for c in clusters}
