"""The Git source: a bare mirror of one branch, read by commit without a working tree.

With ``writes`` (the commits the hub makes), the only code that imports GitPython. The mirror lives
in the state dir (``<state dir>/git/<hash of url>.git``); it is a cache, rebuilt from the remote
whenever it is missing or corrupt. Nothing is ever checked out: files are read from the object
database, and a commit's tree is exported for rendering with ``git archive <commit>`` extracted into
a fresh temporary directory (``tarfile``'s ``data`` filter refuses absolute paths, ``..`` and links
that point outside the tree), removed when rendering is done.

Every repository handle is opened per operation and closed with it (GitPython keeps ``cat-file``
processes alive otherwise). GitPython errors become ``SourceError`` naming the repository, with
credentials removed from the URL. How the remote is reached (credentials, a git that never prompts)
is ``auth``; reading many objects at once for the incremental renderer is ``objects`` (``list_tree``,
``read_blobs`` and ``materialize`` here hand over to it). The ref followed is a branch, a tag or a
pinned commit; ``depth`` makes every fetch shallow.
"""
from __future__ import annotations

import contextlib
import hashlib
import pathlib
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping

import git
import structlog

from skerry.core.errors import ConfigError, SourceError
from skerry.core.files import DISK_FULL
from skerry.hub.config import DEFAULT_GIT_TIMEOUT, check_branch
from skerry.hub.source.auth import GIT_ENV, GitAuth, normalise_url, redact_url
from skerry.hub.source.objects import (
    MAX_EXPORT_BYTES,
    MAX_EXPORT_FILES,
    MAX_FILE_BYTES,
    SHA,
    TreeEntry,
    TreeObjects,
)

log = structlog.get_logger("skerry.hub.source")



