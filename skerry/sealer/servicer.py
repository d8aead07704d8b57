"""The sealer's gRPC service: proto messages in and out, nothing more.

Who may call what is ``authz.RULES``, enforced by the server's interceptor
before any code here runs; decryption and audit live in ``authz.UnsealGate``;
keys in ``keys.KeyRegistry``. Errors are Skerry errors, mapped to status codes by the
interceptor in ``skerry.core.rpc``. Decryption is CPU-bound (RSA-4096), so
it runs in a worker thread to keep the event loop answering health checks.
"""

from __future__ import annotations

import asyncio

from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
from skerry.core.authz import identity
from skerry.core.documents import clip
from skerry.sealer.authz import MAX_RESULT_ERROR_CHARS, UnsealAttempt, UnsealGate
from skerry.sealer.keys import KeyRegistry


def _attempt(request) -> UnsealAttempt:
    return UnsealAttempt(
        namespace=request.namespace,
        name=request.name,
        scope=request.scope,
        domain=request.domain,
        encrypted_data=dict(request.encrypted_data),
        key_hint=request.key_hint,
    )


class SealerServicer(sealer_pb2_grpc.SealerServiceServicer):
    def __init__(self, registry: KeyRegistry, gate: UnsealGate | None = None):
        self._registry = registry
        self._gate = gate or UnsealGate(registry)

    async def GetCertificate(
        self, request: sealer_pb2.GetCertificateRequest, context
    ) -> sealer_pb2.GetCertificateResponse:
        key = self._registry.sealing_key(request.domain)
        return sealer_pb2.GetCertificateResponse(
            certificate_pem=key.cert_pem, key_id=key.key_id, domain=key.domain
        )

    async def Unseal(self, request: sealer_pb2.UnsealRequest, context) -> sealer_pb2.UnsealResponse:
        data = await asyncio.to_thread(self._gate.unseal, identity(), _attempt(request))
        return sealer_pb2.UnsealResponse(data=data)

    async def UnsealBundle(
        self, request: sealer_pb2.UnsealBundleRequest, context
    ) -> sealer_pb2.UnsealBundleResponse:
        page = await asyncio.to_thread(
            self._gate.unseal_bundle, identity(), request.metadata, request.bundle, domain=request.domain,
            page_token=request.page_token,
        )
        out = []
        for r in page.results:
            msg = sealer_pb2.UnsealedSecret(namespace=r.namespace, name=r.name, key_ids=list(r.key_ids))
            if r.error is not None:
                msg.error, msg.reason = clip(str(r.error), MAX_RESULT_ERROR_CHARS), r.error.reason
            else:
                msg.data.update(r.data)
            out.append(msg)
        return sealer_pb2.UnsealBundleResponse(secrets=out, release=page.release, next_page_token=page.next_page_token)

    async def ReEncrypt(self, request: sealer_pb2.ReEncryptRequest, context) -> sealer_pb2.ReEncryptResponse:
        items, key_id, domain = await asyncio.to_thread(self._gate.re_encrypt, identity(), _attempt(request))
        return sealer_pb2.ReEncryptResponse(encrypted_data=items, key_id=key_id, domain=domain)
