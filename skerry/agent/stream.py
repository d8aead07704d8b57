"""The agent's side of the hub: the bundle watch and status reports, over grpc.aio with mutual TLS.

``HubClient.watch`` is an endless async iterator over ``WatchBundlesResponse``:
when the stream fails or ends it reconnects after an exponential backoff
with full jitter (``uniform(0, min(cap, base * 2**attempt))``), resetting
once a message arrives. Each (re)connect asks for what the caller has
verified so far (``position``), so the hub only resends what is newer.
Unary calls carry deadlines; failures become Skerry errors naming the hub.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import structlog

from skerry.api.v1 import hub_pb2, hub_pb2_grpc
from skerry.core.errors import SkerryError, Unavailable
from skerry.core.rpc import CHANNEL_OPTIONS, error_from_rpc
from skerry.core.tls import TlsFiles, channel_credentials

log = structlog.get_logger("skerry.agent.stream")


def full_jitter(attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before reconnect ``attempt`` (0-based): uniform in [0, min(cap, base * 2**attempt))."""
    return rng() * min(cap, base * (2 ** min(attempt, 32)))


class HubClient:
    def __init__(
        self,
        address: str,
        tls_files: TlsFiles,
        cluster: str,
        *,
        server_name: str | None = None,
        rpc_timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.address = address
        self.cluster = cluster
        self.peer = f"hub {address}"
        self._credentials = channel_credentials(tls_files)  # reads the files now: fail fast
        self._options = list(CHANNEL_OPTIONS)
        if server_name:
            self._options.append(("grpc.ssl_target_name_override", server_name))
        self._rpc_timeout = rpc_timeout
        self._base = backoff_base
        self._cap = backoff_cap
        self._rng = rng
        self._sleep = sleep
        self._channel: grpc.aio.Channel | None = None
        self._stub_: hub_pb2_grpc.HubServiceStub | None = None
        self.connected = False
        self.last_error: SkerryError | None = None
        self.reconnects = 0

    def _stub(self) -> hub_pb2_grpc.HubServiceStub:
        if self._stub_ is None:
            self._channel = grpc.aio.secure_channel(self.address, self._credentials, options=self._options)
            self._stub_ = hub_pb2_grpc.HubServiceStub(self._channel)
        return self._stub_

    def backoff(self, attempt: int) -> float:
        return full_jitter(attempt, base=self._base, cap=self._cap, rng=self._rng)

    async def watch(
        self,
        last_version: int = 0,
        last_digest: str = "",
        *,
        position: Callable[[], tuple[int, str]] | None = None,
    ) -> AsyncIterator[hub_pb2.WatchBundlesResponse]:
        """Bundles and render errors for this cluster, forever; reconnects on failure.

        ``position`` (if given) is asked before every (re)connect for the
        ``(version, digest)`` the caller has verified; otherwise
        ``last_version``/``last_digest`` are sent each time.
        """
        attempt = 0
        while True:
            version, digest = position() if position is not None else (last_version, last_digest)
            request = hub_pb2.WatchBundlesRequest(
                cluster=self.cluster, last_version=version, last_digest=digest
            )
            call = self._stub().WatchBundles(request)
            error: SkerryError
            try:
                async for response in call:
                    if not self.connected:
                        log.info("watching the hub", hub=self.address, last_version=version)
                    self.connected = True
                    self.last_error = None
                    attempt = 0
                    yield response
                error = Unavailable(f"{self.peer} ended the bundle stream")
            except grpc.aio.AioRpcError as e:
                error = error_from_rpc(e, self.peer)
            finally:
                call.cancel()
            self.connected = False
            self.last_error = error
            self.reconnects += 1
            delay = self.backoff(attempt)
            attempt += 1
            log.warning(
                "hub watch interrupted; reconnecting",
                hub=self.address,
                reason=error.reason,
                error=str(error),
                retry_in=round(delay, 3),
            )
            await self._sleep(delay)

    async def report(self, status: hub_pb2.ClusterStatus) -> None:
        """Send one status report (deadline ``rpc_timeout``). Raises a ``SkerryError``."""
        try:
            await self._stub().ReportStatus(
                hub_pb2.ReportStatusRequest(status=status), timeout=self._rpc_timeout
            )
        except grpc.aio.AioRpcError as e:
            raise error_from_rpc(e, self.peer) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stub_ = None
