"""The sealer's gRPC service: proto messages in and out, nothing more.

Policy, decryption and audit live in ``authz.UnsealGate``; keys in
``keys.KeyRegistry``. Errors are Skerry errors, mapped to status codes by the
interceptor in ``skerry.core.rpc``. Decryption is CPU-bound (RSA-4096), so
it runs in a worker thread to keep the event loop answering health checks.
"""

from __future__ import annotations

import asyncio

from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
from skerry.core.revocation import RevocationList
from skerry.core.tls import peer_identity
from skerry.sealer.authz import UnsealAttempt, UnsealGate
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
    def __init__(
        self, registry: KeyRegistry, gate: UnsealGate | None = None, *, revocations: RevocationList | None = None
    ):
        self._registry = registry
        self._gate = gate or UnsealGate(registry)
        self._revocations = revocations

    def _caller(self, context):
        """The verified caller; ``PermissionDenied`` naming the certificate if the hub revoked it."""
        identity = peer_identity(context)
        if self._revocations is not None:
            self._revocations.check_certificate(context.auth_context()["x509_pem_cert"][0])
        return identity

    async def GetCertificate(
        self, request: sealer_pb2.GetCertificateRequest, context
    ) -> sealer_pb2.GetCertificateResponse:
        key = self._registry.sealing_key(request.domain)
        return sealer_pb2.GetCertificateResponse(
            certificate_pem=key.cert_pem, key_id=key.key_id, domain=key.domain
        )

    async def Unseal(self, request: sealer_pb2.UnsealRequest, context) -> sealer_pb2.UnsealResponse:
        identity = self._caller(context)
        data = await asyncio.to_thread(self._gate.unseal, identity, _attempt(request))
        return sealer_pb2.UnsealResponse(data=data)

    async def UnsealBundle(
        self, request: sealer_pb2.UnsealBundleRequest, context
    ) -> sealer_pb2.UnsealBundleResponse:
        identity = self._caller(context)
        release, results = await asyncio.to_thread(
            self._gate.unseal_bundle, identity, request.metadata, request.bundle, domain=request.domain
        )
        out = []
        for r in results:
            msg = sealer_pb2.UnsealedSecret(namespace=r.namespace, name=r.name, key_ids=list(r.key_ids))
            if r.error is not None:
                msg.error, msg.reason = str(r.error), r.error.reason
            else:
                msg.data.update(r.data)
            out.append(msg)
        return sealer_pb2.UnsealBundleResponse(secrets=out, release=release)

    async def ReEncrypt(self, request: sealer_pb2.ReEncryptRequest, context) -> sealer_pb2.ReEncryptResponse:
        identity = self._caller(context)
        items, key_id, domain = await asyncio.to_thread(self._gate.re_encrypt, identity, _attempt(request))
        return sealer_pb2.ReEncryptResponse(encrypted_data=items, key_id=key_id, domain=domain)
