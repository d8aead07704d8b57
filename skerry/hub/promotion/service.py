"""The promotion engine: freight, gates, promote, rollback; what the gRPC servicer calls.

The servicer only translates protos. This module decides; its parts live beside it: ``targets``
(which overlay and clusters an app's environment is), ``health`` (the clusters' reports as gates
read them), ``mirror`` (the commit and its push), ``records`` (records, stored and watched),
``rollout`` (following a commit out, auto-rollback). Collaborators are passed in
(``skerry.hub.app`` composes them):

* ``source``: a ``GitSource`` with its *own* mirror (the sync loop's mirror is never written to);
  commits are made in it without a working tree and pushed without force (``mirror``);
* ``fleet``: the sync loop (``fleet``, ``last_result``, ``request_sync``): the fleet and policy in
  force, and a nudge to render the promotion commit at once;
* ``store``: the bundles the hub serves (what each cluster should run);
* ``statuses`` + ``tracker``: what each agent reported, and since when it has been healthy;
* ``may_write``: whether this process holds the writer lease. Promote and Rollback commit, push and
  follow: only the writer does, so another replica refuses them (``Unavailable``, call again) before it
  touches Git, where it would push a commit whose record and follow it cannot store.

An app's environment is its overlay (``promotion.apps`` in ``skerry.yaml``); the clusters of an
environment are the fleet's clusters labelled ``env: <name>`` (``targets``). Promotions of one app
are serialised by a lock per app; a push that loses a race with another writer is redone on the
new tip, never forced (``mirror``).

Who may call which RPC (operators; ``promotion.promoters`` for Promote and Rollback) is the hub's
authorisation table (``skerry.hub.authz``, reading ``policy()``); callers reach this module already
authorised. Its own business gate: ``approve`` counts only from the approvers listed for the target
environment (an approver who is not a promoter may approve; the commit is then a promoter's call).

Rollback passes no gates (no soak, approvals or freeze): it restores freight the environment ran
before, and in an incident nothing should stand in its way. It is audited like everything else.
Approvals persist in the hub state (``approvals.Approvals``, 24 h); so do promotion records and what
following each rollout needs (``records.RecordStore``): a restarted hub ``resume``s following them,
soak and auto-rollback deadline included. Each push is stored before it is made (``pushes``), so a
writer that dies between its push and the record of it loses nothing: ``resume`` first settles such
pushes by asking the remote.

Every call is audit-logged (``AuditLog``, in the hub state); calls the table refuses are audited by
the hub's interceptor (``skerry.hub.authz.audit_promotion_refusals``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence

from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import FailedPrecondition, InvalidInput, PermissionDenied, Unavailable
from skerry.core.tls import Identity
from skerry.hub.config import check_branch
from skerry.hub.fleet import FLEET_FILE, Fleet
from skerry.hub.promotion import freight as fr
from skerry.hub.promotion import targets
from skerry.hub.promotion.approvals import Approvals
from skerry.hub.promotion.audit import AuditLog
from skerry.hub.promotion.gates import ClusterHealth, Gate, HealthTracker, cluster_problem, evaluate
from skerry.hub.promotion.health import TrackingStatusBoard, cluster_health
from skerry.hub.promotion.mirror import PromotionMirror, commit_message
from skerry.hub.promotion.pushes import Pushes
from skerry.hub.promotion.records import Record, RecordBook, RecordStore
from skerry.hub.promotion.rollout import Rollouts
from skerry.hub.promotion.settings import PromotionSettings
from skerry.hub.promotion_policy import EnvironmentRules, PromotionPolicy
from skerry.hub.source.git import GitSource
from skerry.hub.state import Tx
from skerry.hub.status import StatusBoard

MAX_REVISION_CHARS = 256  # a rollback's target: a branch, tag or commit id, never a long expression

FreightKey = tuple[str, str, str, str]  # (app, from env, to env, freight) an approval is for


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


class Promoter:
    def __init__(
        self,
        *,
        source: GitSource,
        fleet,
        store,
        statuses: StatusBoard,
        tracker: HealthTracker,
        audit: AuditLog,
        settings: PromotionSettings | None = None,
        clock: Clock | None = None,
        approvals: Approvals,
        attestations=None,
        records: RecordStore,
        may_write: Callable[[], bool] = lambda: True,
    ):
        self.source = source
        self._may_write = may_write
        # An ``AttestationBoard`` (TUF mode): gates then read only signed, nonce-bound agent reports.
        self.attestations = attestations
        self.fleet_view = fleet
        self.store = store
        self.statuses = statuses
        self.tracker = tracker
        self.audit = audit
        self.settings = settings or PromotionSettings()
        self.clock = clock or SystemClock()
        self.approvals = approvals
        self.mirror = PromotionMirror(source)
        self.book = RecordBook(self.clock, records)
        self.pushes = Pushes(book=self.book, mirror=self.mirror, audit=audit, followed_branch=source.branch)
        self.rollouts = Rollouts(
            fleet_view=fleet, store=store, mirror=self.mirror, book=self.book, audit=audit, clock=self.clock,
            health=self.health, pushes=self.pushes,
        )
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def records(self) -> dict[str, Record]:
        """This process's promotion records by id (what WatchPromotion and the ops view read)."""
        return self.book.records

    @property
    def push_attempts(self) -> int:
        return self.mirror.push_attempts

    # --- fleet, policy and freight -------------------------------------------------------------

    def _fleet(self) -> Fleet:
        fleet = self.fleet_view.fleet
        if fleet is None:
            raise Unavailable(f"the hub has not loaded {FLEET_FILE} yet")
        return fleet

    def policy(self) -> PromotionPolicy:
        """The promotion policy in force (``Unavailable`` before the fleet loaded): what authorisation reads."""
        return targets.policy_of(self._fleet())

    def health(self, cluster: str) -> ClusterHealth:
        return cluster_health(
            cluster, store=self.store, statuses=self.statuses, tracker=self.tracker, attestations=self.attestations
        )

    def _freight_blocking(self, fleet: Fleet, app: str, env: str) -> Freight:
        """What ``env`` runs of ``app``: the images its clusters' bundles were rendered from. Blocking."""
        overlay = targets.overlay_of(fleet, app, env)
        clusters = tuple(self.health(c) for c in targets.clusters_of(fleet, env))
        return _running_freight(self.mirror, app, env, overlay, clusters)

    async def _freights(self, fleet: Fleet, app: str, *envs: str) -> list[Freight]:
        async with self.mirror.lock:
            return [await asyncio.to_thread(self._freight_blocking, fleet, app, env) for env in envs]

    async def get_freight(self, identity: Identity, app: str, env: str) -> Freight:
        (f,) = await self._freights(self._fleet(), app, env)
        await self.audit.arecord(str(identity), "GetFreight", "ok", app=app, env=env, revision=f.revision)
        return f

    async def list_environments(self, identity: Identity) -> tuple[Fleet, PromotionPolicy]:
        fleet = self._fleet()
        await self.audit.arecord(str(identity), "ListEnvironments", "ok")
        return fleet, targets.policy_of(fleet)

    def _gates(self, fleet: Fleet, src: Freight, to_env: str, approvals: list[str]) -> list[Gate]:
        policy = targets.policy_of(fleet)
        return evaluate(
            environments=fleet.environments,
            from_env=src.env,
            to_env=to_env,
            from_clusters=src.clusters,
            from_rules=policy.rules(src.env),
            to_rules=policy.rules(to_env),
            approvals=approvals,
            now=self.clock.now(),
        )

    async def diff(self, identity: Identity, app: str, from_env: str, to_env: str):
        fleet = self._fleet()
        src, dst = await self._freights(fleet, app, from_env, to_env)
        changes = fr.diff_images(src.images, dst.images)
        gates = self._gates(fleet, src, to_env, await asyncio.to_thread(self.approvals.of, _key(src, to_env)))
        await self.audit.arecord(str(identity), "Diff", "ok", app=app, from_env=from_env, to_env=to_env,
                                 changes=len(changes))
        return src, dst, changes, gates

    # --- records --------------------------------------------------------------------------------

    async def watch(self, identity: Identity, promotion_id: str) -> AsyncIterator[Record]:
        rec = self.book.get(promotion_id)
        await self.audit.arecord(str(identity), "WatchPromotion", "ok", id=promotion_id)
        async for update in self.book.watch(rec):
            yield update

    async def resume(self) -> list[str]:
        """Follow again every rollout a previous process was following (ids), once the pushes it left are
        settled (``pushes``); call after the first sync."""
        return await self.rollouts.resume_all(self.settings)

    async def close(self) -> None:
        """Stop following (this process stops writing): the next writer, maybe this one again, resumes."""
        self.pushes.end_term()
        await self.rollouts.close()

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
        _require_writer(self._may_write, "Promote")
        fields = {"app": app, "from_env": from_env, "to_env": to_env}
        fleet = self._fleet()
        rules = targets.policy_of(fleet).rules(to_env)
        approver_only = await self._check_caller(identity, fleet, app, to_env, rules, approve=approve, fields=fields)
        if branch:
            check_branch(branch, "branch")
        branch = branch or self.settings.push_branch or ""
        async with self._locks.setdefault(app, asyncio.Lock()):
            src, dst = await self._freights(fleet, app, from_env, to_env)
            if approve:  # the approvals are written and read off the loop
                await self.approvals.aapprove(_key(src, to_env), identity.name, str(identity), **fields)
            changes = fr.diff_images(src.images, dst.images)
            given = await asyncio.to_thread(self.approvals.of, _key(src, to_env))
            approved = [a for a in given if a in rules.approvers]
            rec = self.book.new(
                app=app, from_env=from_env, to_env=to_env, kind="promote", state="checking",
                requested_by=identity.name, gates=self._gates(fleet, src, to_env, given), changes=changes,
                approved_by=approved,
            )
            if await self._stopped_before_commit(rec, identity, approver_only, approve, dry_run, fields):
                return rec
            self.rollouts.plan(rec, self.settings, previous=dst.images, auto_rollback=rules.auto_rollback,
                               soak=rules.soak_seconds)
            review = await self._commit_promotion(rec, identity, src, dst, branch, fields)
        if review is False:
            self.rollouts.follow(rec, fleet, self.settings)
        return rec

    async def _check_caller(
        self, identity: Identity, fleet: Fleet, app: str, to_env: str, rules: EnvironmentRules, *, approve: bool,
        fields: dict[str, str],
    ) -> bool:
        """Refuse an approval from someone not an approver of ``to_env``; True if the caller may approve only.

        The table let an approver of the target who is not a promoter through to approve only (four eyes:
        one approves, another promotes); only promoters make the commit.
        """
        policy = targets.policy_of(fleet)
        targets.overlay_of(fleet, app, to_env)
        if approve and identity.name not in rules.approvers:
            await self.audit.arecord(str(identity), "Promote", "denied", reason="not an approver", **fields)
            raise PermissionDenied(
                f"{identity} may not approve promotions into {to_env}: not in {FLEET_FILE} "
                f"promotion.environments.{to_env}.approvers"
            )
        return approve and policy.promoters is not None and identity.name not in policy.promoters

    async def _stopped_before_commit(
        self, rec: Record, identity: Identity, approver_only: bool, approve: bool, dry_run: bool, fields: dict[str, str]
    ) -> bool:
        """End ``rec`` short of a commit if it must (approval only, a closed gate, a dry run, nothing to change)."""
        blocked = [g for g in rec.gates if not g.passed]
        closed = "; ".join(f"{g.name}: {g.message}" for g in blocked)
        if approver_only:
            msg = f"approval by {identity.name} recorded; a promoter commits the promotion"
            await self.book.update(rec, state="approved", message=msg + (f"; still blocked: {closed}" if blocked else ""))
            outcome, extra = "approved", {}
        elif blocked:
            await self.book.update(rec, state="blocked", message=closed)
            outcome, extra = "blocked", {"gates": closed, "approve": approve}
        elif dry_run:
            await self.book.update(rec, state="ready", message="every gate passes (dry run: nothing committed)")
            outcome, extra = "dry-run", {}
        elif not rec.changes:
            await self.book.update(rec, state="done", message=f"{rec.to_env} already runs the freight of {rec.from_env}")
            outcome, extra = "unchanged", {}
        else:
            return False
        await self.audit.arecord(str(identity), "Promote", outcome, id=rec.id, **extra, **fields)
        return True

    async def _commit_promotion(
        self, rec: Record, identity: Identity, src: Freight, dst: Freight, branch: str, fields: dict[str, str]
    ) -> bool | None:
        """Commit and push ``src``'s images into ``dst``'s overlay; True if pushed for review, None if unchanged."""
        summary = ", ".join(f"{c.name}={c.after}" for c in rec.changes)
        trailers = [("Promoted-by", identity.name), ("From-env", src.env), ("From-revision", src.revision)]
        trailers += [("From-bundle", f"{c.desired_digest} ({c.cluster})") for c in src.clusters]
        trailers += [("Approved-by", a) for a in rec.approved_by]
        trailers += [("Skerry-Promotion", rec.id)]
        message = commit_message(
            f"promote {rec.app}: {src.env} -> {rec.to_env} ({summary})",
            [f"{c.name}: {c.before or '(none)'} -> {c.after}" for c in rec.changes],
            trailers,
        )
        intent = self.pushes.intend(rec, "promote")
        try:
            async with self.mirror.lock:
                result = await asyncio.to_thread(
                    self.mirror.commit, dst.overlay, src.images, message, branch or None, self.settings, intent
                )
        except Exception as e:
            if (landed := await self.pushes.landed(intent)) is None:  # else the remote took it all the same
                error = str(e)
                await self.book.update(rec, state="failed", message=error, audit=lambda tx: self.audit.record_in(
                    tx, str(identity), "Promote", "error", id=rec.id, error=error, **fields))
                raise
            result = (landed, "")
        await self.approvals.aclear(_key(src, rec.to_env))  # a write: off the loop
        if result is None:
            await self.book.update(rec, state="done", message=f"{rec.to_env} already runs the freight of {src.env}")
            await self.audit.arecord(str(identity), "Promote", "unchanged", id=rec.id, **fields)
            return None
        commit, _tip = result
        review = bool(branch) and branch != self.source.branch
        await self.book.update(
            rec, commit=commit, branch=branch or self.source.branch,
            state="pushed-for-review" if review else "committed",
            message=f"pushed to {branch} for review" if review else "committed; following the rollout",
            audit=lambda tx: self.audit.record_in(
                tx, str(identity), "Promote", "committed", id=rec.id, commit=commit,
                branch=branch or self.source.branch, approved_by=",".join(rec.approved_by), **fields,
            ),
        )
        return review

    # --- Rollback -------------------------------------------------------------------------------

    async def rollback(self, identity: Identity, app: str, env: str, to_revision: str) -> Record:
        _require_writer(self._may_write, "Rollback")
        fields = {"app": app, "env": env, "to_revision": to_revision}
        fleet = self._fleet()
        overlay = targets.overlay_of(fleet, app, env)
        if not to_revision or to_revision.startswith("-") or len(to_revision) > MAX_REVISION_CHARS:
            raise InvalidInput(f"to_revision: {to_revision!r} is not a revision")
        async with self._locks.setdefault(app, asyncio.Lock()):
            async with self.mirror.lock:
                rev = await asyncio.to_thread(self.mirror.known, to_revision)
                images, _, _ = await asyncio.to_thread(self.mirror.read_images, rev, overlay)
                dst = await asyncio.to_thread(self._freight_blocking, fleet, app, env)
            rec = self.book.new(
                app=app, from_env=env, to_env=env, kind="rollback", state="checking",
                requested_by=identity.name, changes=fr.diff_images(images, dst.images),
            )
            self.rollouts.plan(rec, self.settings, previous=dst.images, auto_rollback=False, soak=0.0)
            commit = await self._revert(
                rec, overlay, images, rev, identity.name, f"rollback {app} in {env} to {rev[:12]}",
                lambda outcome, commit: lambda tx: self.audit.record_in(
                    tx, str(identity), "Rollback", outcome, id=rec.id, commit=commit, revision=rev, **fields),
            )
        if commit is not None:
            self.rollouts.follow(rec, fleet, self.settings)
        return rec

    async def _revert(
        self, rec: Record, overlay: str, images: Sequence[fr.Image], rev: str, who: str, title: str,
        audit: Callable[[str, str], Callable[[Tx], object]],
    ) -> str | None:
        """Commit ``images`` into ``overlay``; ``audit(outcome, commit)`` writes the entry with the record of it."""
        trailers = [("Rolled-back-by", who), ("Rolled-back-to", rev), ("Skerry-Promotion", rec.id)]
        body = [f"{c.name}: {c.before or '(none)'} -> {c.after}" for c in fr.diff_images(images, ())]
        message = commit_message(title, body, trailers)
        async with self.mirror.lock:
            result = await asyncio.to_thread(self.mirror.commit, overlay, images, message, None, self.settings,
                                             self.pushes.intend(rec, "rollback"))
        if result is None:
            await self.book.update(rec, state="done", message=f"{rec.to_env} already runs the freight of {rev[:12]}",
                                   audit=audit("done", ""))
            return None
        await self.book.update(rec, commit=result[0], branch=self.source.branch, state="committed",
                               audit=audit("committed", result[0]))
        return result[0]


