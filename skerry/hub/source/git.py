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


# --- writing: commits made by the hub (promotion), appended for issue 8 ---------------------
#
# A commit is built in the bare mirror without any working tree or index: changed blobs are
# written with ``hash-object -w``, the trees on their paths rebuilt with ``ls-tree``/``mktree``,
# and ``commit-tree`` makes the commit. ``push_commit`` pushes it without force: a rejected push (the branch moved) raises
# ``PushRejected`` so the caller can redo its edit on the new tip and try again.

MAX_COMMIT_MESSAGE_BYTES = 64 * 1024  # a promotion message is a summary plus trailers


class PushRejected(SourceError):
    """The remote refused the push because the branch moved (not a fast-forward)."""

    reason = "PushRejected"


def _commit_env(author_name: str, author_email: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **GIT_ENV,
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
        **(extra or {}),
    }


def commit_files(
    source: GitSource,
    parent: str,
    files: dict[str, bytes],
    message: str,
    *,
    author_name: str = "Skerry Hub",
    author_email: str = "hub@skerry.invalid",
) -> str:
    """A new commit (in the mirror, on no branch) whose tree is ``parent``'s with ``files`` replaced.

    Returns the new commit's sha. Paths are repository-relative with ``/``; every file must already
    exist at ``parent`` (the hub edits files, it does not create layout). Only the trees on the
    changed paths are rewritten (``ls-tree`` + ``mktree`` per directory level), so the cost does not
    grow with the size of the repository.
    """
    if len(message.encode()) > MAX_COMMIT_MESSAGE_BYTES:
        raise SourceError(f"git source {source.url}: commit message over {MAX_COMMIT_MESSAGE_BYTES} bytes")
    env = _commit_env(author_name, author_email)
    with source._repo() as repo:
        try:
            commit = repo.commit(parent)
            blobs = {}
            for path, data in files.items():
                blobs[tuple(path.split("/"))] = repo.git.hash_object("-w", "--stdin", istream=_BytesStdin(data), env=env)
            tree = _rewrite_tree(repo, commit.tree.hexsha, blobs, env)
            sha = repo.git.commit_tree(
                tree, "-p", commit.hexsha, "-F", "-", istream=_BytesStdin(message.encode()), env=env
            )
        except KeyError as e:
            raise SourceError(f"git source {source.url}: {e.args[0]} does not exist at {parent[:12]}") from e
        except (git.GitError, OSError, ValueError) as e:
            raise source._error(f"cannot commit on {parent[:12]}", e) from e
    return sha.strip()


def _rewrite_tree(
    repo: git.Repo, tree: str, blobs: dict[tuple[str, ...], str], env: dict[str, str], prefix: str = ""
) -> str:
    """``tree`` with the blob at each path replaced; returns the new tree's sha (KeyError: no such file)."""
    listing = repo.git.ls_tree("-z", tree, env=env)
    entries = {}  # name -> [mode, type, sha]
    for record in filter(None, listing.split("\0")):
        meta, _, name = record.partition("\t")
        mode, kind, sha = meta.split(" ")
        entries[name] = [mode, kind, sha]
    below: dict[str, dict[tuple[str, ...], str]] = {}
    for parts, blob in blobs.items():
        head = parts[0]
        entry = entries.get(head)
        if len(parts) == 1:
            if entry is None or entry[1] != "blob":
                raise KeyError(prefix + "/".join(parts))
            entry[2] = blob
        else:
            if entry is None or entry[1] != "tree":
                raise KeyError(prefix + "/".join(parts))
            below.setdefault(head, {})[parts[1:]] = blob
    for head, sub in below.items():
        entries[head][2] = _rewrite_tree(repo, entries[head][2], sub, env, f"{prefix}{head}/")
    text = "".join(f"{m} {k} {s}\t{n}\0" for n, (m, k, s) in entries.items())
    return repo.git.mktree("-z", istream=_BytesStdin(text.encode()), env=env).strip()


class _BytesStdin:
    """A file-like stdin for GitPython's ``istream`` (it wants a real file or a pipe)."""

    def __new__(cls, data: bytes):
        f = tempfile.TemporaryFile()
        f.write(data)
        f.seek(0)
        return f


def push_commit(
    source: GitSource,
    commit: str,
    *,
    branch: str | None = None,
    push_url: str | None = None,
    ssh_key: pathlib.Path | None = None,
) -> None:
    """Push ``commit`` to ``branch`` (default: the followed branch) of the remote, never forced.

    Raises ``PushRejected`` if the branch moved (not a fast-forward) and ``SourceError`` otherwise.
    On success the mirror's branch ref is moved to ``commit`` too.
    """
    target = check_branch(branch or source.branch)
    remote = normalise_url(push_url) if push_url else source._remote
    extra = {}
    if ssh_key is not None:
        extra["GIT_SSH_COMMAND"] = f"ssh -i {shlex_quote(str(ssh_key))} -o IdentitiesOnly=yes -o BatchMode=yes"
    with source._repo() as repo:
        try:
            repo.git.push(
                "--porcelain",
                "--",
                remote,
                f"{commit}:refs/heads/{target}",
                env={**GIT_ENV, **extra},
                kill_after_timeout=source.timeout,
            )
        except git.GitCommandError as e:
            text = f"{e.stdout or ''}\n{e.stderr or ''}"
            if any(w in text for w in ("[rejected]", "non-fast-forward", "fetch first", "stale info", "cannot lock ref")):
                raise PushRejected(
                    f"git source {source.url}: push to {target} rejected: the branch moved; "
                    "fetch and redo the change on the new tip"
                ) from e
            raise source._error(f"push to {target} failed", e) from e
        except (git.GitError, OSError) as e:
            raise source._error(f"push to {target} failed", e) from e
        try:
            repo.git.update_ref(f"refs/heads/{target}", commit, env=GIT_ENV)
        except git.GitError as e:
            raise source._error(f"cannot update the mirror's {target}", e) from e


def shlex_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def commit_message(source: GitSource, commit: str) -> str:
    """The full message of ``commit`` in the mirror."""
    with source._repo() as repo:
        try:
            return repo.commit(commit).message
        except (git.BadName, git.BadObject, ValueError, git.GitCommandError) as e:
            raise source._error(f"unknown commit {commit!r}", e) from e


def is_ancestor(source: GitSource, ancestor: str, descendant: str) -> bool:
    """True if ``ancestor`` is ``descendant`` or one of its ancestors (both in the mirror)."""
    with source._repo() as repo:
        try:
            return repo.is_ancestor(ancestor, descendant)
        except (git.GitError, ValueError):
            return False
