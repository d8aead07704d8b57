"""The hub's loop: fetch -> (new commit?) -> load fleet -> render each path once -> build -> publish.

``build_revision`` is the blocking core, shared with ``skerry render --repo``
so the CLI prints exactly the bundle the hub signs. It reads ``skerry.yaml``
at the commit, works out every cluster's paths, exports the tree once,
renders each needed path once (shared by every cluster that uses it) and
builds one bundle per cluster.

``Syncer`` applies the outcome to the store, never publishing a broken or
partial bundle:

* fetch fails: nothing changes, the error is kept in ``source_error``;
* ``before_publish`` raises (the hub's database does not answer, or this
  process lost the writer lease): nothing changes and the sync fails, so
  the commit is built again on the next tick;
* ``skerry.yaml`` is missing or invalid: every known cluster records the
  error and keeps its bundle, and the previous fleet stays in force;
* a path fails to render, a cluster matches no path, or its objects clash:
  that cluster (only) records the error and keeps its bundle;
* otherwise the cluster's bundle is published (a new release only if its
  content changed: a commit that renders a cluster to the same objects
  gives it no new release) and its error cleared.

A commit is done once it built without errors; a commit with errors is
retried on every tick (a render may fail for a transient reason, e.g. a
remote base), which costs a render but makes no new release for clusters
whose bundle is unchanged. Every tick also re-signs bundles whose metadata
is past half its lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pathlib
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Mapping

import structlog

from skerry.core.bundle import SHARED_CLUSTER, Bundle
from skerry.core.errors import ConfigError, RenderError, SkerryError, SourceError
from skerry.core.files import as_refusal
from skerry.hub.bundles.builder import build_bundle, content_digest, encode_bundle
from skerry.hub.bundles.store import HubStore
from skerry.hub.fleet import FLEET_FILE, Fleet, parse_fleet
from skerry.hub.render.detect import detect_engine
from skerry.hub.render.engine import Engine
from skerry.hub.render.incremental import IncrementalRenderer, Progress, RenderStats
from skerry.hub.source.git import GitSource
from skerry.hub.source.objects import MAX_FILE_BYTES
from skerry.hub.status import StatusBoard

log = structlog.get_logger("skerry.hub.sync")


# Clusters that must share inputs before they get one shared blob: two already save an encoding
# and a hash each.
SHARE_MIN_CLUSTERS = 2


@dataclasses.dataclass(frozen=True)
class BuiltBundle:
    bundle: Bundle
    data: bytes  # canonical bytes: exactly what the hub signs
    content: str  # content digest (ignores source.revision): what decides a new release


@dataclasses.dataclass(frozen=True)
class BuildOutcome:
    """What one commit yields: the fleet (or why not), bundles and per-cluster errors."""

    revision: str
    fleet: Fleet | None
    fleet_error: str | None
    bundles: Mapping[str, BuiltBundle]
    errors: Mapping[str, str]  # cluster -> message
    inputs: Mapping[str, tuple] = dataclasses.field(default_factory=dict)  # cluster -> what it was built from
    unchanged: tuple[str, ...] = ()  # clusters not rebuilt: same inputs as ``previous`` said
    stats: RenderStats | None = None
    fleet_reason: str | None = None  # the named reason the fleet file was refused


def build_revision(
    source: GitSource,
    commit: str,
    engine: Engine,
    *,
    clusters: Collection[str] | None = None,
    renderer: IncrementalRenderer | None = None,
    previous: Mapping[str, tuple] | None = None,
    progress: Progress | None = None,
    share: bool = False,
) -> BuildOutcome:
    """Build the bundles of ``clusters`` (default: all in the fleet) at ``commit``. Blocking.

    ``share``: clusters built from the same inputs (engine, source, paths and their render keys)
    render the same objects, so they get one bundle naming no cluster (``SHARED_CLUSTER``), built,
    encoded and hashed once: the very same ``BuiltBundle`` object for each of them, which the store
    publishes as one shared blob, directed per cluster (``HubStore.publish_shared``).

    ``renderer`` keeps renders between calls (the hub passes the same one every time; a fresh one
    renders everything). ``previous`` maps a cluster to the ``inputs`` it was last built from: a
    cluster whose inputs (its paths' render keys, in order, and the engine) are unchanged is listed
    in ``unchanged`` and not rebuilt (its bundle content cannot have changed).

    Raises ``SourceError`` if the commit cannot be read, and ``NotFound`` if a requested cluster is
    not in the fleet; everything else is reported in the outcome.
    """
    renderer = renderer or IncrementalRenderer(engine)
    try:
        fleet = _fleet_at(source, commit, renderer)
    except ConfigError as e:
        return BuildOutcome(commit, None, f"{e} (commit {commit[:12]})", {}, {}, fleet_reason=e.reason)
    names = list(fleet.cluster_names) if clusters is None else list(clusters)
    for name in names:
        fleet.cluster(name)  # NotFound for a cluster that is not in the fleet

    errors: dict[str, str] = {}
    plan: dict[str, tuple[str, ...]] = {}
    for name in names:
        try:
            plan[name] = fleet.paths_for(name)
        except ConfigError as e:
            errors[name] = str(e)
    needed = list(dict.fromkeys(p for paths in plan.values() for p in paths))
    outcome = renderer.render(source, commit, needed, progress=progress)

    inputs: dict[str, tuple] = {}
    unchanged: list[str] = []
    to_build: dict[tuple, list[str]] = {}  # inputs -> clusters to build from them
    for name, paths in plan.items():
        failed = [outcome.failures[p] for p in paths if p in outcome.failures]
        if failed:
            errors[name] = "; ".join(failed)
            continue
        key = (engine.name, engine.version, source.url, tuple((p, outcome.keys[p]) for p in paths))
        inputs[name] = key
        if previous is not None and previous.get(name) == key:
            unchanged.append(name)
        else:
            to_build.setdefault(key, []).append(name)

    def build(name: str, paths: tuple[str, ...]) -> BuiltBundle:
        bundle = build_bundle(
            name,
            {p: outcome.rendered[p] for p in paths},
            source_url=source.url,
            revision=commit,
            engine=engine.name,
            engine_version=engine.version,
        )
        return BuiltBundle(bundle, encode_bundle(bundle), content_digest(bundle))

    bundles = _build_groups(to_build, plan, build, share=share, errors=errors, inputs=inputs)
    return BuildOutcome(
        commit, fleet, None, bundles, errors, inputs=inputs, unchanged=tuple(unchanged), stats=outcome.stats
    )


def _build_groups(
    to_build: Mapping[tuple, list[str]],
    plan: Mapping[str, tuple[str, ...]],
    build: Callable[[str, tuple[str, ...]], BuiltBundle],
    *,
    share: bool,
    errors: dict[str, str],
    inputs: dict[str, tuple],
) -> dict[str, BuiltBundle]:
    """One bundle per cluster (or one shared bundle per group of equal inputs); a failure names its cluster."""
    bundles: dict[str, BuiltBundle] = {}
    for group in to_build.values():
        paths = plan[group[0]]
        if share and len(group) >= SHARE_MIN_CLUSTERS:
            try:
                built = build(SHARED_CLUSTER, paths)
            except RenderError:
                pass  # build each below, so every error names its cluster
            else:
                bundles.update(dict.fromkeys(group, built))
                continue
        for name in group:
            try:
                bundles[name] = build(name, paths)
            except RenderError as e:
                errors[name] = str(e)
                inputs.pop(name, None)
    return bundles


def render_bundle(repo: str, cluster: str, branch: str, revision: str | None, engine_choice: str = "auto", *,
                  progress: Progress | None = None) -> bytes:
    """One cluster's bundle bytes at ``revision`` (default: the branch head), exactly as the hub signs them.

    For ``skerry render --repo`` and CI's ``skerry keys sign``: a throwaway clone, the same
    ``build_revision`` as the hub's sync. Raises ``RenderError`` for a fleet or render failure.
    """
    engine = detect_engine(engine_choice)
    with tempfile.TemporaryDirectory(prefix="skerry-render-") as cache:
        source = GitSource(repo, branch=branch, cache_dir=pathlib.Path(cache))
        commit = source.fetch_revision(revision) if revision else source.fetch()
        outcome = build_revision(source, commit, engine, clusters=[cluster], progress=progress)
    if outcome.fleet is None:
        raise RenderError(str(outcome.fleet_error))
    if cluster in outcome.errors:
        raise RenderError(outcome.errors[cluster])
    return outcome.bundles[cluster].data


def _fleet_at(source: GitSource, commit: str, renderer: IncrementalRenderer) -> Fleet:
    """``skerry.yaml`` at ``commit``, parsed once per blob id."""
    entries = source.list_tree(commit)
    entry = entries.get(FLEET_FILE)
    if entry is None or entry.type != "blob":
        return parse_fleet(None)
    cached = renderer.memo.get("fleet")
    if cached is not None and cached[0] == entry.oid:
        return cached[1]
    fleet = parse_fleet(source.read_blobs([entry.oid], max_bytes=MAX_FILE_BYTES)[entry.oid])
    renderer.memo["fleet"] = (entry.oid, fleet)
    return fleet


@dataclasses.dataclass(frozen=True)
class SyncResult:
    commit: str  # the branch head fetched ("" if never fetched)
    rendered: bool  # False: the commit was already done (or the fetch failed), nothing rebuilt
    published: tuple[str, ...] = ()  # clusters that got a new release
    errors: Mapping[str, str] = dataclasses.field(default_factory=dict)  # cluster -> message
    fleet_error: str | None = None
    source_error: str | None = None
    fleet_reason: str | None = None  # why the fleet file was refused (``SkerryError.reason``)

    @property
    def ok(self) -> bool:
        return not self.errors and self.fleet_error is None and self.source_error is None


class Syncer:
    """Keeps the store in step with the branch head. All methods run on the event loop."""

    def __init__(
        self,
        source: GitSource,
        engine: Engine,
        store: HubStore,
        *,
        statuses: StatusBoard | None = None,
        before_publish: Callable[[], Awaitable[None]] | None = None,
    ):
        self.source = source
        # awaited once a build is done, before the store is touched; raising skips this sync (retried next tick)
        self._before_publish = before_publish
        self.engine = engine
        self.store = store
        self.statuses = statuses
        self.fleet: Fleet | None = None  # the last valid fleet; stays when a newer skerry.yaml is broken
        self.revision = ""  # newest commit fetched
        self.fleet_error: str | None = None
        self.source_error: str | None = None
        self.last_result: SyncResult | None = None
        self._done: str | None = None
        self._lock = asyncio.Lock()
        self._trigger = asyncio.Event()
        # e.g. metrics; (result, seconds). One that returns an awaitable (a state write, made off the loop
        # in it) is awaited before the next.
        self.observers: list[Callable[[SyncResult, float], Awaitable[None] | None]] = []
        self.renderer = IncrementalRenderer(engine)
        self._inputs: dict[str, tuple] = {}  # cluster -> inputs of the bundle it now has

    def request_sync(self) -> None:
        """Wake ``run`` now instead of at the next interval (e.g. from a webhook)."""
        self._trigger.set()

    async def sync_once(self, *, force: bool = False) -> SyncResult:
        """One fetch and, if the head is new (or ``force``), one full build and publish."""
        started = time.monotonic()
        async with self._lock:
            result = await self._sync(force)
        self.last_result = result
        for observe in self.observers:
            pending = observe(result, time.monotonic() - started)
            if pending is not None:
                await pending
        return result

    async def _sync(self, force: bool) -> SyncResult:
        try:
            commit = await asyncio.to_thread(self.source.fetch)
        except SourceError as e:
            self.source_error = str(e)
            log.warning("fetch failed; serving the bundles we have", reason=e.reason, error=str(e))
            return SyncResult(self.revision, False, (), source_error=str(e))
        self.source_error = None
        self.revision = commit
        if commit == self._done and not force:
            return SyncResult(commit, False, ())

        try:
            outcome = await asyncio.to_thread(
                build_revision,
                self.source,
                commit,
                self.engine,
                renderer=self.renderer,
                previous=None if force else dict(self._inputs),
                share=True,
            )
        except SourceError as e:
            # The commit itself cannot be read (e.g. a link out of the repository): like a broken fleet.
            outcome = BuildOutcome(commit, None, str(e), {}, {}, fleet_reason=e.reason)

        if self._before_publish is not None:
            await self._before_publish()  # e.g. the writer's database answers (``Writer.confirm``)
        published: list[str] = []
        errors: dict[str, str] = {}
        if outcome.fleet is None:
            self.fleet_error = outcome.fleet_error
            for cluster in self.store.clusters():
                self.store.set_error(cluster, str(outcome.fleet_error), commit)
                errors[cluster] = str(outcome.fleet_error)
            log.warning(
                "fleet cannot be loaded; keeping the previous one", revision=commit, error=outcome.fleet_error
            )
        else:
            self.fleet, self.fleet_error = outcome.fleet, None
            removed = self.store.declare(outcome.fleet.cluster_names)
            if removed:
                log.info("clusters removed from the fleet", clusters=removed)
            if self.statuses is not None:
                self.statuses.retain(outcome.fleet.cluster_names)
            groups: dict[int, tuple[BuiltBundle, list[str]]] = {}
            # A cluster's inputs are remembered only once its bundle is published: a publish that fails
            # (a full disk) must be built and published again at the next tick, not skipped as unchanged.
            for cluster, built in outcome.bundles.items():
                if built.bundle.cluster == SHARED_CLUSTER:
                    groups.setdefault(id(built), (built, []))[1].append(cluster)
                    continue
                if self.store.publish(cluster, built.bundle, encoded=built.data, content=built.content):
                    published.append(cluster)
                self._inputs[cluster] = outcome.inputs[cluster]
            for built, clusters in groups.values():
                published += self.store.publish_shared(clusters, built.bundle, encoded=built.data, content=built.content)
                self._inputs.update((c, outcome.inputs[c]) for c in clusters)
            for cluster, message in outcome.errors.items():
                self.store.set_error(cluster, message, commit)
                errors[cluster] = message
                self._inputs.pop(cluster, None)
            for cluster in list(self._inputs):
                if cluster not in outcome.fleet.cluster_names:
                    del self._inputs[cluster]
        if not errors and outcome.fleet is not None:
            self._done = commit
        stats = outcome.stats
        log.info(
            "synced",
            revision=commit,
            paths=stats.paths if stats else 0,
            rerendered=stats.rendered if stats else 0,
            render_seconds=round(stats.seconds, 3) if stats else 0,
            published=len(published),
            failed=len(errors),
            clusters=len(self.store.clusters()),
        )
        return SyncResult(commit, True, tuple(published), errors, outcome.fleet_error,
                          fleet_reason=outcome.fleet_reason)

    async def run(self, interval: float, *, immediately: bool = True) -> None:
        """Sync every ``interval`` seconds, or sooner on ``request_sync``, until cancelled.

        ``immediately=False`` waits one interval (or a trigger) before the first sync.
        """
        first = True
        while True:
            if immediately or not first:
                try:
                    await self.sync_once()
                except asyncio.CancelledError:
                    raise
                except (SkerryError, OSError) as e:  # e.g. a full disk: one line, the bundles we have stay
                    failed = as_refusal(e, "the hub's state or trust repository")
                    log.error("sync failed; serving the bundles we have", reason=failed.reason, error=str(failed))
                except Exception:  # noqa: BLE001 - the loop must survive a bad tick; it is logged
                    log.exception("sync failed")
            first = False
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns normally when the trigger fires in
            # the same loop step as a cancel, and this loop then never stopped (the hub's shutdown hung).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._trigger.wait()
            self._trigger.clear()