def _running_freight(mirror, app: str, env: str, overlay: str, clusters: tuple[ClusterHealth, ...]) -> Freight:
    """The images ``clusters`` were rendered from (the overlay at their desired revision; at the head when
    none has one yet). Refused when the clusters of one environment are given different freight. Blocking."""
    head = mirror.head()
    revisions = list(dict.fromkeys(c.desired_revision for c in clusters if c.desired_revision))
    seen: dict[tuple[fr.Image, ...], str] = {}
    where: dict[tuple[fr.Image, ...], list[str]] = {}
    for rev in revisions:
        images, _, _ = mirror.read_images(mirror.known(rev), overlay)
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
        images, _, _ = mirror.read_images(head, overlay)
        revision = head
    return Freight(app, env, overlay, images, revision, clusters)


def _require_writer(may_write: Callable[[], bool], method: str) -> None:
    if not may_write():
        raise Unavailable(f"{method}: this hub replica does not hold the writer lease and commits nothing; "
                          "call again (a new connection may reach the writer)")


def _key(src: Freight, to_env: str) -> FreightKey:
    return (src.app, src.env, to_env, fr.freight_key(src.images))


__all__ = [
    "Freight", "Promoter", "PromotionSettings", "Record", "TrackingStatusBoard", "cluster_problem",
]
