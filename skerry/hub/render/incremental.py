"""Rendering a commit's paths, re-rendering only those whose inputs changed.

For each path: its closure (``closure.closure``, from the commit's tree
listing and cached parses of kustomization files by blob id) gives a key
``sha256(engine, engine version, options, path, closure ids)``. A key seen
before returns the cached objects (already validated); the others are
rendered together: their closures' files (only those) are written from Git
objects into one scratch directory, each path is rendered there and its
objects are validated (``validate.check_objects``). A render that only sees
its closure also proves the closure complete: anything kustomize would read
beyond it is missing, so the render fails loudly rather than going stale.

Only successes are cached (a failure is retried on the next build). The
cache is bounded (``MAX_CACHE_ENTRIES``, least recently used out). Every
path refused (its closure or its render) is also handed to ``on_refused``
(commit, path, error), the hub's refusal counter.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from skerry.core import documents
from skerry.core.errors import RenderError, SourceError
from skerry.hub.render import closure as closures
from skerry.hub.render.engine import KUSTOMIZATION_FILES, Engine
from skerry.hub.render.kustomization import MAX_KUSTOMIZATION_BYTES
from skerry.hub.render.schemas import SchemaValidator
from skerry.hub.render.validate import check_objects
from skerry.hub.source.git import GitSource
from skerry.hub.source.objects import TreeEntry

log = structlog.get_logger("skerry.hub.render")

# Renders kept: a few monorepos' worth of paths (each entry is one path's objects).
MAX_CACHE_ENTRIES = 20_000
# Parsed kustomization files kept by blob id (small dicts).
MAX_PARSED = 50_000
Progress = Callable[[int, int], None]  # (done, total) of the paths being rendered


@dataclasses.dataclass(frozen=True)
class RenderStats:
    paths: int
    rendered: int  # re-rendered now
    cached: int
    failed: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class RenderOutcome:
    rendered: Mapping[str, list[dict]]
    failures: Mapping[str, str]
    keys: Mapping[str, str]  # path -> render key (successes only)
    entries: Mapping[str, TreeEntry]
    stats: RenderStats


Refused = Callable[[str, str, RenderError], None]  # (commit, path, why) of a path refused


class IncrementalRenderer:
    def __init__(self, engine: Engine, *, schemas: SchemaValidator | None | bool = True,
                 on_refused: Refused | None = None):
        self.engine = engine
        self.on_refused = on_refused
        if schemas is True:
            try:
                schemas = SchemaValidator()
            except ImportError:
                log.warning("kubernetes-validate is not installed; objects are checked structurally only")
                schemas = None
        self.schemas = schemas or None
        self._options = getattr(engine, "options", "")
        self._cache: collections.OrderedDict[str, list[dict]] = collections.OrderedDict()
        self._parsed: collections.OrderedDict[str, Any] = collections.OrderedDict()
        # path -> its closure at the last build. A closure is a function of its items alone (every
        # kustomization file read, every path probed, with its id or ABSENT), so while every item
        # has the same id in a new commit, the closure (and the key) is the same: no re-walk.
        self._closures: dict[str, closures.Closure] = {}
        self.memo: dict[str, Any] = {}  # small per-renderer memos for callers (e.g. the parsed fleet)

    def _parse_kustomizations(
        self, source: GitSource, entries: Mapping[str, TreeEntry], oids: dict[str, str]
    ):
        missing = {oid: path for oid, path in oids.items() if oid not in self._parsed}
        if not missing:
            return
        blobs = source.read_blobs(missing)
        for oid, path in missing.items():
            try:
                doc: Any = documents.load_yaml(blobs[oid], max_bytes=MAX_KUSTOMIZATION_BYTES)
            except documents.BadDocument as e:
                doc = RenderError(f"{documents.clip(path)}: {e}", reason=e.reason)
            self._parsed[oid] = doc
        while len(self._parsed) > MAX_PARSED:
            self._parsed.popitem(last=False)

    def render(
        self, source: GitSource, commit: str, paths: Iterable[str], *, progress: Progress | None = None
    ) -> RenderOutcome:
        started = time.perf_counter()
        paths = list(dict.fromkeys(paths))
        entries = source.list_tree(commit)
        # Parse every kustomization file in the tree we have not seen (by blob id) in one batch.
        kfiles = {}
        for p, e in entries.items():
            if e.type == "blob" and p.rpartition("/")[2] in KUSTOMIZATION_FILES:
                kfiles.setdefault(e.oid, p)
        self._parse_kustomizations(source, entries, kfiles)

        def load(oid: str, path: str) -> Any:
            doc = self._parsed[oid]
            if isinstance(doc, RenderError):
                raise RenderError(f"{path}: {str(doc).split(': ', 1)[1]}", reason=doc.reason)
            return doc

        failures: dict[str, str] = {}
        keys: dict[str, str] = {}
        found: dict[str, closures.Closure] = {}
        for path in paths:
            c = self._closures.get(path)
            if c is None or not _still_valid(c, entries):
                try:
                    c = closures.closure("" if path == "." else path, entries, load)
                except RenderError as e:
                    self._refused(failures, commit, path, e)
                    self._closures.pop(path, None)
                    continue
                self._closures[path] = c
            found[path] = c
            keys[path] = c.key(self.engine.name, self.engine.version, self._options)
        rendered: dict[str, list[dict]] = {}
        dirty = []
        for path, key in keys.items():
            if key in self._cache:
                self._cache.move_to_end(key)
                rendered[path] = self._cache[key]
            else:
                dirty.append(path)
        if dirty:
            with source.scratch_dir(f"render-{commit[:12]}-") as root:
                files = dict.fromkeys(f for p in dirty for f in found[p].files)
                try:
                    source.materialize(entries, files, root)
                except SourceError as e:
                    for p in dirty:
                        failures[p] = str(e)
                    dirty = []
                for n, path in enumerate(dirty):
                    try:
                        objects = self.engine.render(root / path if path else root, root=root)
                        check_objects(objects, path or ".", self.schemas)
                    except RenderError as e:
                        self._refused(failures, commit, path, e)
                        keys.pop(path, None)
                        log.info("path failed to render", path=path, revision=commit, error=str(e))
                    else:
                        rendered[path] = objects
                        self._cache[keys[path]] = objects
                    if progress is not None:
                        progress(n + 1, len(dirty))
            while len(self._cache) > MAX_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        for p in failures:
            keys.pop(p, None)
        if len(self._closures) > MAX_CACHE_ENTRIES:
            wanted = set(paths)
            self._closures = {p: c for p, c in self._closures.items() if p in wanted}
        stats = RenderStats(
            paths=len(paths),
            rendered=len(dirty),
            cached=len(paths) - len(dirty) - sum(1 for p in failures if p not in dirty),
            failed=len(failures),
            seconds=time.perf_counter() - started,
        )
        return RenderOutcome(rendered, failures, keys, entries, stats)

    def _refused(self, failures: dict[str, str], commit: str, path: str, error: RenderError) -> None:
        """``path`` failed at ``commit``: noted in ``failures`` and handed to ``on_refused``."""
        failures[path] = str(error)
        if self.on_refused is not None:
            self.on_refused(commit, path, error)


_MISSING = TreeEntry("", "", closures.ABSENT)


def _still_valid(c: closures.Closure, entries: Mapping[str, TreeEntry]) -> bool:
    get = entries.get
    return all(get(path, _MISSING)[2] == oid for path, oid in c.items)
