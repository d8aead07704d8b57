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

Reading many objects (the incremental renderer): ``list_tree`` is one
``git ls-tree -r -t -z`` (every blob and tree id of a commit, ~10 ms for
10k entries) and ``read_blobs`` streams ids through one ``git cat-file
--batch`` (GitPython's per-object reads are ~20x slower); ``materialize``
writes just the files a render needs into a scratch directory.

Credentials (``GitAuth``): an SSH deploy key is used with ``IdentitiesOnly``
and strict host-key checking against the given ``known_hosts`` (never
trust-on-first-use); an HTTPS token is sent as an ``Authorization`` header
through ``GIT_CONFIG_*`` environment variables, so it is never in a URL,
never on a command line (``ps``), never in the mirror's config on disk and
never in a log line. The ref followed is a branch, a tag or a pinned
commit; ``depth`` makes every fetch shallow.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

import git
import structlog

from skerry.core.errors import ConfigError, SourceError
from skerry.core.files import DISK_FULL
from skerry.hub.config import check_branch

log = structlog.get_logger("skerry.hub.source")

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
DEFAULT_TIMEOUT = 300.0
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_EXPORT_BYTES = 1024 * 1024 * 1024
MAX_EXPORT_FILES = 100_000
# One tree listing: more entries than any export may have files (trees included), with room to spare.
MAX_TREE_ENTRIES = 4 * MAX_EXPORT_FILES
_SHA = re.compile(r"^[0-9a-f]{40}$")


class TreeEntry(NamedTuple):
    """One ``ls-tree`` line: ``mode`` (e.g. 100644, 120000 for a link, 040000), ``type``, object id.

    A named tuple, not a dataclass: a listing makes one per file, and tuples are cheap to create.
    """

    mode: str
    type: str  # blob, tree or commit (a submodule)
    oid: str


@dataclasses.dataclass(frozen=True)
class GitAuth:
    """How to authenticate to the remote. ``repr`` never shows the token."""

    ssh_key: pathlib.Path | None = None
    known_hosts: pathlib.Path | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    token_user: str = "x-access-token"  # GitHub's convention; GitLab accepts any user with a token

    def __post_init__(self) -> None:
        if self.ssh_key is not None and self.known_hosts is None:
            raise ConfigError(
                "git ssh key: a known_hosts file is required (host keys are checked, never trusted on first use)"
            )
        if self.token is not None and (not self.token.strip() or any(c in self.token for c in "\r\n")):
            raise ConfigError("git token: must be one non-empty line")

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.ssh_key is not None:
            ssh = [
                "ssh",
                "-F", "/dev/null",
                "-i", str(self.ssh_key),
                "-o", "IdentitiesOnly=yes",
                "-o", "IdentityAgent=none",
                "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=30",
            ]  # fmt: skip
            env["GIT_SSH_COMMAND"] = shlex.join(ssh)
            env["GIT_SSH_VARIANT"] = "ssh"
        if self.token is not None:
            basic = base64.b64encode(f"{self.token_user}:{self.token.strip()}".encode()).decode()
            env["GIT_CONFIG_COUNT"] = "1"
            env["GIT_CONFIG_KEY_0"] = "http.extraHeader"
            env["GIT_CONFIG_VALUE_0"] = f"Authorization: Basic {basic}"
        return env


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
        self,
        url: str,
        *,
        branch: str = "main",
        cache_dir: pathlib.Path,
        timeout: float = DEFAULT_TIMEOUT,
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
        if commit is not None and not _SHA.match(commit):
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
        self._listing: tuple[str, dict[str, TreeEntry]] | None = None  # the last commit listed
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.cache_dir = pathlib.Path(cache_dir)
        self.mirror = self.cache_dir / "git" / f"{digest}.git"
        self.scratch = self.cache_dir / "tmp"

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

    def _error(self, what: str, exc: BaseException) -> SourceError:
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
            raise self._error(what, e) from e
        except (git.GitError, OSError) as e:
            raise self._error(what, e) from e
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
                        env=self._env,
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

    # --- many objects at once (the incremental renderer) ------------------------------------

    def _git(self, *args: str) -> list[str]:
        return ["git", f"--git-dir={self.mirror}", *args]

    def list_tree(self, commit: str) -> dict[str, TreeEntry]:
        """Every blob, tree and submodule of ``commit`` by path.

        '' is the root; its ``oid`` is a digest of the listing (not Git's tree id, which would cost a
        second process), so it too changes exactly when the tree does.
        """
        if not _SHA.match(commit):
            commit = self.resolve(commit)
        last = self._listing
        if last is not None and last[0] == commit:
            return last[1]
        try:
            proc = subprocess.run(
                self._git("ls-tree", "-r", "-t", "-z", "--full-tree", commit),
                capture_output=True,
                timeout=self.timeout,
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
            if not _SHA.match(oid):
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

    @contextlib.contextmanager
    def scratch_dir(self, prefix: str) -> Iterator[pathlib.Path]:
        """A fresh temporary directory under the state dir, removed on exit."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        root = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=self.scratch))
        try:
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)

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

    The push authenticates like the fetch (the source's deploy key or token) with the same strict
    host-key checking; a separate ``ssh_key`` (a write deploy key) is checked against the source's
    ``known_hosts``, and is refused without one — never trust-on-first-use.
    """
    target = check_branch(branch or source.branch)
    remote = normalise_url(push_url) if push_url else source._remote
    if ssh_key is not None:
        extra = GitAuth(ssh_key=ssh_key, known_hosts=source.auth.known_hosts).env()
    else:
        extra = source.auth.env()
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
