"""The promotion's own Git mirror: reading an overlay's images, and committing and pushing an edit of them.

The sync loop's mirror is never written to; the promotion engine keeps a ``GitSource`` of its own and
this is the only code that writes to it, one writer at a time (``lock``, held by every caller around
these blocking calls). A commit is made without a working tree (``skerry.hub.source.writes``) on
the branch tip and pushed without force; a push that loses a race with another writer is redone on
the new tip (re-read, re-edit, re-commit), at most ``MAX_PUSH_ATTEMPTS`` times, never forced.

Commit messages: a title, a body, trailers (``Promoted-by: alice``). Their values come from YAML in
the repository, so each is folded to one line and none can forge a trailer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

import structlog

from skerry.core.errors import NotFound, SourceError, Unavailable
from skerry.hub.promotion import freight as fr
from skerry.hub.promotion.settings import PromotionSettings
from skerry.hub.source import writes
from skerry.hub.source.git import GitSource

log = structlog.get_logger("skerry.hub.promotion")

MAX_PUSH_ATTEMPTS = 8  # a busy repository may move between fetch and push; beyond this, give up
FIRST_RETRY_DELAY = 0.05  # seconds before the first redo; doubled per rejected push, with jitter
MAX_RETRY_DELAY = 2.0


def commit_message(title: str, body: Sequence[str], trailers: Sequence[tuple[str, str]]) -> str:
    """``title``, a blank line, ``body``, a blank line, ``Key: value`` trailers; every value one line."""
    lines = [" ".join(title.split()), ""]
    if body:
        lines += [" ".join(b.split()) for b in body] + [""]
    lines += [f"{k}: {' '.join(v.split())}" for k, v in trailers]
    return "\n".join(lines) + "\n"


class PromotionMirror:
    """Blocking reads and writes of the promotion's mirror; hold ``lock`` around them."""

    def __init__(self, source: GitSource):
        self.source = source
        self.lock = asyncio.Lock()  # one writer of the promotion mirror at a time
        self.push_attempts = 0  # pushes tried (tests and metrics)

    def head(self) -> str:
        """Fetch the followed branch; its tip."""
        return self.source.fetch()

    def known(self, revision: str) -> str:
        """``revision`` as a commit id, fetching every branch and tag if the mirror lacks it."""
        try:
            return self.source.resolve(revision)
        except SourceError:
            return self.source.fetch_revision(revision)

    def contains(self, commit: str, head: str) -> bool:
        """True if ``commit`` is ``head`` or one of its ancestors (``head`` fetched if need be)."""
        self.known(head)
        return writes.is_ancestor(self.source, commit, head)

    def read_images(self, revision: str, overlay: str) -> tuple[tuple[fr.Image, ...], str, bytes]:
        """(images, kustomization path, its bytes) of ``overlay`` at ``revision``."""
        for name in fr.KUSTOMIZATION_NAMES:
            path = f"{overlay}/{name}"
            data = self.source.read_file(revision, path)
            if data is not None:
                return fr.read_images(data, f"{path} at {revision[:12]}"), path, data
        raise NotFound(f"{overlay} has no kustomization at {revision[:12]}")

    def branch_tip(self, branch: str) -> str | None:
        """The tip of ``branch`` on the remote, or None if it has none (yet)."""
        try:
            return self.source.fetch_branch(branch)
        except SourceError:
            return None

    def commit(
        self,
        overlay: str,
        images: Sequence[fr.Image],
        message: str,
        branch: str | None,
        settings: PromotionSettings,
    ) -> tuple[str, str] | None:
        """Edit ``overlay``'s images on the tip, commit, push; redo on a rejected push.

        Returns (commit, the tip it was made on), or None if the tip already has these images.
        """
        delay = FIRST_RETRY_DELAY
        for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
            head = self.head()
            tip = (self.branch_tip(branch) or head) if branch and branch != self.source.branch else head
            _, path, data = self.read_images(tip, overlay)
            new = fr.set_images(data, images, path)
            if new == data:
                return None
            commit = writes.commit_files(
                self.source, tip, {path: new}, message,
                author_name=settings.author_name, author_email=settings.author_email,
            )
            try:
                self.push_attempts += 1
                writes.push_commit(self.source, commit, branch=branch, push_url=settings.push_url, ssh_key=settings.ssh_key)
                return commit, tip
            except writes.PushRejected:
                log.info("push rejected, redoing the promotion on the new tip", attempt=attempt, overlay=overlay)
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, MAX_RETRY_DELAY)
        raise Unavailable(
            f"push to {branch or self.source.branch} rejected {MAX_PUSH_ATTEMPTS} times "
            "(the branch keeps moving); try again"
        )
