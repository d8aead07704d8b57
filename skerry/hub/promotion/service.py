"""The promotion engine: freight, gates, the commit and its push, progress, rollback.

Everything the gRPC servicer calls lives here; the servicer only translates protos. Collaborators
are passed in (``skerry.hub.app`` composes them):

* ``source``: a ``GitSource`` with its *own* mirror (the sync loop's mirror is never written to);
  commits are made in it without a working tree and pushed without force
  (``skerry.hub.source.git.commit_files`` / ``push_commit``);
* ``fleet``: the sync loop (``fleet``, ``last_result``, ``request_sync``): the fleet and policy in
  force, and a nudge to render the promotion commit at once;
* ``store``: the bundles the hub serves (what each cluster should run);
* ``statuses`` + ``tracker``: what each agent reported, and since when it has been healthy.

An app's environment is its overlay (``promotion.apps`` in ``skerry.yaml``); the clusters of an
environment are the fleet's clusters labelled ``env: <name>``. Promotions of one app are
serialised by a lock per app; a push that loses a race with another writer is redone on the new
tip (re-read, re-edit, re-commit), at most ``MAX_PUSH_ATTEMPTS`` times, never forced.

Who may call which RPC (operators; ``promotion.promoters`` for Promote and Rollback) is the hub's
authorisation table (``skerry.hub.authz``, reading ``policy()``); callers reach this module already
authorised. Its own business gate: ``approve`` counts only from the approvers listed for the target
environment (an approver who is not a promoter may approve; the commit is then a promoter's call).

Rollback passes no gates (no soak, approvals or freeze): it restores freight the environment ran
before, and in an incident nothing should stand in its way. It is audited like everything else.
Approvals persist in the hub state (``approvals.Approvals``, 24 h); so do promotion records and what
following each rollout needs (``records.RecordStore``): a restarted hub ``resume``s following them,
soak and auto-rollback deadline included.

Every call is audit-logged (``AuditLog``, in the hub state); calls the table refuses are audited by
the hub's interceptor (``skerry.hub.authz.audit_promotion_refusals``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import pathlib
import random
import uuid
from collections.abc import AsyncIterator, Sequence

import structlog

from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import (
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SkerryError,
    SourceError,
    Unavailable,
)
from skerry.core.tls import Identity
from skerry.hub.fleet import FLEET_FILE, Fleet
from skerry.hub.promotion import freight as fr
from skerry.hub.promotion.approvals import Approvals
from skerry.hub.promotion.audit import AuditLog
from skerry.hub.promotion.gates import ClusterHealth, Gate, HealthTracker, cluster_problem, evaluate
from skerry.hub.promotion.policy import PromotionPolicy
from skerry.hub.promotion.records import Follow, RecordStore
from skerry.hub.reports import ReportJournal, StoredReport
from skerry.hub.source import git as gitsrc
from skerry.hub.status import ClusterStatus, StatusBoard

log = structlog.get_logger("skerry.hub.promotion")

ENV_LABEL = "env"  # the cluster label naming its environment
MAX_PUSH_ATTEMPTS = 8  # a busy repository may move between fetch and push; beyond this, give up
MAX_RECORDS = 1000  # promotions kept in memory for WatchPromotion; oldest finished ones go first
DEFAULT_PROGRESS_TIMEOUT = 3600.0  # follow a rollout at most this long, then report the pending clusters
DEFAULT_TICK = 0.25  # how often progress re-reads the store and the status board (seconds)
FINAL = frozenset({"approved", "blocked", "done", "failed", "rolled-back", "timed-out", "pushed-for-review", "ready"})


class TrackingStatusBoard(StatusBoard):
    """A ``StatusBoard`` that also tells the ``HealthTracker`` about every report it accepts.

    The tracker measures soak time from these (mTLS-authenticated) reports; in TUF mode the gates
    additionally require the applied digest and Ready to come from a signed, nonce-bound report
    (``Promoter._attested_health``), so a replayed or forged report cannot open a gate.
    """

    def __init__(self, tracker: HealthTracker, clock: Clock, journal: ReportJournal | None = None):
        super().__init__()
        self.tracker = tracker
        self._clock = clock
        self._journal = journal  # the hub state keeps reports and soak clocks across restarts

    def report(self, status: ClusterStatus) -> bool:
        accepted = super().report(status)
        if accepted:
            ready, _ = _ready(status)
            self.tracker.observe(status.cluster, status.applied_digest, ready, status.received_at or self._clock.now())
            if self._journal is not None:
                self._journal.note(status, self.tracker.since(status.cluster))
        return accepted

    def restore(self, stored: Sequence[StoredReport]) -> None:
        """Start from what a previous process stored: each cluster's report and its soak clock."""
        for r in stored:
            super().report(r.status)
            self.tracker.restore(r.status.cluster, r.healthy_digest, r.healthy_since)


