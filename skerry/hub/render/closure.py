"""A rendered path's input closure, read from Git object ids alone (pure).

The incremental renderer caches a render under a key made of everything the
render can read: for a kustomization, its kustomization file and, through
``resources``, ``bases`` and ``components``, every kustomization it builds
on, plus every file or directory any of them names in any other field
(patches, generators' ``files``/``envs``, ``configurations``, ``crds``,
``openapi``, replacements, ...). Rather than knowing every field kustomize
has, every string value of a kustomization is tried as a path relative to
its directory (also the part after ``=`` in ``key=file``): a match joins the
closure with its blob (or tree) id; a miss joins it as "absent" (so that
creating the file changes the key). This over-approximates (a string such as
an image name may happen to name a file) but never misses an input, which
is the property that matters: a stale render is a wrong bundle, an extra
render is only a few milliseconds.

A plain YAML directory's closure is its tree id (any change in it counts).

Errors are ``RenderError`` naming the kustomization file and field (a path the file names is clipped,
``documents.clip``, so a message stays under 1 KiB):
a missing base, a reference leaving the repository, a cycle of
kustomizations, a remote base (a URL: mutable and slow, refused), a link or
submodule where a file is needed, a kustomization that is not a mapping.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from skerry.core import documents
from skerry.core.errors import RenderError
from skerry.hub.render.engine import KUSTOMIZATION_FILES, PLAIN_SUFFIXES
from skerry.hub.render.kustomization import BUILD_FIELDS, MAX_KUSTOMIZATIONS, is_remote
from skerry.hub.source.objects import TreeEntry

# A string longer than this, or with whitespace, is content (an inline patch), not a path.
MAX_PATH_CHARS = 1024
# Bounds the walk: files materialized for one closure (kustomizations: kustomization.MAX_KUSTOMIZATIONS).
MAX_CLOSURE_FILES = 50_000
ABSENT = "-"


@dataclasses.dataclass(frozen=True)
class Closure:
    path: str
    kind: str  # "kustomize" or "plain"
    items: tuple[tuple[str, str], ...]  # (repository path, object id or ABSENT), sorted
    files: tuple[str, ...]  # blobs to write out for the render
    _keys: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def key(self, engine: str, version: str, options: str = "") -> str:
        """sha256 over engine, version, options, path, kind and the items (computed once)."""
        memo = (engine, version, options)
        if memo not in self._keys:
            material = json.dumps(
                [engine, version, options, self.path, self.kind, self.items], separators=(",", ":")
            )
            self._keys[memo] = hashlib.sha256(material.encode()).hexdigest()
        return self._keys[memo]


def kustomization_file(entries: Mapping[str, TreeEntry], directory: str) -> str | None:
    for name in KUSTOMIZATION_FILES:
        path = f"{directory}/{name}" if directory else name
        entry = entries.get(path)
        if entry is not None and entry.type == "blob":
            return path
    return None


def _join(directory: str, ref: str) -> str | None:
    """``ref`` relative to ``directory``, normalised; None if it leaves the repository or is absolute."""
    if ref.startswith("/") or "\x00" in ref:
        return None
    joined = posixpath.normpath(posixpath.join(directory, ref)) if directory else posixpath.normpath(ref)
    if joined == ".":
        return ""
    if joined == ".." or joined.startswith("../"):
        return None
    return joined


def _strings(value: Any, out: list[str], depth: int = 0) -> None:
    if depth > 32:
        return
    if isinstance(value, str):
        if value and len(value) <= MAX_PATH_CHARS and not any(c.isspace() for c in value):
            out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out, depth + 1)


class _Walk:
    def __init__(self, entries: Mapping[str, TreeEntry], load: Callable[[str, str], Any]):
        self.entries = entries
        self.load = load
        self.items: dict[str, str] = {}
        self.files: dict[str, None] = {}
        self.done: set[str] = set()

    def add_blob(self, path: str, entry: TreeEntry, where: str) -> None:
        if entry.type != "blob" or entry.mode == "120000":
            what = "a symbolic link" if entry.mode == "120000" else f"a {entry.type} (submodule)"
            raise RenderError(f"{where}: {path} is {what}; renders read regular files only")
        self.items[path] = entry.oid
        self.files[path] = None

    def add_tree(self, path: str, entry: TreeEntry, where: str) -> None:
        self.items[path] = entry.oid
        prefix = f"{path}/" if path else ""
        for p, e in self.entries.items():
            if p.startswith(prefix) and e.type != "tree":
                self.add_blob(p, e, where)
                if len(self.files) > MAX_CLOSURE_FILES:
                    raise RenderError(f"{where}: reads more than {MAX_CLOSURE_FILES} files")

    def kustomization(self, directory: str, stack: tuple[str, ...]) -> None:
        if directory in stack:
            chain = " -> ".join((*stack[stack.index(directory) :], directory))
            raise RenderError(f"{directory or '.'}: kustomization cycle: {chain}")
        if directory in self.done:
            return
        if len(self.done) >= MAX_KUSTOMIZATIONS:
            raise RenderError(f"{stack[0] or '.'}: builds on more than {MAX_KUSTOMIZATIONS} kustomizations")
        self.done.add(directory)
        kfile = kustomization_file(self.entries, directory)
        assert kfile is not None
        # Every kustomization file name present counts (kustomize refuses a directory with two).
        for name in KUSTOMIZATION_FILES:
            p = f"{directory}/{name}" if directory else name
            if p in self.entries:
                self.add_blob(p, self.entries[p], p)
            else:
                self.items[p] = ABSENT
        doc = self.load(self.entries[kfile].oid, kfile)
        if doc is None:
            return
        if not isinstance(doc, dict):
            raise RenderError(f"{kfile}: must be a mapping (a Kustomization), got a {type(doc).__name__}")
        for field in BUILD_FIELDS:
            refs = doc.get(field)
            if refs is None:
                continue
            if not isinstance(refs, list):
                raise RenderError(f"{kfile}: {field} must be a list")
            for i, ref in enumerate(refs):
                where = f"{kfile}: {field}[{i}] {documents.clip_repr(ref)}"
                if not isinstance(ref, str) or not ref:
                    raise RenderError(f"{kfile}: {field}[{i}] must be a path")
                if is_remote(ref):
                    raise RenderError(
                        f"{where}: remote bases are refused (a URL is mutable and slow to fetch); "
                        "vendor it into the repository"
                    )
                target = _join(directory, ref)
                if target is None:
                    raise RenderError(f"{where}: points outside the repository")
                entry = self.entries.get(target)
                if entry is None:
                    raise RenderError(f"{where}: no such file or directory ({documents.clip(target or '.')})")
                if entry.type == "tree":
                    if kustomization_file(self.entries, target) is None:
                        raise RenderError(f"{where}: directory {documents.clip(target or '.')} has no kustomization.yaml")
                    self.kustomization(target, (*stack, directory))
                else:
                    self.add_blob(target, entry, where)
        others = {k: v for k, v in doc.items() if k not in BUILD_FIELDS}
        strings: list[str] = []
        _strings(others, strings)
        for s in strings:
            candidates = [s]
            if "=" in s:
                candidates.append(s.split("=", 1)[1])
            for cand in candidates:
                target = _join(directory, cand)
                if target is None or target == directory or target.split("/")[0] == ".git":
                    continue
                entry = self.entries.get(target)
                if entry is None:
                    self.items.setdefault(target, ABSENT)
                elif entry.type == "tree":
                    if kustomization_file(self.entries, target) is not None:
                        self.kustomization(target, (*stack, directory))  # a generator/transformer dir
                    else:
                        self.add_tree(target, entry, kfile)
                else:
                    self.add_blob(target, entry, kfile)


def closure(path: str, entries: Mapping[str, TreeEntry], load: Callable[[str, str], Any]) -> Closure:
    """The closure of rendering ``path``; ``load(blob id, file path)`` parses a kustomization file."""
    entry = entries.get(path)
    if entry is None:
        raise RenderError(f"{path or '.'}: no such directory")
    if entry.type != "tree":
        raise RenderError(f"{path or '.'}: not a directory")
    if kustomization_file(entries, path) is None:
        prefix = f"{path}/" if path else ""
        files = []
        for p, e in entries.items():
            if p.startswith(prefix) and "/" not in p[len(prefix) :] and e.type != "tree":
                if p.lower().endswith(PLAIN_SUFFIXES):
                    if e.type != "blob" or e.mode == "120000":
                        raise RenderError(f"{p}: is a link or submodule; renders read regular files only")
                    files.append(p)
        return Closure(path, "plain", ((path, entry.oid),), tuple(sorted(files)))
    walk = _Walk(entries, load)
    walk.kustomization(path, ())
    return Closure(path, "kustomize", tuple(sorted(walk.items.items())), tuple(walk.files))
