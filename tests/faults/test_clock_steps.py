"""Clocks stepped back and ahead, with a real hub (Git repository, SQLite state, TUF repository, gRPC with
mutual TLS on loopback) restarted on the same state, and the agent's real TUF verifier fetching over gRPC.

Where Skerry reads time it reads an injected clock (``skerry.core.clock``): the hub is restarted with its
clock stepped. python-tuf, inside the agent's verifier, reads the wall clock for metadata expiry and
cannot be given another, so "the agent's clock is ahead" is made the only way it can be here: the hub's
clock behind by as much, which is the same disagreement as the agent sees it (metadata signed to expire
before the agent's now). Skerry's side is what is asserted: the release counter (the hub state's, never
the clock's), the named reason of the freeze (``ClockSkew``, with the expiry and this host's clock in the
message) and the recovery once the hub signs with the right time again.

Reverted to check: ``TufVerifier._frozen`` made to return ``classify``'s error: the freeze says only
"Freeze" / "timestamp.json is expired", naming neither the time nor the clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time

import pytest
from hub.helpers import FLEET_FILES, GitRepo  # tests/hub
from transport.hubs import running_hub  # tests/transport

from skerry.agent.trust import TufVerifier
from skerry.agent.tuf_fetch import GrpcFetcher
from skerry.core.errors import VerificationError
from skerry.hub.render.engine import KustomizeEngine

CLUSTER = "oslo-prod"
HOUR = 3600.0
# The timestamp's lifetime (skerry.hub.trust.publishing.DEFAULT_EXPIRY) is a day: a hub two days behind
# signs timestamps that expired a day ago by the agent's clock.
BEHIND_THE_TIMESTAMP = -2 * 24 * HOUR
TRUST_REFRESH = 0.2  # the hub looks this often whether online metadata needs re-signing
RECOVERY_SECONDS = 20.0


class SteppedClock:
    """The system clock stepped by ``offset`` seconds (negative: back); monotonic time is not stepped."""

    def __init__(self, offset: float = 0.0):
        self.offset = offset

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.fixture
def fleet_repo(tmp_path) -> GitRepo:
    repo = GitRepo(tmp_path / "fleet")
    repo.commit("initial fleet", FLEET_FILES)
    return repo


@pytest.fixture(scope="module")
def engine() -> KustomizeEngine:
    return KustomizeEngine.detect()


def scale(fleet_repo: GitRepo, count: int) -> str:
    return fleet_repo.commit("scale", {"overlays/prod/kustomization.yaml": f"""
        resources: [../../base]
        replicas: [{{name: web, count: {count}}}]
    """})


class Hub:
    """One hub process's life on the shared state directory, restarted with a clock of its own."""

    def __init__(self, fleet_repo, tmp_path, pki, engine):
        self.args = (fleet_repo, tmp_path / "hub", pki, engine)
        self.app = None

    @contextlib.asynccontextmanager
    async def running(self, clock: SteppedClock):
        async with running_hub(*self.args, clock=clock, trust_refresh=TRUST_REFRESH) as app:
            self.app = app
            yield app

    def released(self) -> int:
        return self.app.store.current(CLUSTER).release

    async def commit(self, fleet_repo, count: int) -> int:
        scale(fleet_repo, count)
        result = await self.app.syncer.sync_once()
        assert CLUSTER in result.published, result
        return self.released()


async def test_a_hub_clock_stepped_back_never_lowers_a_release_and_a_clock_skew_freeze_says_why_and_ends(
    fleet_repo, tmp_path, pki, engine
):
    hub = Hub(fleet_repo, tmp_path, pki, engine)
    agent_files = pki.agent(CLUSTER)
    verifier = None

    async def refresh():
        return await asyncio.to_thread(verifier.update)  # blocking gRPC: off the loop serving the hub

    async with hub.running(SteppedClock()):
        verifier = TufVerifier(CLUSTER, "prod", tmp_path / "trust" / "root.json", tmp_path / "agent",
                               lambda: GrpcFetcher(f"127.0.0.1:{hub.app.port}", agent_files))
        first = await refresh()
        assert first is not None and first.release == hub.released()

    # Restarted with its clock an hour back (within every metadata lifetime): a new commit is a higher release.
    async with hub.running(SteppedClock(-HOUR)):
        second = await hub.commit(fleet_repo, 2)
        assert second > first.release
        verified = await refresh()
        assert verified is not None and verified.release == second and verifier.last_release == second

    # Two days back: the hub signs metadata that expired before the agent's now (the agent's clock is ahead).
    async with hub.running(SteppedClock(BEHIND_THE_TIMESTAMP)):
        third = await hub.commit(fleet_repo, 3)
        assert third > second  # the counter comes from the state, whatever the clock says
        with pytest.raises(VerificationError) as frozen:
            await refresh()
        assert frozen.value.reason == "ClockSkew", frozen.value
        message = str(frozen.value)
        assert "timestamp metadata expired at" in message and "this host's clock" in message, message
        assert len(message) < 1024
        assert verifier.last_release == second  # frozen on the last good release; nothing lower, nothing new

    # The clock is right again: the hub re-signs what it signed with the wrong time, and the agent moves on.
    async with hub.running(SteppedClock()):
        deadline = time.monotonic() + RECOVERY_SECONDS
        while True:
            try:
                recovered = await refresh()
                break
            except VerificationError as e:
                assert e.reason == "ClockSkew" and time.monotonic() < deadline, e
                await asyncio.sleep(TRUST_REFRESH)
        assert recovered is not None and recovered.release == third == verifier.last_release
        assert verifier.valid_until > dt.datetime.now(dt.UTC)
