"""A hostile hub for attack tests: a real gRPC server (mTLS, loopback) that serves scripted bundles.

It models a compromised or malicious mirror that holds a valid server
certificate but not the signing keys the agent trusts: it can replay,
reorder or forge ``SignedBundle`` messages, and it records every status
report the agent sends back. It is not a stand-in for the hub — the real
hub serves every other test.
"""

from __future__ import annotations

import asyncio
import threading

import grpc

from skerry.api.v1 import bundle_pb2, hub_pb2, hub_pb2_grpc, trust_pb2, trust_pb2_grpc
from skerry.core import tls


class _Servicer(hub_pb2_grpc.HubServiceServicer):
    def __init__(self, owner: ReplayHub):
        self.owner = owner

    async def WatchBundles(self, request, context):
        for signed in list(self.owner.script):
            yield hub_pb2.WatchBundlesResponse(bundle=signed)
        await asyncio.Event().wait()  # hold the stream open like the real hub

    async def ReportStatus(self, request, context):
        self.owner.reports.append(request.status)
        return hub_pb2.ReportStatusResponse()


class _TrustMirror(trust_pb2_grpc.TrustServiceServicer):
    """A malicious TUF mirror: serves whatever bytes the test put at each path (``ReplayHub.trust_files``)."""

    def __init__(self, owner: ReplayHub):
        self.owner = owner

    async def Fetch(self, request, context):
        self.owner.fetched.append(request.path)
        data = self.owner.trust_files.get(request.path)
        if data is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.path} not found")
        step = 1024 * 1024
        for i in range(0, max(len(data), 1), step):
            yield trust_pb2.FetchChunk(data=data[i : i + step])


class ReplayHub:
    def __init__(self, files: tls.TlsFiles):
        self.files = files
        self.script: list[bundle_pb2.SignedBundle] = []
        self.reports: list[hub_pb2.ClusterStatus] = []
        self.trust_files: dict[str, bytes] = {}  # TrustService.Fetch path -> bytes (TUF mirror attacks)
        self.fetched: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: grpc.aio.Server | None = None

    def start(self) -> ReplayHub:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self):
        self._server = grpc.aio.server()
        hub_pb2_grpc.add_HubServiceServicer_to_server(_Servicer(self), self._server)
        trust_pb2_grpc.add_TrustServiceServicer_to_server(_TrustMirror(self), self._server)
        self.port = self._server.add_secure_port("127.0.0.1:0", tls.server_credentials(self.files))
        await self._server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()  # else a ResourceWarning (unclosed event loop) in whichever test collects it
