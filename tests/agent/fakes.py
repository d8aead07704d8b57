"""Named test doubles for the agent: an unsealer, a hub and a sealer that run in-process."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping

import grpc

from skerry.api.v1 import hub_pb2, hub_pb2_grpc, sealer_pb2, sealer_pb2_grpc, trust_pb2, trust_pb2_grpc
from skerry.core import tls
from skerry.core.authz import peer_caller
from skerry.core.errors import NotFound, SealError


class FakeUnsealer:
    """Stands in for the sealer where none runs.

    "Sealed" values are ``base64("sealed:" + plaintext)``, so a test can
    check that the sealed form (and never the plaintext) reaches the disk.
    Names listed in ``fail`` raise ``SealError`` like a wrong-scope unseal.
    """

    PREFIX = b"sealed:"

    def __init__(self, fail: set[str] | None = None):
        self.fail = set(fail or ())
        self.calls: list[tuple[str, str, str, tuple[str, ...]]] = []

    @classmethod
    def seal(cls, plaintext: bytes | str) -> str:
        if isinstance(plaintext, str):
            plaintext = plaintext.encode()
        return base64.b64encode(cls.PREFIX + plaintext[::-1]).decode()

    def unseal(
        self, namespace: str, name: str, scope: str, encrypted_data: Mapping[str, str]
    ) -> dict[str, bytes]:
        self.calls.append((namespace, name, scope, tuple(sorted(encrypted_data))))
        if name in self.fail:
            raise SealError("cannot unseal: no key matches or the scope is wrong")
        out = {}
        for item, value in encrypted_data.items():
            raw = base64.b64decode(value)
            if not raw.startswith(self.PREFIX):
                raise SealError("cannot unseal: corrupt value")
            out[item] = raw[len(self.PREFIX) :][::-1]
        return out


def sealed_secret(
    name: str, namespace: str, items: Mapping[str, str], *, scope_annotations=None, template=None
) -> dict:
    meta = {"name": name, "namespace": namespace}
    if scope_annotations:
        meta["annotations"] = dict(scope_annotations)
    return {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": meta,
        "spec": {
            "encryptedData": {k: FakeUnsealer.seal(v) for k, v in items.items()},
            "template": template or {"metadata": {"labels": {"app": "db"}}, "type": "Opaque"},
        },
    }


# gRPC reads grpc.max_connection_idle_ms=0 as "idle at once"; tests use plain options.
_SERVER_OPTIONS = [("grpc.so_reuseport", 0)]


class _TrustFiles(trust_pb2_grpc.TrustServiceServicer):
    """``TrustService.Fetch`` over the files of a trust repository, or a tampered copy (``FakeHub.tampered``)."""

    def __init__(self, hub: FakeHub):
        self.hub = hub

    async def Fetch(self, request, context):
        if self.hub.tampered is not None:
            data = self.hub.tampered.get(request.path)
        else:
            try:
                data = self.hub.trust.repo.fetch(request.path)
            except NotFound:
                data = None
        if data is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.path} not found")
        yield trust_pb2.FetchChunk(data=data, total_size=len(data))


class FakeHub(hub_pb2_grpc.HubServiceServicer):
    """A HubService over mTLS: tests push WatchBundlesResponse events and read the reports.

    With ``trust`` (a ``TrustWorld``) it serves that repository through ``TrustService.Fetch`` as the
    hub does; ``tampered`` (path -> bytes) replaces the repository with what an attacker serves.
    """

    def __init__(self, pki, *, port: int = 0, trust=None):
        self._pki = pki
        self._port = port
        self.trust = trust
        self.tampered: dict[str, bytes] | None = None
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self.requests: list[hub_pb2.WatchBundlesRequest] = []
        self.reports: list[hub_pb2.ClusterStatus] = []
        self.peers: list[tls.Identity] = []
        self._streams: list[asyncio.Queue] = []
        self.backlog: list[hub_pb2.WatchBundlesResponse] = []  # sent to every new stream first
        self._changed = asyncio.Condition()
        self.answer_reports = asyncio.Event()  # cleared: a report is recorded, its answer held back
        self.answer_reports.set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FakeHub:
        files = self._pki.server("hub", tls.ROLE_HUB)
        self.server = grpc.aio.server(options=_SERVER_OPTIONS)
        hub_pb2_grpc.add_HubServiceServicer_to_server(self, self.server)
        if self.trust is not None:
            trust_pb2_grpc.add_TrustServiceServicer_to_server(_TrustFiles(self), self.server)
        self.port = self.server.add_secure_port(
            f"127.0.0.1:{self._port}", tls.server_credentials(files, require_client_auth=True)
        )
        await self.server.start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)

    async def _note(self):
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate, timeout: float = 20.0):
        async def _w():
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(_w(), timeout)

    async def send(self, response: hub_pb2.WatchBundlesResponse) -> None:
        """Deliver to every open stream (and remember for streams opened later)."""
        self.backlog.append(response)
        for q in list(self._streams):
            await q.put(response)

    async def WatchBundles(self, request, context):
        self.peers.append(peer_caller(context).identity)
        self.requests.append(request)
        await self._note()
        q: asyncio.Queue = asyncio.Queue()
        for item in self.backlog:
            if item.WhichOneof("event") == "bundle" and item.bundle.version <= request.last_version:
                continue
            q.put_nowait(item)
        self._streams.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._streams.remove(q)

    async def ReportStatus(self, request, context):
        self.reports.append(request.status)
        await self._note()
        await self.answer_reports.wait()
        return hub_pb2.ReportStatusResponse()


class FakeSealer(sealer_pb2_grpc.SealerServiceServicer):
    """A SealerService over mTLS backed by ``FakeUnsealer``; records the caller identity."""

    def __init__(self, pki):
        self._pki = pki
        self.unsealer = FakeUnsealer()
        self.peers: list[tls.Identity] = []
        self.requests: list[sealer_pb2.UnsealRequest] = []
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FakeSealer:
        files = self._pki.server("sealer", tls.ROLE_SEALER)
        self.server = grpc.aio.server(options=_SERVER_OPTIONS)
        sealer_pb2_grpc.add_SealerServiceServicer_to_server(self, self.server)
        self.port = self.server.add_secure_port(
            "127.0.0.1:0", tls.server_credentials(files, require_client_auth=True)
        )
        await self.server.start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)

    async def Unseal(self, request, context):
        self.peers.append(peer_caller(context).identity)
        self.requests.append(request)
        try:
            data = self.unsealer.unseal(
                request.namespace, request.name, request.scope, dict(request.encrypted_data)
            )
        except SealError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return sealer_pb2.UnsealResponse(data=data)
