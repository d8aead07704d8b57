"""Following the change log: every change once and in order, whatever happens to the wake-ups.

Replicas serve agents from a cache of the state and must learn of every
change the writer commits. Notifications (PostgreSQL LISTEN/NOTIFY) are only a
hint to look now: they are lost while a listener is disconnected and never
replayed. The log itself is the truth: each change has a sequence number that
increases in commit order (``skerry.hub.state.sql``), so ``poll`` returns
exactly the entries after the last one seen. ``wait`` blocks for a wake-up
or ``interval`` seconds, whichever comes first, then polls; a lost wake-up
delays a change by at most one interval and loses nothing.

If the follower fell so far behind that the log was pruned past it, ``poll``
raises ``FellBehind`` and the caller reloads whole tables instead.
"""

from __future__ import annotations

from skerry.hub.state.protocol import Change, HubState

# How long a follower waits for a wake-up before it reads the log anyway: the longest a change waits when
# its wake-up was lost (a NOTIFY to a disconnected listener is never replayed). ``skerry.hub.replica``'s poll.
FOLLOW_SECONDS = 1.0

# One read returns at most this many entries (the most ``changes_since`` gives); ``poll`` pages until it is
# caught up. A fleet-wide release logs an entry per cluster: 100,000 are ten reads, not a hundred.
PAGE = 10_000


class FellBehind(Exception):
    """Entries after the follower's position were pruned; reload everything, then ``skip_to`` the end."""


class ChangeFeed:
    def __init__(self, state: HubState, *, after: int | None = None):
        self._state = state
        if after is None:
            with state.read() as tx:
                after = tx.last_change()
        self.seq = after

    def skip_to_end(self) -> int:
        with self._state.read() as tx:
            self.seq = tx.last_change()
        return self.seq

    def poll(self) -> list[Change]:
        out: list[Change] = []
        while True:
            with self._state.read() as tx:
                page = tx.changes_since(self.seq, PAGE)
                if page and page[0].seq != self.seq + 1 and tx.oldest_change() > self.seq + 1:
                    raise FellBehind(f"change log starts at {tx.oldest_change()}, follower is at {self.seq}")
            if not page:
                return out
            out.extend(page)
            self.seq = page[-1].seq

    def wait(self, interval: float) -> list[Change]:
        self._state.wait_for_changes(interval)
        return self.poll()
