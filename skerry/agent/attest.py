"""Signed status reports: nonce from the hub, report signed with the agent's mTLS identity key.

Byte format: ``skerry.core.report``. The report carries the applied bundle
digest, release counter, health (the conditions) and a drift summary (how
many objects each reconcile action touched), so a promotion gate reading
``TrustService.GetAttestation`` sees what the agent itself vouched for.
Reports go to the hub the agent's other paths use (``core.client.Endpoints``);
an unreachable hub moves them all to another replica. Given the watch's ``channel``
(``stream.HubClient.channel``), they go over its connection: an agent then holds one
connection at its hub, not two (each is one of the hub's file descriptors, and a hub
bounds its streams by them: ``skerry.hub.admission``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from skerry.api.v1 import trust_pb2, trust_pb2_grpc
from skerry.core import report as report_format
from skerry.core.client import Endpoints, aio_secure_channel
from skerry.core.errors import Unavailable
from skerry.core.tls import TlsFiles, channel_credentials

REPORT_TIMEOUT = 10.0  # seconds per RPC; a report is a few KiB


class ReportSigner:
    def __init__(self, hub: str | Endpoints, tls_files: TlsFiles, *,
                 channel: Callable[[], tuple[str, grpc.aio.Channel]] | None = None):
        self._endpoints = hub if isinstance(hub, Endpoints) else Endpoints(hub, what="hub")
        self._shared = channel  # (address, channel) of the watch's connection; None: a channel of its own
        self._credentials = channel_credentials(tls_files)
        self._key_pem = tls_files.key.read_bytes()
        self._cert_pem = tls_files.cert.read_bytes()
        self._channel: grpc.aio.Channel | None = None
        self._address = ""

    def _stub(self) -> trust_pb2_grpc.TrustServiceStub:
        if self._shared is not None:  # the watch's: it follows the agent's hub, and the watch closes it
            self._address, channel = self._shared()
            return trust_pb2_grpc.TrustServiceStub(channel)
        if self._channel is not None and self._address != self._endpoints.current:
            self._forget()  # the agent moved to another hub
        if self._channel is None:
            self._address = self._endpoints.current
            self._channel = aio_secure_channel(self._address, self._credentials)
        return trust_pb2_grpc.TrustServiceStub(self._channel)

    def _forget(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            asyncio.ensure_future(channel.close(grace=0))

    async def send(self, result, observed_unix_ms: int) -> trust_pb2.SignedReport:
        """Ask for a nonce, sign ``result`` (a ``ReconcileResult``) with it and submit; returns what was sent."""
        stub = self._stub()
        try:
            nonce = await stub.IssueNonce(trust_pb2.IssueNonceRequest(cluster=result.cluster), timeout=REPORT_TIMEOUT)
            doc = {
                "cluster": result.cluster,
                "nonce": nonce.nonce,
                "counter": nonce.counter,
                "applied_digest": result.digest,
                "release": result.release,
                "revision": result.revision,
                "ready": result.ready,
                "health": [{"type": c.type, "status": c.status, "reason": c.reason} for c in result.conditions],
                "drift": dict(sorted(result.counts().items())),
                "observed_unix_ms": observed_unix_ms,
            }
            data, signature = report_format.sign(doc, self._key_pem)
            signed = trust_pb2.SignedReport(report=data, signature=signature, certificate=self._cert_pem)
            await stub.SubmitSignedReport(signed, timeout=REPORT_TIMEOUT)
            return signed
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                self._forget()
                self._endpoints.failed(self._address)  # the next report tries another replica
            raise Unavailable(f"signed report not delivered to hub {self._address}: {e.code().name}: {e.details()}") from e

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
