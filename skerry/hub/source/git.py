"""The Git source: a bare mirror of one branch, read by commit without a working tree.

The only module that imports GitPython. The mirror lives in the state dir
(``<state dir>/git/<hash of url>.git``); it is a cache, rebuilt from the
remote whenever it is missing or corrupt. Nothing is ever checked out: files
are read from the object database, and a commit's tree is exported for
rendering with ``git archive <commit>`` extracted into a fresh temporary
directory (``tarfile``'s ``data`` filter refuses absolute paths, ``..`` and
links that point outside the tree), removed when rendering is done.

Every repository handle is opened per operation and closed with it (GitPython
keeps ``cat-file`` processes alive otherwise). GitPython errors become
``SourceError`` naming the repository, with credentials removed from the URL.
Git never prompts: ``GIT_TERMINAL_PROMPT=0``.
"""

from __future__ import annotations

import contextlib
import hashlib
import pathlib
import re
import shutil
import tarfile
import tempfile
import urllib.parse
from collections.abc import Iterator

import git
import structlog

from skerry.core.errors import ConfigError, SourceError
from skerry.hub.config import check_branch

log = structlog.get_logger("skerry.hub.source")

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
DEFAULT_TIMEOUT = 300.0
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_EXPORT_BYTES = 1024 * 1024 * 1024
MAX_EXPORT_FILES = 100_000


