"""SealedSecret -> Secret, through the sealer.

Each ``bitnami.com/v1alpha1 SealedSecret`` in a bundle becomes a ``v1
Secret`` just before it is applied: name and namespace of the SealedSecret;
labels, annotations and ``type`` from ``spec.template``; ``data`` from the
sealer's ``Unseal``, which the agent calls over mutual TLS with its own
identity. The scope sent is the one the SealedSecret's annotations declare
(``skerry.core.sealedsecret.scope_from_annotations``); the sealer's OAEP
label check enforces it.

The plaintext exists only in memory and in the Secret sent to the API
server: it is never logged, never written to the bundle cache (which keeps
the sealed form) and never put in an annotation or a status message.

``Unsealer`` is the seam: ``GrpcUnsealer`` talks to the real sealer; tests
pass a fake.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Protocol

from skerry.core import sealedsecret
from skerry.core.errors import ConfigError, InvalidInput, SealError, SkerryError
from skerry.core.tls import TlsFiles

is_sealed_secret = sealedsecret.is_sealed_secret


class Unsealer(Protocol):
    def unseal(
        self, namespace: str, name: str, scope: str, encrypted_data: Mapping[str, str]
    ) -> dict[str, bytes]:
        """Plaintext per item of one SealedSecret; raises a ``SkerryError`` if it cannot."""
        ...


class GrpcUnsealer:
    """``Unsealer`` over the sealer's gRPC ``Unseal`` (mutual TLS, deadline per call).

    Synchronous on purpose: it is called from the reconcile worker thread,
    next to the (synchronous) Kubernetes client.
    """

    def __init__(self, address: str, tls_files: TlsFiles, *, domain: str = "", timeout: float = 10.0):
        import grpc

        from skerry.api.v1 import sealer_pb2_grpc
        from skerry.core.rpc import CHANNEL_OPTIONS
        from skerry.core.tls import channel_credentials

        if not address:
            raise ConfigError("no sealer address configured")
        self.address = address
        self._domain = domain
        self._timeout = timeout
        self._channel = grpc.secure_channel(address, channel_credentials(tls_files), options=CHANNEL_OPTIONS)
        self._stub = sealer_pb2_grpc.SealerServiceStub(self._channel)

    def unseal(
        self, namespace: str, name: str, scope: str, encrypted_data: Mapping[str, str]
    ) -> dict[str, bytes]:
        import grpc

        from skerry.api.v1 import sealer_pb2
        from skerry.core.rpc import error_from_rpc

        request = sealer_pb2.UnsealRequest(
            namespace=namespace,
            name=name,
            scope=scope,
            encrypted_data=dict(encrypted_data),
            domain=self._domain,
        )
        try:
            response = self._stub.Unseal(request, timeout=self._timeout)
        except grpc.RpcError as e:
            err = error_from_rpc(e, f"sealer {self.address}")
            if type(err) is InvalidInput:  # the sealer's SealError travels as INVALID_ARGUMENT
                err = SealError(str(err))
            raise err from None
        return dict(response.data)

    def close(self) -> None:
        self._channel.close()


class NoUnsealer:
    """Used when no sealer is configured: every SealedSecret fails, the rest of the bundle applies."""

    def unseal(
        self, namespace: str, name: str, scope: str, encrypted_data: Mapping[str, str]
    ) -> dict[str, bytes]:
        raise ConfigError("no sealer is configured for this agent (set --sealer); cannot unseal")


def secret_from_sealed(
    sealed: Mapping[str, Any], unsealer: Unsealer, *, namespace: str | None = None
) -> dict:
    """The ``v1 Secret`` for one SealedSecret. Raises ``SealError``/``SkerryError`` on failure.

    ``namespace`` overrides an empty ``metadata.namespace`` (the engine
    resolves the default namespace before calling).
    """
    meta = sealed.get("metadata") or {}
    name = str(meta.get("name") or "")
    ns = str(meta.get("namespace") or namespace or "")
    if not name or not ns:
        raise SealError("a SealedSecret needs metadata.name and metadata.namespace")
    spec = sealed.get("spec") or {}
    encrypted = spec.get("encryptedData") or {}
    if not isinstance(encrypted, Mapping) or not all(isinstance(v, str) for v in encrypted.values()):
        raise SealError(f"SealedSecret {ns}/{name}: spec.encryptedData must map item names to base64 strings")
    template = spec.get("template") or {}
    tmeta = template.get("metadata") or {}
    # As upstream: the scope is declared on the SealedSecret itself, not on its template.
    scope = sealedsecret.scope_from_annotations(meta.get("annotations") or {})
    data: dict[str, bytes] = {}
    if encrypted:
        try:
            data = unsealer.unseal(ns, name, scope, dict(encrypted))
        except SkerryError as e:
            raise type(e)(f"cannot unseal SealedSecret {ns}/{name}: {e}", reason=e.reason) from None
        missing = set(encrypted) - set(data)
        if missing:
            raise SealError(
                f"the sealer returned no value for item(s) {', '.join(sorted(missing))} of {ns}/{name}"
            )
    secret_meta: dict[str, Any] = {"name": name, "namespace": ns}
    labels = dict(tmeta.get("labels") or {})
    annotations = dict(tmeta.get("annotations") or {})
    if labels:
        secret_meta["labels"] = labels
    if annotations:
        secret_meta["annotations"] = annotations
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": secret_meta,
        "type": str(template.get("type") or "Opaque"),
        "data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items()},
    }
    if "immutable" in template:
        secret["immutable"] = bool(template["immutable"])
    return secret