class GitSource:
    """One remote branch mirrored into ``cache_dir``."""

    def __init__(
        self,
        url: str,
        *,
        branch: str = "main",
        cache_dir: pathlib.Path,
        timeout: float = DEFAULT_GIT_TIMEOUT,
        tag: str | None = None,
        commit: str | None = None,
        depth: int | None = None,
        auth: GitAuth | None = None,
    ):
        if not str(url).strip():
            raise ConfigError("repo: a repository path or URL is required")
        if str(url).startswith("-"):
            raise ConfigError(f"repo: {url!r} is not a repository path or URL")
        if tag is not None and commit is not None:
            raise ConfigError("git source: give a tag or a commit, not both")
        if commit is not None and not SHA.match(commit):
            raise ConfigError(f"git commit: {commit!r} must be a full 40-character commit id")
        if depth is not None and not 0 < depth <= 1_000_000:
            raise ConfigError(f"git depth: must be a positive number of commits, got {depth}")
        self.auth = auth or GitAuth()
        remote = normalise_url(url)
        if self.auth.token is not None:
            remote = redact_url(remote)  # the token goes in a header, never in the URL
        self._remote = remote
        self.url = redact_url(self._remote)
        self.branch = check_branch(branch)
        self.tag = check_branch(tag, "tag") if tag is not None else None
        self.pinned = commit
        self.depth = depth
        self.timeout = timeout
        self._env = {**GIT_ENV, **self.auth.env()}
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.cache_dir = pathlib.Path(cache_dir)
        self.mirror = self.cache_dir / "git" / f"{digest}.git"
        self.scratch = self.cache_dir / "tmp"
        self.objects = TreeObjects(self.mirror, env=self._env, timeout=timeout, url=self.url, error=self.error)

    @property
    def remote(self) -> str:
        """The remote as git is given it (``url`` is the form for messages)."""
        return self._remote

    def __repr__(self) -> str:
        return f"GitSource({self.url!r}, {self.ref_name})"

    @property
    def ref_name(self) -> str:
        """What is followed, for messages: ``branch main``, ``tag v1``, ``commit 0123abcd...``."""
        if self.pinned:
            return f"commit {self.pinned[:12]}"
        if self.tag:
            return f"tag {self.tag}"
        return f"branch {self.branch}"

    # --- errors -----------------------------------------------------------------------------

    def error(self, what: str, exc: BaseException) -> SourceError:
        if isinstance(exc, git.GitCommandError):
            stderr = (exc.stderr or "").strip()
            if stderr.startswith("stderr:"):
                stderr = stderr[len("stderr:") :].strip().strip("'").strip()
            lines = [ln.strip().strip("@").strip() for ln in stderr.splitlines()]
            lines = [ln for ln in lines if ln]
            # ssh's banner ("REMOTE HOST IDENTIFICATION HAS CHANGED", a box of '@') comes before the
            # line that says what happened; put the lines that say it first.
            key = ("Host key verification failed", "Permission denied", "fatal:", "error:")
            lines.sort(key=lambda ln: 0 if any(k in ln for k in key) else 1)
            detail = "; ".join(lines[:3]) or f"git exited with status {exc.status}"
        else:
            detail = str(exc) or type(exc).__name__
        detail = detail.replace(self._remote, self.url)
        if self.auth.token:
            detail = detail.replace(self.auth.token.strip(), "<token>")
        # the mirror lives in the hub's state: a full disk is the hub's problem, not the remote's
        reason = DISK_FULL if "No space left on device" in detail else None
        return SourceError(f"git source {self.url} ({self.ref_name}): {what}: {detail}", reason=reason)

    # --- the mirror -------------------------------------------------------------------------

    @contextlib.contextmanager
    def open_repo(self) -> Iterator[git.Repo]:
        try:
            repo = git.Repo(self.mirror)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
            raise self.error("no local mirror (fetch first)", e) from e
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
            raise self.error(f"cannot create mirror in {self.mirror}", e) from e
        try:
            shallow = [f"--depth={self.depth}"] if self.depth else []
            repo.git.fetch(
                "--prune",
                "--no-tags",
                "--quiet",
                *shallow,
                "--",
                self._remote,
                *refspecs,
                env=self._env,
                kill_after_timeout=self.timeout,
            )
        except git.GitCommandError as e:
            raise self.error(what, e) from e
        except (git.GitError, OSError) as e:
            raise self.error(what, e) from e
        finally:
            repo.close()

    def fetch(self) -> str:
        """Fetch what is followed (branch, tag or pinned commit); returns its commit sha."""
        if self.pinned:
            with contextlib.suppress(SourceError):
                if self.resolve(self.pinned) == self.pinned:
                    return self.pinned  # immutable: once here, never fetched again
            self._fetch([f"+{self.pinned}:refs/skerry/pinned"], "fetch of the pinned commit failed")
            return self.resolve(self.pinned)
        if self.tag:
            ref = f"refs/tags/{self.tag}"
            self._fetch([f"+{ref}:{ref}"], "fetch failed")
            return self.resolve(f"{ref}^{{commit}}")
        ref = f"refs/heads/{self.branch}"
        self._fetch([f"+{ref}:{ref}"], "fetch failed")
        return self.resolve(ref)

    def fetch_branch(self, branch: str) -> str:
        """Fetch ``branch`` (another than the one followed, e.g. a review branch); its tip."""
        ref = f"refs/heads/{check_branch(branch)}"
        self._fetch([f"+{ref}:{ref}"], f"fetch {branch} failed")
        return self.resolve(ref)

    def fetch_revision(self, revision: str) -> str:
        """Fetch all branches and tags, then resolve ``revision`` (branch, tag or commit sha)."""
        if not revision or revision.startswith("-"):
            raise SourceError(f"git source {self.url}: {revision!r} is not a revision")
        self._fetch(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], "fetch failed")
        return self.resolve(revision)

    def resolve(self, revision: str) -> str:
        """The full commit sha ``revision`` names in the mirror."""
        with self.open_repo() as repo:
            try:
                return repo.commit(revision).hexsha
            except (git.BadName, git.BadObject, ValueError, git.GitCommandError) as e:
                raise self.error(f"unknown revision {revision!r}", e) from e

    # --- reading a commit ------------------------------------------------------------------

    def read_file(self, commit: str, path: str, *, max_bytes: int = MAX_FILE_BYTES) -> bytes | None:
        """The content of ``path`` at ``commit``, or None if there is no such file."""
        with self.open_repo() as repo:
            try:
                tree = repo.commit(commit).tree
            except (git.BadName, git.BadObject, ValueError, git.GitCommandError) as e:
                raise self.error(f"unknown commit {commit!r}", e) from e
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
                raise self.error(f"cannot read {path} at {commit[:12]}", e) from e

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
            with self.open_repo() as repo:
                try:
                    repo.git.archive(
                        "--format=tar",
                        commit,
                        output_stream=archive,
                        env=self._env,
                        kill_after_timeout=self.timeout,
                    )
                except (git.GitError, OSError) as e:
                    raise self.error(f"cannot export commit {commit[:12]}", e) from e
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

    # --- many objects at once (the incremental renderer): ``objects`` ------------------------

    def list_tree(self, commit: str) -> dict[str, TreeEntry]:
        """Every blob, tree and submodule of ``commit`` (any revision) by path; see ``TreeObjects``."""
        return self.objects.list_tree(commit if SHA.match(commit) else self.resolve(commit))

    def read_blobs(self, oids: Iterable[str], *, max_bytes: int = MAX_EXPORT_BYTES) -> dict[str, bytes]:
        return self.objects.read_blobs(oids, max_bytes=max_bytes)

    def materialize(self, entries: Mapping[str, TreeEntry], paths: Iterable[str], dest: pathlib.Path) -> int:
        return self.objects.materialize(entries, paths, dest)

    @contextlib.contextmanager
    def scratch_dir(self, prefix: str) -> Iterator[pathlib.Path]:
        """A fresh temporary directory under the state dir, removed on exit."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        root = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=self.scratch))
        try:
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)