def redact_url(url: str) -> str:
    """``url`` without user info (``https://user:token@host/x`` -> ``https://host/x``)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if parts.scheme and parts.netloc and "@" in parts.netloc:
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def normalise_url(repo: str) -> str:
    """Local paths become absolute; URLs are kept as given.

    URLs are ``scheme://...`` and git's scp-like ``[user@]host:path`` (a colon before any slash),
    unless such a name exists as a local path.
    """
    repo = str(repo).strip()
    if "://" in repo:
        return repo
    if re.match(r"^[^/]+:", repo) and not pathlib.Path(repo).expanduser().exists():
        return repo
    return str(pathlib.Path(repo).expanduser().resolve())


class GitSource:
    """One remote branch mirrored into ``cache_dir``."""

    def __init__(
        self, url: str, *, branch: str = "main", cache_dir: pathlib.Path, timeout: float = DEFAULT_TIMEOUT
    ):
        if not str(url).strip():
            raise ConfigError("repo: a repository path or URL is required")
        if str(url).startswith("-"):
            raise ConfigError(f"repo: {url!r} is not a repository path or URL")
        self._remote = normalise_url(url)
        self.url = redact_url(self._remote)
        self.branch = check_branch(branch)
        self.timeout = timeout
        digest = hashlib.sha256(self._remote.encode()).hexdigest()[:16]
        self.cache_dir = pathlib.Path(cache_dir)
        self.mirror = self.cache_dir / "git" / f"{digest}.git"
        self.scratch = self.cache_dir / "tmp"

    def __repr__(self) -> str:
        return f"GitSource({self.url!r}, branch={self.branch!r})"

    # --- errors -----------------------------------------------------------------------------

    def _error(self, what: str, exc: BaseException) -> SourceError:
        if isinstance(exc, git.GitCommandError):
            stderr = (exc.stderr or "").strip()
            if stderr.startswith("stderr:"):
                stderr = stderr[len("stderr:") :].strip().strip("'").strip()
            lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
            detail = "; ".join(lines[:3]) or f"git exited with status {exc.status}"
        else:
            detail = str(exc) or type(exc).__name__
        detail = detail.replace(self._remote, self.url)
        return SourceError(f"git source {self.url} (branch {self.branch}): {what}: {detail}")

    # --- the mirror -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _repo(self) -> Iterator[git.Repo]:
        try:
            repo = git.Repo(self.mirror)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
            raise self._error("no local mirror (fetch first)", e) from e
        try:
            yield repo
        finally:
            repo.close()

    def _open_or_init(self) -> git.Repo:
        if self.mirror.exists():
            try:
                repo = git.Repo(self.mirror)
                if repo.bare:
                    return repo
                repo.close()
            except (git.InvalidGitRepositoryError, git.NoSuchPathError):
                pass
            log.warning("git mirror is corrupt, recreating it", repo=self.url, mirror=str(self.mirror))
            shutil.rmtree(self.mirror, ignore_errors=True)
        self.mirror.parent.mkdir(parents=True, exist_ok=True)
        return git.Repo.init(self.mirror, bare=True)

    def _fetch(self, refspecs: list[str], what: str) -> None:
        try:
            repo = self._open_or_init()
        except (git.GitError, OSError) as e:
            raise self._error(f"cannot create mirror in {self.mirror}", e) from e
        try:
            repo.git.fetch(
                "--prune",
                "--no-tags",
                "--quiet",
                "--",
                self._remote,
                *refspecs,
                env=GIT_ENV,
                kill_after_timeout=self.timeout,
            )
        except git.GitCommandError as e:
            raise self._error(what, e) from e
        except (git.GitError, OSError) as e:
            raise self._error(what, e) from e
        finally:
            repo.close()

    def fetch(self) -> str:
        """Fetch the branch; returns its commit sha."""
        ref = f"refs/heads/{self.branch}"
        self._fetch([f"+{ref}:{ref}"], "fetch failed")
        return self.resolve(ref)

    def fetch_revision(self, revision: str) -> str:
        """Fetch all branches and tags, then resolve ``revision`` (branch, tag or commit sha)."""
        if not revision or revision.startswith("-"):
            raise SourceError(f"git source {self.url}: {revision!r} is not a revision")
        self._fetch(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], "fetch failed")
        return self.resolve(revision)

    def resolve(self, revision: str) -> str:
        """The full commit sha ``revision`` names in the mirror."""
        with self._repo() as repo:
            try:
                return repo.commit(revision).hexsha
            except (git.BadName, git.BadObject, ValueError, git.GitCommandError) as e:
                raise self._error(f"unknown revision {revision!r}", e) from e

    # --- reading a commit ------------------------------------------------------------------

    def read_file(self, commit: str, path: str, *, max_bytes: int = MAX_FILE_BYTES) -> bytes | None:
        """The content of ``path`` at ``commit``, or None if there is no such file."""
        with self._repo() as repo:
            try:
                tree = repo.commit(commit).tree
            except (git.BadName, git.BadObject, ValueError, git.GitCommandError) as e:
                raise self._error(f"unknown commit {commit!r}", e) from e
            try:
                item = tree / path
            except KeyError:
                return None
            if item.type != "blob":
                return None
            if item.size > max_bytes:
                raise SourceError(
                    f"git source {self.url}: {path} at {commit[:12]} is {item.size} bytes, over the {max_bytes} byte limit"
                )
            try:
                return item.data_stream.read()
            except (git.GitError, OSError, ValueError) as e:
                raise self._error(f"cannot read {path} at {commit[:12]}", e) from e

    @contextlib.contextmanager
    def exported(self, commit: str) -> Iterator[pathlib.Path]:
        """The tree of ``commit`` as files in a temporary directory, removed on exit."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        root = pathlib.Path(tempfile.mkdtemp(prefix=f"tree-{commit[:12]}-", dir=self.scratch))
        try:
            self.export(commit, root)
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def export(self, commit: str, dest: pathlib.Path) -> None:
        """Write the tree of ``commit`` into the (empty) directory ``dest``."""
        dest = pathlib.Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.scratch if self.scratch.is_dir() else None) as archive:
            with self._repo() as repo:
                try:
                    repo.git.archive(
                        "--format=tar",
                        commit,
                        output_stream=archive,
                        env=GIT_ENV,
                        kill_after_timeout=self.timeout,
                    )
                except (git.GitError, OSError) as e:
                    raise self._error(f"cannot export commit {commit[:12]}", e) from e
            archive.seek(0)
            self._extract(archive, dest, commit)

    def _extract(self, archive, dest: pathlib.Path, commit: str) -> None:
        total = files = 0
        try:
            with tarfile.open(fileobj=archive, mode="r:") as tar:
                for member in tar:
                    files += 1
                    total += member.size
                    if files > MAX_EXPORT_FILES or total > MAX_EXPORT_BYTES:
                        raise SourceError(
                            f"git source {self.url}: commit {commit[:12]} has more than "
                            f"{MAX_EXPORT_FILES} files or {MAX_EXPORT_BYTES} bytes"
                        )
                    try:
                        tar.extract(member, dest, filter="data")
                    except tarfile.FilterError as e:
                        raise SourceError(
                            f"git source {self.url}: commit {commit[:12]}: {member.name}: refused "
                            f"({type(e).__name__}: a link or path pointing outside the repository)"
                        ) from e
        except tarfile.TarError as e:
            raise SourceError(f"git source {self.url}: cannot unpack commit {commit[:12]}: {e}") from e
