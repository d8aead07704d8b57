"""Promotion fixtures: a real bare remote shaped like examples/fleet, the hub's real sync loop, store and
status board, the real kustomize, and a ``FixedClock`` so soak times pass without sleeping.

Agents are not run here (tests/e2e/test_promotion_e2e.py runs them): ``Harness.report`` hands the hub
the status report an agent would send, through the same ``StatusBoard.report`` the servicer calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import pathlib
import shutil

import pytest
from devtrust import DevTrust

from skerry.core.clock import FixedClock
from skerry.hub.bundles.store import HubStore
from skerry.hub.promotion.approvals import Approvals
from skerry.hub.promotion.audit import AuditLog
from skerry.hub.promotion.gates import HealthTracker
from skerry.hub.promotion.records import RecordStore
from skerry.hub.promotion.service import Promoter, PromotionSettings, TrackingStatusBoard
from skerry.hub.render.engine import KustomizeEngine
from skerry.hub.source.git import GitSource
from skerry.hub.state import open_state
from skerry.hub.status import ClusterStatus, Condition
from skerry.hub.sync import Syncer
from skerry.testing.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures

from .helpers import git

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "fleet"

FLEET = """\
# The fleet for promotion tests.
apiVersion: skerry.io/v1alpha1
kind: Fleet
environments: [dev, prod]
clusters:
  - name: oslo-dev
    labels: {env: dev}
  - name: bergen-dev
    labels: {env: dev}
  - name: oslo-prod
    labels: {env: prod}
paths:
  - path: overlays/dev
    selector: {matchLabels: {env: dev}}
  - path: overlays/prod
    selector: {matchLabels: {env: prod}}
promotion:
  promoters: [alice, bob, carol]
  apps:
    web:
      overlays: {dev: overlays/dev, prod: overlays/prod}
  environments:
    dev:
      soak: 10m
    prod:
      approvals: 2
      approvers: [alice, bob, carol, dave]   # dave approves but may not promote
      autoRollback: true
      soak: 1m
      freezes:
        - {name: friday-night, days: [fri], start: "18:00", end: "23:59"}
"""


class Harness:
    """A bare remote, someone else's clone of it, and the hub's promotion parts around it."""

    def __init__(self, tmp: pathlib.Path, engine, fleet_yaml: str = FLEET):
        self.tmp = tmp
        self.remote = tmp / "remote.git"
        self.work = tmp / "work"
        shutil.copytree(EXAMPLES, self.work)
        (self.work / "skerry.yaml").write_text(fleet_yaml)
        git(self.work, "init", "-q", "-b", "main")
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", "initial fleet")
        git(tmp, "clone", "-q", "--bare", str(self.work), str(self.remote))
        git(self.work, "remote", "add", "origin", str(self.remote))
        git(self.work, "fetch", "-q", "origin")
        git(self.work, "branch", "-q", "--set-upstream-to=origin/main", "main")
        self.clock = FixedClock(_dt.datetime(2030, 1, 2, 9, 0, tzinfo=_dt.UTC))  # a Wednesday morning
        self.store = HubStore(DevTrust(tmp / "trust").repository(), clock=self.clock)
        self.tracker = HealthTracker()
        self.statuses = TrackingStatusBoard(self.tracker, self.clock)
        self.source = GitSource(str(self.remote), cache_dir=tmp / "hub-state")
        self.syncer = Syncer(self.source, engine, self.store, statuses=self.statuses)
        self.state = open_state("", state_dir=tmp / "hub-state")
        self.audit = AuditLog(self.state, clock=self.clock)
        self.promoter = Promoter(
            source=GitSource(str(self.remote), cache_dir=tmp / "hub-state" / "promotion"),
            fleet=self.syncer,
            store=self.store,
            statuses=self.statuses,
            tracker=self.tracker,
            audit=self.audit,
            settings=PromotionSettings(tick=0.02),
            clock=self.clock,
            approvals=Approvals(self.state, self.audit, self.clock),
            records=RecordStore(self.state),
        )
        self._loop: asyncio.Task | None = None

    # --- someone else's edits ---
    def edit(self, rel: str, old: str, new: str, message: str) -> str:
        git(self.work, "pull", "-q", "--rebase", "origin", "main")
        path = self.work / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))
        git(self.work, "commit", "-qam", message)
        git(self.work, "push", "-q", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")

    def remote_file(self, rel: str, rev: str = "main") -> str:
        return git(self.remote, "show", f"{rev}:{rel}") + "\n"

    def remote_head(self) -> str:
        return git(self.remote, "rev-parse", "main")

    # --- the hub ---
    async def sync(self):
        result = await self.syncer.sync_once()
        assert result.ok, result
        return result

    def start_loop(self) -> None:
        self._loop = asyncio.create_task(self.syncer.run(0.05))

    async def stop(self) -> None:
        await self.promoter.close()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    def report(self, cluster: str, *, ready: bool = True, digest: str | None = None, reason: str = "") -> None:
        """What the cluster's agent would report after applying its current bundle."""
        current = self.store.current(cluster)
        applied = digest if digest is not None else (current.digest if current else "")
        cond = Condition("Ready", "True" if ready else "False", reason or ("Applied" if ready else "ApplyFailed"),
                         "" if ready else "Deployment web: ImagePullBackOff")
        self.clock.advance(0.001)
        self.statuses.report(ClusterStatus(
            cluster=cluster, applied_version=current.release if current else 0, applied_digest=applied,
            revision=current.revision if current else "", conditions=(cond,),
            observed_unix_ms=int(self.clock.now().timestamp() * 1000), received_at=self.clock.now(),
        ))

    def dev_healthy_and_soaked(self) -> None:
        for c in ("oslo-dev", "bergen-dev"):
            self.report(c)
        self.clock.advance(11 * 60)


@pytest.fixture(scope="session")
def engine() -> KustomizeEngine:
    return KustomizeEngine.detect()


@pytest.fixture
def harness(tmp_path, engine) -> Harness:
    return Harness(tmp_path, engine)
