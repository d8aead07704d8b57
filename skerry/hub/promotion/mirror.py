"""The promotion's own Git mirror: reading an overlay's images, and committing and pushing an edit of them.

The sync loop's mirror is never written to; the promotion engine keeps a ``GitSource`` of its own and
this is the only code that writes to it, one writer at a time (``lock``, held by every caller around
these blocking calls). A commit is made without a working tree (``skerry.hub.source.writes``) on
the branch tip and pushed without force; a push that loses a race with another writer is redone on
the new tip (re-read, re-edit, re-commit), at most ``MAX_PUSH_ATTEMPTS`` times, never forced.

Before each push the caller hears of the exact commit about to be pushed (``before_push``, a
``Prepared``: its id, its parent, the branch, and all it takes to make it again, date included), so it
can store that in the hub state first. ``finish`` settles such a commit later, in this or another
process, by asking the remote: there already, pushed now (made again, the same id) if the branch still
ends at its parent, or never (the branch moved past its parent: a push is never forced).

Commit messages: a title, a body, trailers (``Promoted-by: alice``). Their values come from YAML in
the repository, so each is folded to one line and none can forge a trailer.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A commit made and about to be pushed: enough to know it on the remote, and to make it again."""

    commit: str  # its id
    parent: str  # the branch tip it was made on
    branch: str  # where it is pushed
    path: str  # the one file it changes ...
    content: bytes  # ... to these bytes
    message: str
    author_name: str
    author_email: str
    date: str  # author and committer date, Git's ``@<unix seconds> +0000``

    def to_doc(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["content"] = base64.b64encode(self.content).decode()
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Prepared:
        return cls(**{**doc, "content": base64.b64decode(doc["content"])})


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
        before_push: Callable[[Prepared], None] = lambda prepared: None,
    ) -> tuple[str, str] | None:
        """Edit ``overlay``'s images on the tip, commit, push; redo on a rejected push.

        ``before_push`` hears of each commit before it is pushed; if it raises, nothing is pushed.
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
            prepared = self._prepare(tip, branch or self.source.branch, path, new, message, settings)
            before_push(prepared)
            try:
                self._push(prepared, settings)
                return prepared.commit, tip
            except writes.PushRejected:
                log.info("push rejected, redoing the promotion on the new tip", attempt=attempt, overlay=overlay)
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, MAX_RETRY_DELAY)
        raise Unavailable(
            f"push to {branch or self.source.branch} rejected {MAX_PUSH_ATTEMPTS} times "
            "(the branch keeps moving); try again"
        )

    def _prepare(self, parent: str, branch: str, path: str, content: bytes, message: str,
                 settings: PromotionSettings) -> Prepared:
        prepared = Prepared("", parent, branch, path, content, message, settings.author_name,
                            settings.author_email, f"@{int(time.time())} +0000")
        return dataclasses.replace(prepared, commit=self._make(prepared))

    def _make(self, prepared: Prepared) -> str:
        return writes.commit_files(
            self.source, prepared.parent, {prepared.path: prepared.content}, prepared.message,
            author_name=prepared.author_name, author_email=prepared.author_email, date=prepared.date,
        )

    def _push(self, prepared: Prepared, settings: PromotionSettings) -> None:
        self.push_attempts += 1
        branch = None if prepared.branch == self.source.branch else prepared.branch
        writes.push_commit(self.source, prepared.commit, branch=branch, push_url=settings.push_url,
                           ssh_key=settings.ssh_key)

    def finish(self, prepared: Prepared, settings: PromotionSettings) -> bool:
        """True if ``prepared`` is on its branch of the remote, pushed now if the branch still ends at its
        parent (made again here: the same id); False if it never can be (the branch moved past its parent)."""
        for _ in range(2):  # a push rejected here: the branch moved meanwhile (maybe by this very commit)
            tip = self._tip(prepared.branch)
            if self._on(prepared, tip):
                return True
            if tip != prepared.parent and not (tip is None and prepared.parent == self.head()):
                return False
            self.known(prepared.parent)
            made = self._make(prepared)
            if made != prepared.commit:
                raise SourceError(f"git source {self.source.url}: {prepared.commit[:12]} made again is {made[:12]}; "
                                  "not pushed")
            try:
                self._push(prepared, settings)
                return True
            except writes.PushRejected:
                log.info("push of a commit left by a previous writer rejected; asking again",
                         commit=prepared.commit[:12])
        return self.has(prepared)

    def has(self, prepared: Prepared) -> bool:
        """True if ``prepared`` is on its branch of the remote."""
        return self._on(prepared, self._tip(prepared.branch))

    def _on(self, prepared: Prepared, tip: str | None) -> bool:
        return tip is not None and (tip == prepared.commit or self.contains(prepared.commit, tip))

    def _tip(self, branch: str) -> str | None:
        return self.branch_tip(branch) if branch != self.source.branch else self.head()
