"""Writing to a mirror: the commits the hub makes (promotion), their push, and reading them back.

A commit is built in the bare mirror without any working tree or index: changed blobs are written
with ``hash-object -w``, the trees on their paths rebuilt with ``ls-tree``/``mktree``, and
``commit-tree`` makes the commit. ``push_commit`` pushes it without force: a rejected push (the
branch moved) raises ``PushRejected`` so the caller can redo its edit on the new tip and try again.
The push authenticates like the fetch, with the same strict host-key checking.
"""

from __future__ import annotations

import pathlib
import tempfile

import git

from skerry.core.errors import SourceError
from skerry.hub.config import check_branch
from skerry.hub.source.auth import GIT_ENV, GitAuth, normalise_url
from skerry.hub.source.git import GitSource

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
    date: str | None = None,
) -> str:
    """A new commit (in the mirror, on no branch) whose tree is ``parent``'s with ``files`` replaced.

    ``date`` (Git's ``@<unix seconds> +0000``; default now) is the author and committer date: with the same
    parent, files, message, author and date the commit is the same, id included, in any mirror.

    Returns the new commit's sha. Paths are repository-relative with ``/``; every file must already
    exist at ``parent`` (the hub edits files, it does not create layout). Only the trees on the
    changed paths are rewritten (``ls-tree`` + ``mktree`` per directory level), so the cost does not
    grow with the size of the repository.
    """
    if len(message.encode()) > MAX_COMMIT_MESSAGE_BYTES:
        raise SourceError(f"git source {source.url}: commit message over {MAX_COMMIT_MESSAGE_BYTES} bytes")
    dates = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else None
    env = _commit_env(author_name, author_email, dates)
    with source.open_repo() as repo:
        try:
            commit = repo.commit(parent)
            blobs = {}
            for path, data in files.items():
                blobs[tuple(path.split("/"))] = _git_with_stdin(repo.git.hash_object, data, "-w", "--stdin", env=env)
            tree = _rewrite_tree(repo, commit.tree.hexsha, blobs, env)
            sha = _git_with_stdin(repo.git.commit_tree, message.encode(), tree, "-p", commit.hexsha, "-F", "-", env=env)
        except KeyError as e:
            raise SourceError(f"git source {source.url}: {e.args[0]} does not exist at {parent[:12]}") from e
        except (git.GitError, OSError, ValueError) as e:
            raise source.error(f"cannot commit on {parent[:12]}", e) from e
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
    return _git_with_stdin(repo.git.mktree, text.encode(), "-z", env=env).strip()


def _git_with_stdin(command, data: bytes, *args: str, env: dict[str, str]) -> str:
    """Run a GitPython ``command`` with ``data`` on its stdin (it wants a real file, not bytes)."""
    with tempfile.TemporaryFile() as stdin:
        stdin.write(data)
        stdin.seek(0)
        return command(*args, istream=stdin, env=env)


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
    remote = normalise_url(push_url) if push_url else source.remote
    if ssh_key is not None:
        extra = GitAuth(ssh_key=ssh_key, known_hosts=source.auth.known_hosts).env()
    else:
        extra = source.auth.env()
    with source.open_repo() as repo:
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
            raise source.error(f"push to {target} failed", e) from e
        except (git.GitError, OSError) as e:
            raise source.error(f"push to {target} failed", e) from e
        try:
            repo.git.update_ref(f"refs/heads/{target}", commit, env=GIT_ENV)
        except git.GitError as e:
            raise source.error(f"cannot update the mirror's {target}", e) from e


def commit_message(source: GitSource, commit: str) -> str:
    """The full message of ``commit`` in the mirror."""
    with source.open_repo() as repo:
        try:
            return repo.commit(commit).message
        except (git.BadName, git.BadObject, ValueError, git.GitCommandError) as e:
            raise source.error(f"unknown commit {commit!r}", e) from e


def is_ancestor(source: GitSource, ancestor: str, descendant: str) -> bool:
    """True if ``ancestor`` is ``descendant`` or one of its ancestors (both in the mirror)."""
    with source.open_repo() as repo:
        try:
            return repo.is_ancestor(ancestor, descendant)
        except (git.GitError, ValueError):
            return False
