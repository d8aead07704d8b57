"""How the agent fetches the hub's TUF repository: python-tuf fetchers over ``TrustService.Fetch``.

``GrpcFetcher`` implements only ``FetcherInterface._fetch(url)``: URLs are
``skerry:/metadata/<file>`` and ``skerry:/targets/<path>``; a missing file
(gRPC NOT_FOUND) is a 404 ``DownloadHTTPError`` so root rotation stops at
the newest root; every fetch is capped (``skerry.core.trust.fetch_cap``).
What the agent trusts is decided in ``skerry.agent.trust``, which tells the
fetcher the timestamp version it trusts (``trusted_timestamp``): every fetch
carries it, so a hub replica whose copy is older waits for it or refuses
(``ReplicaBehind``) instead of serving metadata this agent would refuse.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import grpc
from tuf.api import exceptions as tuf_errors
from tuf.ngclient import FetcherInterface

from skerry.api.v1 import trust_pb2, trust_pb2_grpc
from skerry.core import trust
from skerry.core.client import secure_channel
from skerry.core.tls import TlsFiles

FETCH_TIMEOUT = 30.0  # seconds for one file; the largest (a 12 MiB blob) takes well under a second on a LAN
URL_PREFIX = "skerry:/"


class InMemoryFetcher(FetcherInterface):
    """A fetcher that gathers a download in memory instead of python-tuf's default temporary file.

    ``download_bytes`` is a public ``FetcherInterface`` method (the Updater
    calls it for every metadata file); this keeps its contract — the same
    ``max_length`` cap, ``DownloadLengthMismatchError`` as soon as it is
    crossed — without a temporary file on disk per fetch. Everything the
    agent downloads is capped far below memory limits (``skerry.core.trust``).
    """

    def keep(self, url: str, data: bytes) -> None:
        """Serve ``data`` — bytes this fetcher just downloaded from ``url`` — for the next download of ``url``.

        The idle check fetches the timestamp; when it changed, the Updater's own
        fetch of it a moment later gets the same bytes without a second round
        trip (python-tuf verifies them as usual).
        """
        self.__dict__.setdefault("_kept", {})[url] = data

    last_metadata: bytes = b""  # the last metadata file downloaded (what a freeze names the expiry of)
    trusted_timestamp = 0  # the timestamp version the agent trusts (0: none yet), sent with each fetch

    def download_bytes(self, url: str, max_length: int) -> bytes:
        data = self._download(url, max_length)
        if url.startswith(f"{URL_PREFIX}metadata/"):  # capped at trust.MAX_METADATA_BYTES; blobs are not kept
            self.last_metadata = data
        return data

    def _download(self, url: str, max_length: int) -> bytes:
        kept = self.__dict__.get("_kept")
        if kept and url in kept:
            data = kept.pop(url)
            if len(data) <= max_length:
                self.last_path = url[len(URL_PREFIX):]  # what ``classify`` names in an error about it
                return data
        chunks, received = [], 0
        for chunk in self.fetch(url):
            received += len(chunk)
            if received > max_length:
                raise tuf_errors.DownloadLengthMismatchError(
                    f"Downloaded {received} bytes exceeding the maximum allowed length of {max_length}")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class GrpcFetcher(InMemoryFetcher):
    """python-tuf fetcher over ``TrustService.Fetch`` (blocking; one channel per fetcher)."""

    def __init__(self, address: str, tls_files: TlsFiles | None = None, *, channel: grpc.Channel | None = None,
                 timeout: float = FETCH_TIMEOUT, options: Sequence[tuple[str, object]] = ()):
        self._channel = channel or secure_channel(address, tls_files, options=options)
        self._stub = trust_pb2_grpc.TrustServiceStub(self._channel)
        self._timeout = timeout
        self.last_path = ""

    def close(self) -> None:
        self._channel.close()

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(URL_PREFIX):
            raise tuf_errors.DownloadError(f"not a skerry trust URL: {url}")
        path = url[len(URL_PREFIX):]
        self.last_path = path
        if not trust.safe_fetch_path(path):
            raise tuf_errors.DownloadHTTPError(f"refusing to fetch {path!r}: not a repository path", 404)
        cap = trust.fetch_cap(path)
        return self._chunks(path, cap)

    def _chunks(self, path: str, cap: int) -> Iterator[bytes]:
        received = 0
        try:
            request = trust_pb2.FetchRequest(path=path, trusted_timestamp=self.trusted_timestamp)
            for chunk in self._stub.Fetch(request, timeout=self._timeout):
                if chunk.total_size > cap:
                    raise tuf_errors.DownloadLengthMismatchError(
                        f"{path}: the hub announces {chunk.total_size} bytes, over the {cap} byte cap")
                received += len(chunk.data)
                if received > cap:
                    raise tuf_errors.DownloadLengthMismatchError(f"{path}: more than the {cap} byte cap")
                yield chunk.data
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise tuf_errors.DownloadHTTPError(f"{path}: {e.details()}", 404) from e
            raise tuf_errors.DownloadError(f"{path}: {e.code().name}: {e.details()}") from e
