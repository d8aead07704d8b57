"""Opening the trust repository on a replica that starts before the writer's first import.

On a fresh hub state only the writer imports the trust directory
(``TrustRepository`` raises ``NotImported`` anywhere else). Replicas usually
start together (the ``ha`` overlay starts them at once): one wins the lease and
imports, the others would find nothing to serve. Such a replica instead logs
one line saying it waits for that import, follows the state's change feed (a
wake-up or ``POLL_INTERVAL``, whichever first), and opens the repository once
the metadata is there. Meanwhile it does not serve agents (no gRPC port, no
ready file), but its ops endpoint answers: alive, not ready, naming the wait
(``waiting``: the hub's ``HubOps.waiting``), so a readiness probe reads "not
ready" and why rather than a refused connection. A ``both`` replica also tries
the lease each round: if the writer died before importing, it becomes the
writer and imports itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from skerry.hub.state.feed import ChangeFeed
from skerry.hub.state.protocol import Fenced, HubState
from skerry.hub.trust.repository import NotImported, TrustRepository

log = structlog.get_logger("skerry.hub.trust.awaiting")

# The longest a waiting replica goes without looking at the state: a lost wake-up delays it by at most this
# (the same second a standby polls the writer lease at).
POLL_INTERVAL = 1.0
WAITING = "waiting for the writer's first import of the trust directory into the hub state"


async def open_when_imported(open_repository: Callable[[], TrustRepository], state: HubState, *,
                             try_lease: Callable[[], bool] | None = None,
                             interval: float = POLL_INTERVAL,
                             waiting: Callable[[str | None], None] = lambda reason: None) -> TrustRepository:
    """``open_repository()`` once the hub state holds trust metadata; ``try_lease`` (a ``both`` replica) is
    called off the loop before each attempt, so a replica that outlived a writer which never imported imports.
    ``waiting`` hears why it waits when it begins to, and None once the repository is open."""
    feed = await asyncio.to_thread(ChangeFeed, state)
    waited = False
    while True:
        if try_lease is not None:
            await asyncio.to_thread(try_lease)
        try:
            repository = await asyncio.to_thread(open_repository)
            waiting(None)
            return repository
        except (NotImported, Fenced) as e:  # Fenced: this process lost the lease while importing
            if not waited:
                log.info(f"{WAITING}; not serving until then", reason=str(e), poll_seconds=interval)
                waiting(WAITING)
                waited = True
        await asyncio.to_thread(feed.wait, interval)


async def open_trust(cfg, files, state: HubState, writer, clock, *,
                     waiting: Callable[[str | None], None] = lambda reason: None) -> TrustRepository:
    """The hub's trust repository: a serving replica's from the state only (no directory, no keys), a writer's
    (``--role writer|both``) from its trust directory, imported on a fresh state if it holds the lease."""
    if cfg.role == "serve":
        return await open_when_imported(
            lambda: TrustRepository(cfg.state_dir / "trust", clock=clock, storage=files, online={}), state,
            waiting=waiting)
    return await open_when_imported(
        lambda: TrustRepository.open(cfg.trust_dir, clock=clock, release_keys=cfg.release_keys, storage=files),
        state, try_lease=lambda: writer.is_writer or writer.try_acquire(), waiting=waiting)
