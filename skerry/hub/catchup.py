"""Never serve an agent something older than it holds: a hub whose copy is behind waits for it, then sends it on.

Every hub process serves agents its copy of what the writer published, which its follower
(``skerry.hub.replica``) keeps current: a change arrives with the writer's NOTIFY, or within
``FOLLOW_SECONDS`` (1 s) if that wake-up was lost. An agent that verified release 8 on one replica and
reconnects to another still holding 7 would be sent 7, then fetch TUF metadata older than what it
trusts: it refuses both (rollback protection) and retries. Nothing wrong is applied, but every such
refusal is noise an operator cannot tell from an attack, and the older bundle's bytes are wasted.

So before this process serves an agent, it compares its copy with what the agent says it holds:

* a watch (``release``): the agent's ``last_version`` with this copy's current release of the cluster;
* a trust fetch (``metadata``): the timestamp version the agent trusts with the one this copy serves
  (the timestamp pins the snapshot, which pins every targets role: a copy whose timestamp is not older
  has nothing older for the agent).

If the copy is behind (``behind``), the call waits for the follower to bring it there (``CatchUp``:
woken each time the follower took in what the change log said, never longer than ``CATCH_UP_SECONDS``),
then is served as usual. A copy that does not get there in time is refused ``Unavailable`` with reason
``ReplicaBehind`` (``skerry.core.pushback.BEHIND_REASON``), and the agent keeps what it applied: a refused
watch goes to another replica within the agent's own backoff (``skerry.agent.stream``), a refused fetch
is "cannot refresh trust metadata" until its next refresh (the watch's next release, or its poll).

A hub whose state is genuinely older than its agents' releases (a single hub restored from an older
backup, a replica whose follower is stuck) never catches up. We chose the same bounded wait and the same
refusal over serving the older state: the agent would refuse that release anyway (``ReleaseRollback``)
at every retry. Each such refusal logs one warning naming the cluster (or, for a fetch, the caller) and
both versions, so the operator sees which agents are ahead of the state; the agents retry with their
backoff and keep running what they hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from skerry.core.authz import caller
from skerry.core.errors import Unavailable
from skerry.core.pushback import BEHIND_REASON
from skerry.hub.bundles.releases import SignedBundle
from skerry.hub.state.feed import FOLLOW_SECONDS

log = structlog.get_logger("skerry.hub.catchup")

# Longest a watch or a fetch waits for this copy to reach what its agent holds. The ordinary lag is one
# follower look (at most FOLLOW_SECONDS after a lost wake-up); three looks leave room for a look slowed by
# a large change (a fleet-wide release reads a record per cluster) or a busy event loop. Longer, and an
# agent would wait on a replica that is stuck while another serves it at once.
CATCH_UP_SECONDS = 3 * FOLLOW_SECONDS


def behind(held: int, served: int) -> bool:
    """Whether a copy serving version ``served`` (0: none) is older than the ``held`` its client reports
    (0: the client holds nothing, so nothing is older)."""
    return served < held


class Releases(Protocol):
    """What ``release`` reads of a store (``skerry.hub.bundles.store.HubStore``)."""

    def current(self, cluster: str) -> SignedBundle | None: ...


class Repository(Protocol):
    """What ``metadata`` reads of a trust repository (``skerry.hub.trust.repository.TrustRepository``): the newest
    version of each role this process serves."""

    md: Mapping[str, Any]  # role -> tuf Metadata


def timestamp_version(repo: Repository) -> int:
    """The version of the timestamp this copy serves (0: none yet)."""
    md = repo.md.get("timestamp")
    return md.signed.version if md is not None else 0


def released(store: Releases, cluster: str) -> int:
    """The release counter this copy serves for ``cluster`` (0: none yet; ``NotFound`` if it was removed)."""
    current = store.current(cluster)
    return current.release if current is not None else 0


class CatchUp:
    """Waits, bounded, for this process's copy to reach what an agent holds; woken by the follower."""

    def __init__(self, *, seconds: float = CATCH_UP_SECONDS):
        self.seconds = seconds
        self._advanced: asyncio.Event | None = None  # made by the first waiter, set and dropped by ``advanced``

    def advanced(self) -> None:
        """The follower took in what the change log said (on the event loop): each waiter looks again."""
        event, self._advanced = self._advanced, None
        if event is not None:
            event.set()

    async def _reached(self, reached: Callable[[], bool]) -> bool:
        """Whether ``reached()`` holds now, or after one of the follower's looks within ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        while not reached():
            if loop.time() >= deadline:
                return False
            if self._advanced is None:
                self._advanced = asyncio.Event()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._advanced.wait()
            except TimeoutError:
                return reached()
        return True

    async def release(self, store: Releases, cluster: str, held: int) -> None:
        """Return once this copy's release of ``cluster`` is not below ``held``, the agent's ``last_version``;
        else, after ``seconds``, ``Unavailable`` (``ReplicaBehind``) and one warning with both releases."""
        if await self._reached(lambda: not behind(held, released(store, cluster))):
            return
        have = released(store, cluster)
        log.warning("this hub's release of the cluster is below the one its agent holds; the agent is sent on",
                    cluster=cluster, agent_release=held, hub_release=have, waited=self.seconds)
        raise Unavailable(f"this hub holds release {have} of {cluster}, below the agent's {held}, and did not "
                          f"catch up in {self.seconds:g}s; another replica serves it", reason=BEHIND_REASON)

    async def metadata(self, repo: Repository, held: int, path: str) -> None:
        """Return once this copy's timestamp version is not below ``held``, the one the caller trusts; else,
        after ``seconds``, ``Unavailable`` (``ReplicaBehind``) and one warning with both versions."""
        if await self._reached(lambda: not behind(held, timestamp_version(repo))):
            return
        have = timestamp_version(repo)
        log.warning("this hub's trust metadata is older than what the caller trusts; the caller is sent on",
                    caller=str(caller()), path=path, caller_timestamp=held, hub_timestamp=have, waited=self.seconds)
        raise Unavailable(f"this hub serves timestamp version {have}, below the {held} the caller trusts, and did "
                          f"not catch up in {self.seconds:g}s; another replica serves it", reason=BEHIND_REASON)