def _ready(status: ClusterStatus) -> tuple[bool, str]:
    for c in status.conditions:
        if c.type == "Ready":
            return c.status == "True", (f"{c.reason}: {c.message}" if c.message else c.reason)
    return False, "no Ready condition reported"


@dataclasses.dataclass(frozen=True)
class PromotionSettings:
    push_url: str | None = None  # default: the repository the hub follows
    push_branch: str | None = None  # default: the followed branch; else every promotion goes here for review
    ssh_key: pathlib.Path | None = None  # deploy key for ssh remotes
    author_name: str = "Skerry Hub"
    author_email: str = "hub@skerry.invalid"
    progress_timeout: float = DEFAULT_PROGRESS_TIMEOUT
    tick: float = DEFAULT_TICK


@dataclasses.dataclass(frozen=True)
class Freight:
    app: str
    env: str
    overlay: str
    images: tuple[fr.Image, ...]
    revision: str
    clusters: tuple[ClusterHealth, ...]

    @property
    def healthy(self) -> bool:
        return bool(self.clusters) and all(c.healthy for c in self.clusters)


@dataclasses.dataclass
class ClusterProgress:
    cluster: str
    state: str = "pending"
    target_digest: str = ""
    applied_digest: str = ""
    message: str = ""


@dataclasses.dataclass
class Record:
    id: str
    app: str
    from_env: str
    to_env: str
    kind: str
    state: str
    requested_by: str
    commit: str = ""
    branch: str = ""
    gates: list[Gate] = dataclasses.field(default_factory=list)
    changes: list[fr.ImageChange] = dataclasses.field(default_factory=list)
    clusters: list[ClusterProgress] = dataclasses.field(default_factory=list)
    approved_by: list[str] = dataclasses.field(default_factory=list)
    message: str = ""
    rollback_commit: str = ""
    updated: _dt.datetime | None = None
    version: int = 0

    @property
    def final(self) -> bool:
        return self.state in FINAL


