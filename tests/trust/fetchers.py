"""A python-tuf fetcher over a hub trust repository in this process, for the trust tests (no gRPC)."""

from __future__ import annotations

from tuf.api import exceptions as tuf_errors

from skerry.agent.tuf_fetch import InMemoryFetcher
from skerry.core.errors import NotFound
from skerry.hub.trust.repository import TrustRepository


class RepositoryFetcher(InMemoryFetcher):
    def __init__(self, repo: TrustRepository, fetched: list[str]):
        self.repo, self.fetched, self.last_path = repo, fetched, ""

    def _fetch(self, url: str):
        path = url[len("skerry:/"):]
        self.fetched.append(path)
        self.last_path = path
        try:
            return iter([self.repo.fetch(path)])
        except NotFound:
            raise tuf_errors.DownloadHTTPError(path, 404) from None
