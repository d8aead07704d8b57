"""Following a promotion commit out to its clusters, and rolling it back if they turn unhealthy in the soak.

After the commit the hub waits until its sync loop has rendered it (the commit, or a descendant,
is what the loop last built), then watches the target clusters' reports: each cluster is pending
(no bundle or no report), applying (runs another digest), healthy or unhealthy. With
``autoRollback`` an unhealthy cluster within the soak reverts the commit (a new commit restoring
the previous freight, never a force-push); otherwise the record ends done once every cluster runs
it and is Ready (for the whole soak when there is one), or timed-out/failed at the deadline naming
the clusters still pending.

What following needs is stored with each record update (``records.Follow``), so a restarted hub
``resume``s it, soak and deadline included. A follower always ends in a state: an error in it
fails the record rather than leaving it rolling out forever.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
from collections.abc import Callable

import structlog

from skerry.core.clock import Clock
from skerry.core.errors import SourceError
from skerry.hub.fleet import Fleet
from skerry.hub.promotion import targets
from skerry.hub.promotion.audit import HUB, AuditLog
from skerry.hub.promotion.gates import ClusterHealth
from skerry.hub.promotion.mirror import PromotionMirror, commit_message
from skerry.hub.promotion.pushes import Pushes
from skerry.hub.promotion.records import ClusterProgress, Follow, Record, RecordBook
from skerry.hub.promotion.settings import PromotionSettings

log = structlog.get_logger("skerry.hub.promotion")


class Rollouts:
    """The rollouts this process follows, one task each."""

    def __init__(
        self,
        *,
        fleet_view,
        store,
        mirror: PromotionMirror,
        book: RecordBook,
        audit: AuditLog,
        clock: Clock,
        health: Callable[[str], ClusterHealth],
        pushes: Pushes,
    ):
        self.fleet_view = fleet_view  # the sync loop: fleet, last_result, request_sync
        self.store = store
        self.mirror = mirror
        self.book = book
        self.audit = audit
        self.clock = clock
        self.health = health
        self.pushes = pushes  # an auto-rollback's push is stored before it is made
        self._tasks: set[asyncio.Task] = set()

    def plan(self, rec: Record, settings: PromotionSettings, *, previous, auto_rollback: bool, soak: float) -> None:
        """Before ``rec``'s commit: what following it needs, until ``settings.progress_timeout`` from now.

        It is stored with the record's next update, the one that records the commit, so a writer that dies
        right after its commit leaves a promotion the next writer resumes (a final record drops it)."""
        deadline = self.clock.now() + _dt.timedelta(seconds=settings.progress_timeout)
        self.book.follows[rec.id] = Follow(tuple(previous), auto_rollback, soak, deadline)

    def follow(self, rec: Record, fleet: Fleet, settings: PromotionSettings) -> None:
        """Follow ``rec``'s commit as planned (``plan``)."""
        self._start(rec, fleet, self.book.follows[rec.id], settings)

    async def resume_all(self, settings: PromotionSettings) -> list[str]:
        """Settle the pushes a previous writer left (``pushes``), then ``resume`` every rollout it followed."""
        _, left = await self.pushes.recover(settings)  # each settled push is audited
        resumed = await self.resume(settings, await asyncio.to_thread(self.book.unfinished))  # (a state read)
        if left:  # their remote could not be asked: again later
            self.settle_later(settings)
        return resumed

    async def resume(self, settings: PromotionSettings, unfinished: list) -> list[str]:
        """Follow again every rollout a previous process was following (ids); call after the first sync.
        ``unfinished``: ``book.unfinished()``, read by the caller (off the event loop: a state read)."""
        fleet = self.fleet_view.fleet
        resumed = []
        for rec, follow in unfinished:
            self.book.add(rec)
            self._start(rec, fleet, follow, settings)
            await self.audit.arecord(HUB, "ResumePromotion", rec.state, id=rec.id, app=rec.app, env=rec.to_env,
                                     commit=rec.commit)
            resumed.append(rec.id)
        return resumed

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass

    def settle_later(self, settings: PromotionSettings) -> None:
        """Ask again, every ``settings.settle_retry`` seconds, about the pushes ``pushes.recover`` could not
        settle (their remote could not be asked); follow each once settled."""
        self._spawn(self._settling(settings), "promotion-pushes")

    async def _settling(self, settings: PromotionSettings) -> None:
        while True:
            await asyncio.sleep(settings.settle_retry)
            settled, left = await self.pushes.recover(settings)
            if settled:
                unfinished = await asyncio.to_thread(self.book.unfinished)  # (a state read)
                await self.resume(settings, [(rec, follow) for rec, follow in unfinished if rec.id in settled])
            if not left:
                return

    def _start(self, rec: Record, fleet: Fleet, follow: Follow, settings: PromotionSettings) -> None:
        self.book.follows[rec.id] = follow
        self._spawn(self._run(rec, fleet, follow, settings), f"promotion-{rec.id}")

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, rec: Record, fleet: Fleet, follow: Follow, settings: PromotionSettings) -> None:
        try:
            if await self._rendered(rec, follow, settings.tick):
                await self._watch(rec, self.fleet_view.fleet or fleet, follow, settings)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a follower must end in a state, not vanish
            log.exception("following the promotion failed", id=rec.id)
            await self.book.update(rec, state="failed", message=f"following the rollout failed: {e}")

    async def _rendered(self, rec: Record, follow: Follow, tick: float) -> bool:
        """Wait until the sync loop built ``rec.commit``; False (and the record timed out) at the deadline."""
        if rec.state != "verifying":  # a resumed follow keeps its state (and soak) until progress says more
            await self.book.update(rec, state="rolling-out", message=f"waiting for the hub to render {rec.commit[:12]}")
        self._request_sync()
        while not await self._built(rec.commit):
            if self.clock.now() > follow.deadline:
                await self.book.update(rec, state="timed-out", message=f"the hub never rendered {rec.commit[:12]}")
                return False
            await asyncio.sleep(tick)
        return True

    async def _built(self, commit: str) -> bool:
        result = getattr(self.fleet_view, "last_result", None)
        head = getattr(result, "commit", "") if result is not None else ""
        if not head:
            return False
        if head == commit:
            return True
        async with self.mirror.lock:
            try:
                return await asyncio.to_thread(self.mirror.contains, commit, head)
            except SourceError:
                return False

    async def _watch(self, rec: Record, fleet: Fleet, follow: Follow, settings: PromotionSettings) -> None:
        names = targets.clusters_of(fleet, rec.to_env)
        wanted = {n: (cur.digest if (cur := self.store.current(n)) is not None else "") for n in names}
        while True:
            progress = [self._progress(name, wanted[name]) for name in names]
            unhealthy = [p for p in progress if p.state == "unhealthy"]
            if unhealthy and follow.auto_rollback and rec.kind == "promote":
                why = "; ".join(f"{p.cluster}: {p.message}" for p in unhealthy)
                await self.book.update(rec, clusters=progress, message=f"unhealthy within soak ({why}); rolling back")
                await self._auto_rollback(rec, fleet, follow.previous, why, settings)
                return
            if names and all(p.state == "healthy" for p in progress):
                if await self._healthy(rec, follow, progress):
                    return
            elif rec.clusters != progress:
                await self.book.update(rec, clusters=progress, message=_summary(progress, rec.to_env))
            if self.clock.now() > follow.deadline:
                pending = [p.cluster for p in progress if p.state != "healthy"]
                await self.book.update(
                    rec, state="failed" if unhealthy else "timed-out", clusters=progress,
                    message=f"not done after {settings.progress_timeout:.0f}s; pending: {', '.join(pending)}",
                )
                return
            await asyncio.sleep(settings.tick)

    def _progress(self, name: str, wanted: str) -> ClusterProgress:
        h = self.health(name)
        cp = ClusterProgress(name, target_digest=wanted, applied_digest=h.applied_digest,
                             target_release=h.desired_release if h.desired_digest == wanted else "",
                             applied_release=h.applied_release)
        if not wanted:
            cp.state, cp.message = "pending", "no bundle for this cluster (render error?)"
        elif not h.reported:
            cp.state, cp.message = "pending", "no report yet (offline or not started)"
        elif h.applied_digest != wanted:
            runs = f"{h.applied_release} ({h.applied_digest[:19]})" if h.applied_digest else "nothing"
            cp.state, cp.message = "applying", f"runs {runs}"
        elif h.ready:
            cp.state = "healthy"
        else:
            cp.state, cp.message = "unhealthy", h.reason
        return cp

    async def _healthy(self, rec: Record, follow: Follow, progress: list[ClusterProgress]) -> bool:
        """Every cluster runs it and is Ready: done, or (with auto-rollback) once the soak has held."""
        soak = follow.soak
        if not (follow.auto_rollback and soak > 0):
            await self.book.update(rec, state="done", clusters=progress, message="every cluster applied it and is Ready")
            return True
        now = self.clock.now()
        follow.verified_since = follow.verified_since or now  # stored with the next update
        held = (now - follow.verified_since).total_seconds()
        if held >= soak:
            await self.book.update(rec, state="done", clusters=progress, message=f"healthy for the {soak:.0f}s soak")
            return True
        if rec.state != "verifying" or rec.clusters != progress:
            await self.book.update(rec, state="verifying", clusters=progress,
                                   message=f"healthy; watching for {soak - held:.0f}s more")
        return False

    async def _auto_rollback(self, rec: Record, fleet: Fleet, previous, why: str, settings: PromotionSettings) -> None:
        overlay = targets.overlay_of(fleet, rec.app, rec.to_env)
        trailers = [("Rolled-back-by", f"{HUB} (auto-rollback)"), ("Reverts", rec.commit), ("Reason", why),
                    ("Skerry-Promotion", rec.id)]
        message = commit_message(f"auto-rollback {rec.app} in {rec.to_env}: revert {rec.commit[:12]}", [], trailers)
        async with self.mirror.lock:
            result = await asyncio.to_thread(self.mirror.commit, overlay, previous, message, None, settings,
                                             self.pushes.intend(rec, "auto-rollback", why))
        commit = result[0] if result else ""

        def audit(tx) -> None:
            self.audit.record_in(tx, HUB, "AutoRollback", "committed" if commit else "unchanged", id=rec.id,
                                 app=rec.app, env=rec.to_env, reverts=rec.commit, commit=commit, reason=why)

        await self.book.update(rec, state="rolled-back", rollback_commit=commit, message=f"rolled back: {why}",
                               audit=audit)
        self._request_sync()

    def _request_sync(self) -> None:
        request = getattr(self.fleet_view, "request_sync", None)
        if request is not None:
            request()


def _summary(progress: list[ClusterProgress], env: str) -> str:
    counts: dict[str, int] = {}
    for p in progress:
        counts[p.state] = counts.get(p.state, 0) + 1
    return f"{env}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