class Promoter:
    def __init__(
        self,
        *,
        source: gitsrc.GitSource,
        fleet,
        store,
        statuses: StatusBoard,
        tracker: HealthTracker,
        audit: AuditLog,
        settings: PromotionSettings | None = None,
        clock: Clock | None = None,
        approvals: Approvals,
        attestations=None,
        records: RecordStore | None = None,
    ):
        self.source = source
        # An ``AttestationBoard`` (TUF mode): gates then read only signed, nonce-bound agent reports.
        self.attestations = attestations
        self.fleet_view = fleet
        self.store = store
        self.statuses = statuses
        self.tracker = tracker
        self.audit = audit
        self.settings = settings or PromotionSettings()
        self.clock = clock or SystemClock()
        self.records: dict[str, Record] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._git_lock = asyncio.Lock()  # one writer of the promotion mirror at a time
        self._changed = asyncio.Condition()
        self.approvals = approvals
        self._record_store = records
        self._follows: dict[str, Follow] = {}
        self._tasks: set[asyncio.Task] = set()
        self.push_attempts = 0  # pushes tried (tests and metrics)

    # --- fleet and policy ------------------------------------------------------------------

    def _fleet(self) -> Fleet:
        fleet = self.fleet_view.fleet
        if fleet is None:
            raise Unavailable(f"the hub has not loaded {FLEET_FILE} yet")
        return fleet

    def _policy(self, fleet: Fleet) -> PromotionPolicy:
        return fleet.promotion if fleet.promotion is not None else PromotionPolicy()

    def policy(self) -> PromotionPolicy:
        """The promotion policy in force (``Unavailable`` before the fleet loaded): what authorisation reads."""
        return self._policy(self._fleet())

    def _overlay(self, fleet: Fleet, app: str, env: str) -> str:
        policy = self._policy(fleet)
        if not app:
            raise InvalidInput("app is required")
        if app not in policy.apps:
            raise NotFound(f"app {app!r} is not in {FLEET_FILE} promotion.apps ({', '.join(policy.apps) or 'none'})")
        if env not in fleet.environments:
            raise NotFound(f"environment {env!r} is not in {FLEET_FILE} environments {list(fleet.environments)}")
        overlays = policy.apps[app].overlays
        if env not in overlays:
            raise NotFound(f"app {app!r} has no overlay for environment {env!r} ({FLEET_FILE} promotion.apps.{app})")
        return overlays[env]

    @staticmethod
    def clusters_of(fleet: Fleet, env: str) -> list[str]:
        return [c.name for c in fleet.clusters if c.labels.get(ENV_LABEL) == env]

    # --- health and freight ---------------------------------------------------------------------

    def health(self, cluster: str) -> ClusterHealth:
        current = self.store.current(cluster) if cluster in self.store else None
        status = self.statuses.get(cluster)
        desired = current.digest if current is not None else ""
        revision = current.revision if current is not None else ""
        if self.attestations is not None:
            return self._attested_health(cluster, desired, revision)
        if status is None:
            return ClusterHealth(cluster=cluster, desired_digest=desired, desired_revision=revision)
        ready, reason = _ready(status)
        return ClusterHealth(
            cluster=cluster,
            desired_digest=desired,
            desired_revision=revision,
            applied_digest=status.applied_digest,
            ready=ready,
            reason=reason,
            healthy_since=self.tracker.healthy_since(cluster, status.applied_digest) if ready else None,
            reported=True,
        )

    def _attested_health(self, cluster: str, desired: str, revision: str) -> ClusterHealth:
        """Health from the newest signed report only: what the agent attested, not what was claimed."""
        attested = self.attestations.latest(cluster)
        if attested is None:
            return ClusterHealth(cluster=cluster, desired_digest=desired, desired_revision=revision,
                                 signature_required=True)
        doc = attested.report
        ready = doc.get("ready") is True
        reason = ""
        if not ready:
            failing = [h for h in doc.get("health") or () if isinstance(h, dict) and h.get("status") != "True"]
            reason = ", ".join(f"{h.get('type')}: {h.get('reason')}" for h in failing[:3]) or "not ready"
        applied = str(doc.get("applied_digest") or "")
        return ClusterHealth(
            cluster=cluster,
            desired_digest=desired,
            desired_revision=revision,
            applied_digest=applied,
            ready=ready,
            reason=reason,
            healthy_since=self.tracker.healthy_since(cluster, applied) if ready else None,
            reported=True,
            signed=True,
            signature_required=True,
        )

    def _read_images(self, revision: str, overlay: str) -> tuple[tuple[fr.Image, ...], str, bytes]:
        """(images, kustomization path, its bytes) of ``overlay`` at ``revision``. Blocking."""
        for name in fr.KUSTOMIZATION_NAMES:
            path = f"{overlay}/{name}"
            data = self.source.read_file(revision, path)
            if data is not None:
                return fr.read_images(data, f"{path} at {revision[:12]}"), path, data
        raise NotFound(f"{overlay} has no kustomization at {revision[:12]}")

    def _head(self) -> str:
        return self.source.fetch()

    def _revision_known(self, revision: str) -> str:
        try:
            return self.source.resolve(revision)
        except SourceError:
            return self.source.fetch_revision(revision)

    def _freight_blocking(self, fleet: Fleet, app: str, env: str) -> Freight:
        overlay = self._overlay(fleet, app, env)
        head = self._head()
        clusters = tuple(self.health(c) for c in self.clusters_of(fleet, env))
        # the freight an environment runs is what its bundles were rendered from
        revisions = list(dict.fromkeys(c.desired_revision for c in clusters if c.desired_revision))
        seen: dict[tuple[fr.Image, ...], str] = {}
        where: dict[tuple[fr.Image, ...], list[str]] = {}
        for rev in revisions:
            images, _, _ = self._read_images(self._revision_known(rev), overlay)
            seen.setdefault(images, rev)
            where.setdefault(images, []).extend(c.cluster for c in clusters if c.desired_revision == rev)
        if len(seen) > 1:
            detail = "; ".join(
                f"{', '.join(where[i])} get {fr.freight_key(i)} (revision {r[:12]})" for i, r in seen.items()
            )
            raise FailedPrecondition(f"clusters of {env} are given different freight of {app}: {detail}")
        if seen:
            images, revision = next(iter(seen.items()))
        else:
            images, _, _ = self._read_images(head, overlay)
            revision = head
        return Freight(app, env, overlay, images, revision, clusters)

    async def get_freight(self, identity: Identity, app: str, env: str) -> Freight:
        fleet = self._fleet()
        async with self._git_lock:
            f = await asyncio.to_thread(self._freight_blocking, fleet, app, env)
        self.audit.record(str(identity), "GetFreight", "ok", app=app, env=env, revision=f.revision)
        return f

    async def list_environments(self, identity: Identity) -> tuple[Fleet, PromotionPolicy]:
        fleet = self._fleet()
        self.audit.record(str(identity), "ListEnvironments", "ok")
        return fleet, self._policy(fleet)

    def _gates(self, fleet: Fleet, app: str, src: Freight, to_env: str) -> list[Gate]:
        policy = self._policy(fleet)
        key = (app, src.env, to_env, fr.freight_key(src.images))
        return evaluate(
            environments=fleet.environments,
            from_env=src.env,
            to_env=to_env,
            from_clusters=src.clusters,
            from_rules=policy.rules(src.env),
            to_rules=policy.rules(to_env),
            approvals=self.approvals.of(key),
            now=self.clock.now(),
        )

    async def diff(self, identity: Identity, app: str, from_env: str, to_env: str):
        fleet = self._fleet()
        async with self._git_lock:
            src = await asyncio.to_thread(self._freight_blocking, fleet, app, from_env)
            dst = await asyncio.to_thread(self._freight_blocking, fleet, app, to_env)
        changes = fr.diff_images(src.images, dst.images)
        gates = self._gates(fleet, app, src, to_env)
        self.audit.record(str(identity), "Diff", "ok", app=app, from_env=from_env, to_env=to_env, changes=len(changes))
        return src, dst, changes, gates

    # --- records and progress -------------------------------------------------------------------

    def _new_record(self, **kw) -> Record:
        rec = Record(id=uuid.uuid4().hex[:16], updated=self.clock.now(), **kw)
        if len(self.records) >= MAX_RECORDS:
            for rid in [r.id for r in self.records.values() if r.final][: len(self.records) - MAX_RECORDS + 1]:
                del self.records[rid]
        self.records[rec.id] = rec
        return rec

    async def _update(self, rec: Record, **changes) -> None:
        for k, v in changes.items():
            setattr(rec, k, v)
        rec.updated = self.clock.now()
        rec.version += 1
        if rec.final:
            self._follows.pop(rec.id, None)
        if self._record_store is not None:
            try:
                self._record_store.save(rec, self._follows.get(rec.id))
            except SkerryError as e:  # Fenced or the database gone: the record lives on in memory
                log.error("promotion record not stored", id=rec.id, error=str(e))
        async with self._changed:
            self._changed.notify_all()

    async def watch(self, identity: Identity, promotion_id: str) -> AsyncIterator[Record]:
        rec = self.records.get(promotion_id)
        if rec is None:
            raise NotFound(f"no promotion {promotion_id!r} on this hub (records are kept in memory)")
        self.audit.record(str(identity), "WatchPromotion", "ok", id=promotion_id)
        seen = -1
        while True:
            if rec.version != seen:
                seen = rec.version
                yield rec
                if rec.final:
                    return
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=5.0)
                except TimeoutError:
                    pass

    # --- the commit -----------------------------------------------------------------------------

    def _commit_blocking(
        self, overlay: str, images: Sequence[fr.Image], message: str, branch: str | None
    ) -> tuple[str, str] | None:
        """Edit ``overlay``'s images on the tip, commit, push; redo on a rejected push. Blocking.

        Returns (commit, previous images key) or None if the tip already has these images.
        """
        delay = 0.05
        for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
            head = self._head()
            if branch and branch != self.source.branch:
                with_branch = self._branch_tip(branch) or head
            else:
                with_branch = head
            _, path, data = self._read_images(with_branch, overlay)
            new = fr.set_images(data, images, path)
            if new == data:
                return None
            commit = gitsrc.commit_files(
                self.source,
                with_branch,
                {path: new},
                message,
                author_name=self.settings.author_name,
                author_email=self.settings.author_email,
            )
            try:
                self.push_attempts += 1
                gitsrc.push_commit(
                    self.source,
                    commit,
                    branch=branch,
                    push_url=self.settings.push_url,
                    ssh_key=self.settings.ssh_key,
                )
                return commit, with_branch
            except gitsrc.PushRejected:
                log.info("push rejected, redoing the promotion on the new tip", attempt=attempt, overlay=overlay)
                import time

                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)
        raise Unavailable(
            f"push to {branch or self.source.branch} rejected {MAX_PUSH_ATTEMPTS} times "
            "(the branch keeps moving); try again"
        )

    def _branch_tip(self, branch: str) -> str | None:
        try:
            self.source._fetch([f"+refs/heads/{branch}:refs/heads/{branch}"], f"fetch {branch} failed")
            return self.source.resolve(f"refs/heads/{branch}")
        except SourceError:
            return None

    @staticmethod
    def _message(title: str, body: list[str], trailers: list[tuple[str, str]]) -> str:
        # values come from YAML in the repository: one line each, so none can forge a trailer
        lines = [" ".join(title.split()), ""]
        if body:
            lines += [" ".join(b.split()) for b in body] + [""]
        lines += [f"{k}: {' '.join(v.split())}" for k, v in trailers]
        return "\n".join(lines) + "\n"

    # --- Promote ----------------------------------------------------------------------------------

    async def promote(
        self,
        identity: Identity,
        app: str,
        from_env: str,
        to_env: str,
        *,
        approve: bool = False,
        branch: str = "",
        dry_run: bool = False,
    ) -> Record:
        fields = {"app": app, "from_env": from_env, "to_env": to_env}
        fleet = self._fleet()
        policy = self._policy(fleet)
        rules = policy.rules(to_env)
        # the table let an approver of the target who is not a promoter through to approve only
        # (four eyes: one approves, another promotes); only promoters make the commit
        approver_only = approve and policy.promoters is not None and identity.name not in policy.promoters
        self._overlay(fleet, app, to_env)
        if approve and identity.name not in rules.approvers:
            self.audit.record(str(identity), "Promote", "denied", reason="not an approver", **fields)
            raise PermissionDenied(
                f"{identity} may not approve promotions into {to_env}: not in {FLEET_FILE} "
                f"promotion.environments.{to_env}.approvers"
            )
        if branch:
            gitsrc.check_branch(branch, "branch")
        branch = branch or self.settings.push_branch or ""
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:
            async with self._git_lock:
                src = await asyncio.to_thread(self._freight_blocking, fleet, app, from_env)
                dst = await asyncio.to_thread(self._freight_blocking, fleet, app, to_env)
            key = (app, from_env, to_env, fr.freight_key(src.images))
            if approve:
                self.approvals.approve(key, identity.name, str(identity), **fields)
            gates = self._gates(fleet, app, src, to_env)
            changes = fr.diff_images(src.images, dst.images)
            approved = [a for a in self.approvals.of(key) if a in rules.approvers]
            rec = self._new_record(
                app=app, from_env=from_env, to_env=to_env, kind="promote", state="checking",
                requested_by=identity.name, gates=gates, changes=changes, approved_by=approved,
            )
            blocked = [g for g in gates if not g.passed]
            if approver_only:
                state = "approved"
                msg = f"approval by {identity.name} recorded; a promoter commits the promotion"
                if blocked:
                    msg += "; still blocked: " + "; ".join(f"{g.name}: {g.message}" for g in blocked)
                await self._update(rec, state=state, message=msg)
                self.audit.record(str(identity), "Promote", "approved", id=rec.id, **fields)
                return rec
            if blocked:
                msg = "; ".join(f"{g.name}: {g.message}" for g in blocked)
                await self._update(rec, state="blocked", message=msg)
                self.audit.record(str(identity), "Promote", "blocked", id=rec.id, gates=msg, approve=approve, **fields)
                return rec
            if dry_run:
                await self._update(rec, state="ready", message="every gate passes (dry run: nothing committed)")
                self.audit.record(str(identity), "Promote", "dry-run", id=rec.id, **fields)
                return rec
            if not changes:
                await self._update(rec, state="done", message=f"{to_env} already runs the freight of {from_env}")
                self.audit.record(str(identity), "Promote", "unchanged", id=rec.id, **fields)
                return rec
            summary = ", ".join(f"{c.name}={c.after}" for c in changes)
            trailers = [("Promoted-by", identity.name), ("From-env", from_env), ("From-revision", src.revision)]
            trailers += [("From-bundle", f"{c.desired_digest} ({c.cluster})") for c in src.clusters]
            trailers += [("Approved-by", a) for a in approved]
            trailers += [("Skerry-Promotion", rec.id)]
            message = self._message(
                f"promote {app}: {from_env} -> {to_env} ({summary})",
                [f"{c.name}: {c.before or '(none)'} -> {c.after}" for c in changes],
                trailers,
            )
            try:
                async with self._git_lock:
                    result = await asyncio.to_thread(self._commit_blocking, dst.overlay, src.images, message, branch or None)
            except Exception as e:
                await self._update(rec, state="failed", message=str(e))
                self.audit.record(str(identity), "Promote", "error", id=rec.id, error=str(e), **fields)
                raise
            self.approvals.clear(key)
            if result is None:
                await self._update(rec, state="done", message=f"{to_env} already runs the freight of {from_env}")
                self.audit.record(str(identity), "Promote", "unchanged", id=rec.id, **fields)
                return rec
            commit, _parent = result
            review = bool(branch) and branch != self.source.branch
            await self._update(
                rec, commit=commit, branch=branch or self.source.branch,
                state="pushed-for-review" if review else "committed",
                message=f"pushed to {branch} for review" if review else "committed; following the rollout",
            )
            self.audit.record(
                str(identity), "Promote", "committed", id=rec.id, commit=commit, branch=rec.branch,
                approved_by=",".join(approved), **fields,
            )
        if not review:
            self._follow(rec, fleet, previous=dst.images, auto_rollback=rules.auto_rollback, soak=rules.soak_seconds)
        return rec

    # --- Rollback -------------------------------------------------------------------------------

    async def rollback(self, identity: Identity, app: str, env: str, to_revision: str) -> Record:
        fields = {"app": app, "env": env, "to_revision": to_revision}
        fleet = self._fleet()
        overlay = self._overlay(fleet, app, env)
        if not to_revision or to_revision.startswith("-") or len(to_revision) > 256:
            raise InvalidInput(f"to_revision: {to_revision!r} is not a revision")
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:
            async with self._git_lock:
                rev = await asyncio.to_thread(self._revision_known, to_revision)
                images, _, _ = await asyncio.to_thread(self._read_images, rev, overlay)
                dst = await asyncio.to_thread(self._freight_blocking, fleet, app, env)
            rec = self._new_record(
                app=app, from_env=env, to_env=env, kind="rollback", state="checking",
                requested_by=identity.name, changes=fr.diff_images(images, dst.images),
            )
            record = await self._revert(rec, overlay, images, rev, identity.name, f"rollback {app} in {env} to {rev[:12]}")
            self.audit.record(str(identity), "Rollback", rec.state, id=rec.id, commit=rec.commit, revision=rev, **fields)
        if record is not None:
            self._follow(rec, fleet, previous=dst.images, auto_rollback=False, soak=0.0)
        return rec

    async def _revert(self, rec: Record, overlay: str, images, rev: str, who: str, title: str) -> str | None:
        trailers = [("Rolled-back-by", who), ("Rolled-back-to", rev), ("Skerry-Promotion", rec.id)]
        body = [f"{c.name}: {c.before or '(none)'} -> {c.after}" for c in fr.diff_images(images, ())]
        message = self._message(title, body, trailers)
        async with self._git_lock:
            result = await asyncio.to_thread(self._commit_blocking, overlay, images, message, None)
        if result is None:
            await self._update(rec, state="done", message=f"{rec.to_env} already runs the freight of {rev[:12]}")
            return None
        await self._update(rec, commit=result[0], branch=self.source.branch, state="committed")
        return result[0]

    # --- following a rollout --------------------------------------------------------------------

    def _follow(self, rec: Record, fleet: Fleet, *, previous, auto_rollback: bool, soak: float) -> None:
        deadline = self.clock.now() + _dt.timedelta(seconds=self.settings.progress_timeout)
        self._start_follow(rec, fleet, Follow(tuple(previous), auto_rollback, soak, deadline))

    def _start_follow(self, rec: Record, fleet: Fleet, follow: Follow) -> None:
        self._follows[rec.id] = follow
        task = asyncio.create_task(self._follow_task(rec, fleet, follow), name=f"promotion-{rec.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _built(self, commit: str) -> bool:
        result = getattr(self.fleet_view, "last_result", None)
        head = getattr(result, "commit", "") if result is not None else ""
        if not head:
            return False
        if head == commit:
            return True
        async with self._git_lock:
            try:
                await asyncio.to_thread(self._revision_known, head)
            except SourceError:
                return False
            return await asyncio.to_thread(gitsrc.is_ancestor, self.source, commit, head)

    def resume(self) -> list[str]:
        """Follow again every rollout a previous process was following (ids); call after the first sync."""
        if self._record_store is None:
            return []
        fleet = self.fleet_view.fleet
        resumed = []
        for rec, follow in self._record_store.unfinished(Record, ClusterProgress):
            self.records[rec.id] = rec
            self._start_follow(rec, fleet, follow)
            self.audit.record("skerry-hub", "ResumePromotion", rec.state, id=rec.id, app=rec.app, env=rec.to_env,
                              commit=rec.commit)
            resumed.append(rec.id)
        return resumed

    async def _follow_task(self, rec: Record, fleet: Fleet, follow: Follow) -> None:
        try:
            await self._follow_rollout(rec, fleet, follow)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a follower must end in a state, not vanish
            log.exception("following the promotion failed", id=rec.id)
            await self._update(rec, state="failed", message=f"following the rollout failed: {e}")

    async def _follow_rollout(self, rec: Record, fleet: Fleet, follow: Follow) -> None:
        tick = self.settings.tick
        previous, auto_rollback, soak = follow.previous, follow.auto_rollback, follow.soak
        if rec.state != "verifying":  # a resumed follow keeps its state (and soak) until progress says more
            await self._update(rec, state="rolling-out", message=f"waiting for the hub to render {rec.commit[:12]}")
        request = getattr(self.fleet_view, "request_sync", None)
        if request is not None:
            request()
        while not await self._built(rec.commit):
            if self.clock.now() > follow.deadline:
                await self._update(rec, state="timed-out", message=f"the hub never rendered {rec.commit[:12]}")
                return
            await asyncio.sleep(tick)
        fleet = self.fleet_view.fleet or fleet
        names = self.clusters_of(fleet, rec.to_env)
        targets = {n: (cur.digest if (cur := self.store.current(n)) is not None else "") for n in names}
        while True:
            progress = []
            for name in names:
                h = self.health(name)
                cp = ClusterProgress(name, target_digest=targets[name], applied_digest=h.applied_digest)
                if not targets[name]:
                    cp.state, cp.message = "pending", "no bundle for this cluster (render error?)"
                elif not h.reported:
                    cp.state, cp.message = "pending", "no report yet (offline or not started)"
                elif h.applied_digest != targets[name]:
                    cp.state, cp.message = "applying", f"runs {h.applied_digest[:19] or 'nothing'}"
                elif h.ready:
                    cp.state = "healthy"
                else:
                    cp.state, cp.message = "unhealthy", h.reason
                progress.append(cp)
            unhealthy = [p for p in progress if p.state == "unhealthy"]
            if unhealthy and auto_rollback and rec.kind == "promote":
                why = "; ".join(f"{p.cluster}: {p.message}" for p in unhealthy)
                await self._update(rec, clusters=progress, message=f"unhealthy within soak ({why}); rolling back")
                await self._auto_rollback(rec, fleet, previous, why)
                return
            if names and all(p.state == "healthy" for p in progress):
                if auto_rollback and soak > 0:
                    now = self.clock.now()
                    follow.verified_since = follow.verified_since or now  # stored with the next update
                    held = (now - follow.verified_since).total_seconds()
                    if held >= soak:
                        await self._update(rec, state="done", clusters=progress, message=f"healthy for the {soak:.0f}s soak")
                        return
                    if rec.state != "verifying" or rec.clusters != progress:
                        await self._update(rec, state="verifying", clusters=progress,
                                           message=f"healthy; watching for {soak - held:.0f}s more")
                else:
                    await self._update(rec, state="done", clusters=progress, message="every cluster applied it and is Ready")
                    return
            elif rec.clusters != progress:
                await self._update(rec, clusters=progress, message=_summary(progress, rec.to_env))
            if self.clock.now() > follow.deadline:
                pending = [p.cluster for p in progress if p.state != "healthy"]
                state = "failed" if unhealthy else "timed-out"
                await self._update(rec, state=state, clusters=progress,
                                   message=f"not done after {self.settings.progress_timeout:.0f}s; pending: {', '.join(pending)}")
                return
            await asyncio.sleep(tick)

    async def _auto_rollback(self, rec: Record, fleet: Fleet, previous, why: str) -> None:
        overlay = self._overlay(fleet, rec.app, rec.to_env)
        trailers = [("Rolled-back-by", "skerry-hub (auto-rollback)"), ("Reverts", rec.commit), ("Reason", why),
                    ("Skerry-Promotion", rec.id)]
        message = self._message(f"auto-rollback {rec.app} in {rec.to_env}: revert {rec.commit[:12]}", [], trailers)
        async with self._git_lock:
            result = await asyncio.to_thread(self._commit_blocking, overlay, previous, message, None)
        commit = result[0] if result else ""
        self.audit.record("skerry-hub", "AutoRollback", "committed" if commit else "unchanged", id=rec.id,
                          app=rec.app, env=rec.to_env, reverts=rec.commit, commit=commit, reason=why)
        await self._update(rec, state="rolled-back", rollback_commit=commit, message=f"rolled back: {why}")
        if request := getattr(self.fleet_view, "request_sync", None):
            request()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass


def _summary(progress: list[ClusterProgress], env: str) -> str:
    counts: dict[str, int] = {}
    for p in progress:
        counts[p.state] = counts.get(p.state, 0) + 1
    return f"{env}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


__all__ = ["Promoter", "PromotionSettings", "TrackingStatusBoard", "Freight", "Record", "cluster_problem"]
