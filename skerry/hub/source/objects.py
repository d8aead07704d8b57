"""Reading many objects of a mirror at once, for the incremental renderer.

GitPython reads one object per call (~20x slower than git's batch modes), so this module runs git
itself: ``list_tree`` is one ``git ls-tree -r -t -z`` (every blob and tree id of a commit, ~10 ms for
10k entries), ``read_blobs`` streams ids through one ``git cat-file --batch``, and ``materialize``
writes just the files a render needs into a scratch directory. Every read is bounded
(``MAX_FILE_BYTES`` a file, ``MAX_EXPORT_BYTES`` and ``MAX_EXPORT_FILES`` a tree) and refuses links
and submodules: a render reads regular files inside the repository only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import re
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from skerry.core.errors import SourceError

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_EXPORT_BYTES = 1024 * 1024 * 1024
MAX_EXPORT_FILES = 100_000
# One tree listing: more entries than any export may have files (trees included), with room to spare.
MAX_TREE_ENTRIES = 4 * MAX_EXPORT_FILES
SHA = re.compile(r"^[0-9a-f]{40}$")


class TreeEntry(NamedTuple):
    """One ``ls-tree`` line: ``mode`` (e.g. 100644, 120000 for a link, 040000), ``type``, object id.

    A named tuple, not a dataclass: a listing makes one per file, and tuples are cheap to create.
    """

    mode: str
    type: str  # blob, tree or commit (a submodule)
    oid: str


class TreeObjects:
    """Batch reads of one mirror (``git_dir``); ``error`` turns a failure into the source's ``SourceError``."""

    def __init__(
        self,
        git_dir: pathlib.Path,
        *,
        env: Mapping[str, str],
        timeout: float,
        url: str,
        error: Callable[[str, BaseException], SourceError],
    ):
        self.git_dir = git_dir
        self.url = url
        self._env = dict(env)
        self._timeout = timeout
        self._error = error
        self._listing: tuple[str, dict[str, TreeEntry]] | None = None  # the last commit listed

    def _git(self, *args: str) -> list[str]:
        return ["git", f"--git-dir={self.git_dir}", *args]

    def list_tree(self, commit: str) -> dict[str, TreeEntry]:
        """Every blob, tree and submodule of ``commit`` (a full commit id) by path.

        '' is the root; its ``oid`` is a digest of the listing (not Git's tree id, which would cost a
        second process), so it too changes exactly when the tree does.
        """
        last = self._listing
        if last is not None and last[0] == commit:
            return last[1]
        try:
            proc = subprocess.run(
                self._git("ls-tree", "-r", "-t", "-z", "--full-tree", commit),
                capture_output=True,
                timeout=self._timeout,
                env={**os.environ, **self._env},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise self._error(f"cannot list commit {commit[:12]}", e) from e
        if proc.returncode != 0:
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
            raise SourceError(f"git source {self.url}: cannot list commit {commit[:12]}: {'; '.join(detail)}")
        # The root tree's id would cost another git process; a digest of the whole listing changes
        # exactly when something in the tree does, which is all a closure of the root needs.
        root = "listing-" + hashlib.sha256(proc.stdout).hexdigest()
        entries: dict[str, TreeEntry] = {"": TreeEntry("040000", "tree", root)}
        records = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
        if len(records) > MAX_TREE_ENTRIES:
            raise SourceError(
                f"git source {self.url}: commit {commit[:12]} has more than {MAX_TREE_ENTRIES} entries"
            )
        make = TreeEntry._make
        for record in records:
            if record:
                meta, _, path = record.partition("\t")
                entries[path] = make(meta.split(" ", 2))
        self._listing = (commit, entries)
        return entries

    def read_blobs(self, oids: Iterable[str], *, max_bytes: int = MAX_EXPORT_BYTES) -> dict[str, bytes]:
        """The content of each blob id, through one ``git cat-file --batch``."""
        wanted = list(dict.fromkeys(oids))
        if not wanted:
            return {}
        for oid in wanted:
            if not SHA.match(oid):
                raise SourceError(f"git source {self.url}: {oid!r} is not an object id")
        try:
            proc = subprocess.Popen(
                self._git("cat-file", "--batch"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, **self._env},
            )
        except OSError as e:
            raise self._error("cannot run git cat-file", e) from e
        assert proc.stdin is not None and proc.stdout is not None

        def feed() -> None:
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.write(("\n".join(wanted) + "\n").encode())
                proc.stdin.close()

        writer = threading.Thread(target=feed, name="git-cat-file-feed", daemon=True)
        writer.start()
        out: dict[str, bytes] = {}
        total = 0
        try:
            for oid in wanted:
                header = proc.stdout.readline().decode().split()
                if len(header) != 3 or header[1] != "blob":
                    raise SourceError(f"git source {self.url}: object {oid[:12]} is not a readable blob")
                size = int(header[2])
                total += size
                if size > MAX_FILE_BYTES or total > max_bytes:
                    raise SourceError(
                        f"git source {self.url}: blob {oid[:12]} is {size} bytes; a file may have at most "
                        f"{MAX_FILE_BYTES} and one read at most {max_bytes} in all"
                    )
                data = proc.stdout.read(size)
                proc.stdout.read(1)  # the newline after each object
                if len(data) != size:
                    raise SourceError(f"git source {self.url}: short read of blob {oid[:12]}")
                out[oid] = data
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            writer.join(timeout=5)
        return out

    def materialize(self, entries: Mapping[str, TreeEntry], paths: Iterable[str], dest: pathlib.Path) -> int:
        """Write the blobs at ``paths`` (keys of ``list_tree``) under ``dest``; returns the file count.

        Links and submodules are refused (a link could point anywhere; renders need regular files).
        """
        dest = pathlib.Path(dest)
        todo: list[tuple[str, TreeEntry]] = []
        for path in dict.fromkeys(paths):
            entry = entries.get(path)
            if entry is None or entry.type == "tree":
                continue
            if entry.type != "blob" or entry.mode == "120000":
                what = "a symbolic link" if entry.mode == "120000" else f"a {entry.type}"
                raise SourceError(f"{path}: is {what}; renders read regular files only")
            if path.startswith("/") or ".." in path.split("/") or path.split("/")[0] == ".git":
                raise SourceError(f"{path}: refused (points outside the repository)")
            todo.append((path, entry))
        if len(todo) > MAX_EXPORT_FILES:
            raise SourceError(f"git source {self.url}: more than {MAX_EXPORT_FILES} files to render")
        blobs = self.read_blobs(e.oid for _, e in todo)
        made: set[pathlib.Path] = set()
        for path, entry in todo:
            target = dest / path
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            target.write_bytes(blobs[entry.oid])
            if entry.mode == "100755":
                target.chmod(0o755)
        return len(todo)
