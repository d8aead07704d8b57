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
the sealed form) and never put in an annotation or a status message. The
Secret is applied with server-side apply, which writes no
``last-applied-configuration`` annotation (Sealed Secrets #227).

Bundle-scoped unsealing: around each reconcile the app enters
``bundle_secrets(unsealer, verified)``. ``GrpcUnsealer`` then makes one
``UnsealBundle`` call with the TUF evidence this agent trusted (director and
release metadata, ``skerry.core.trust``) and the bundle bytes; the sealer
re-verifies them for this agent's own cluster and returns the plaintext of
exactly the SealedSecrets in that bundle, which ``unseal`` hands out (each
once) during the reconcile and which is dropped when it ends.

``Unsealer`` is the seam: ``GrpcUnsealer`` talks to the real sealer; tests
pass a fake.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import grpc
import structlog

from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
from skerry.core import sealedsecret
from skerry.core.client import all_pages, secure_channel
from skerry.core.errors import ConfigError, InvalidInput, PermissionDenied, SealError, SkerryError
from skerry.core.rpc import error_from_rpc
from skerry.core.tls import TlsFiles

log = structlog.get_logger("skerry.agent.secrets")
# The channel's own reconnect backoff is capped below the agent's first reconcile retry (2 s): the
# agent's retry is the backoff. With gRPC's default (1 s x 1.6 up to 120 s) a sealer that was down for
# half a minute was dialled again only ~30 s after it came back, and every retry in between failed
# at once on the channel's cached "connection refused".
SEALER_RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# One UnsealBundle call decrypts every item of a bundle: allow for hundreds of RSA-4096 decryptions.
BUNDLE_UNSEAL_TIMEOUT_SECONDS = 60.0

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

    accepts_hints = True

    def __init__(
        self,
        address: str,
        tls_files: TlsFiles,
        *,
        domain: str = "",
        timeout: float = 10.0,
        bundle_timeout: float = BUNDLE_UNSEAL_TIMEOUT_SECONDS,
        channel_options: Sequence[tuple[str, object]] = (),
    ):
        if not address:
            raise ConfigError("no sealer address configured")
        self.address = address
        self._domain = domain
        self._timeout = timeout
        self._bundle_timeout = bundle_timeout
        self._channel = secure_channel(address, tls_files, options=[*SEALER_RECONNECT_OPTIONS, *channel_options])
        self._stub = sealer_pb2_grpc.SealerServiceStub(self._channel)
        # The plaintext of the bundle being reconciled, per (namespace, name); None outside a reconcile.
        self._batch: dict[tuple[str, str], dict[str, bytes] | SkerryError] | None = None
        self._batch_error: SkerryError | None = None
        self._batch_lock = threading.Lock()

    def _translate(self, e) -> SkerryError:
        err = error_from_rpc(e, f"sealer {self.address}")
        if type(err) is InvalidInput:  # the sealer's SealError travels as INVALID_ARGUMENT
            err = SealError(str(err))
        return err

    def prepare_bundle(self, metadata: bytes, bundle: bytes) -> None:
        """``UnsealBundle`` for the whole bundle (every page); results are kept in memory until ``end_bundle``."""
        request = sealer_pb2.UnsealBundleRequest(metadata=metadata, bundle=bundle, domain=self._domain)
        batch: dict[tuple[str, str], dict[str, bytes] | SkerryError] = {}
        error: SkerryError | None = None
        try:
            response = all_pages(self._stub.UnsealBundle, request, "secrets", timeout=self._bundle_timeout)
        except grpc.RpcError as e:
            error = self._translate(e)
            if e.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED):
                # The sealer trusts no hub key (or predates UnsealBundle): per-secret Unseal instead;
                # the sealer's policy still decides, and its refusal carries this reason too.
                log.info("sealer refused bundle unseal; unsealing per SealedSecret", error=str(error))
                with self._batch_lock:
                    self._batch, self._batch_error = None, error
                return
            log.warning("bundle unseal failed", error=str(error))
        else:
            for s in response.secrets:
                key = (s.namespace, s.name)
                if s.error:
                    batch[key] = SealError(s.error) if s.reason == "SealError" else SkerryError(s.error, reason=s.reason or None)
                else:
                    batch[key] = dict(s.data)
        with self._batch_lock:
            self._batch = batch if error is None else {}
            self._batch_error = error

    def end_bundle(self) -> None:
        with self._batch_lock:
            self._batch, self._batch_error = None, None

    def unseal(
        self,
        namespace: str,
        name: str,
        scope: str,
        encrypted_data: Mapping[str, str],
        *,
        key_hint: str = "",
    ) -> dict[str, bytes]:
        with self._batch_lock:
            batch, batch_error = self._batch, self._batch_error
            if batch is not None:
                found = batch.pop((namespace, name), None)  # handed out once, then forgotten
        if batch is not None:
            if batch_error is not None:
                raise batch_error
            if found is None:
                raise SealError(f"the sealer's verified bundle has no SealedSecret {namespace}/{name}")
            if isinstance(found, SkerryError):
                raise found
            return found
        try:
            return self._unseal_direct(namespace, name, scope, encrypted_data, key_hint)
        except PermissionDenied as e:
            if batch_error is not None:
                raise PermissionDenied(f"{e}; bundle unseal was refused too: {batch_error}") from None
            raise

    def _unseal_direct(
        self, namespace: str, name: str, scope: str, encrypted_data: Mapping[str, str], key_hint: str
    ) -> dict[str, bytes]:
        request = sealer_pb2.UnsealRequest(
            namespace=namespace,
            name=name,
            scope=scope,
            encrypted_data=dict(encrypted_data),
            domain=self._domain,
            key_hint=key_hint,
        )
        try:
            response = self._stub.Unseal(request, timeout=self._timeout)
        except grpc.RpcError as e:
            raise self._translate(e) from None
        return dict(response.data)

    def close(self) -> None:
        self._channel.close()


class NoUnsealer:
    """Used when no sealer is configured: every SealedSecret fails, the rest of the bundle applies."""

    def unseal(
        self, namespace: str, name: str, scope: str, encrypted_data: Mapping[str, str]
    ) -> dict[str, bytes]:
        raise ConfigError("no sealer is configured for this agent (set --sealer); cannot unseal")


@contextlib.contextmanager
def bundle_secrets(
    unsealer: Unsealer | None, metadata: bytes, bundle: bytes, objects: Iterable[Mapping] | None = None
) -> Iterator[None]:
    """Scope one reconcile: bundle-wide unseal first (if the unsealer can), plaintext dropped after.

    With ``objects`` given, a bundle without SealedSecrets costs no call to the sealer.
    """
    prepare = getattr(unsealer, "prepare_bundle", None)
    if prepare is None or (objects is not None and not any(is_sealed_secret(o) for o in objects)):
        yield
        return
    prepare(metadata, bundle)
    try:
        yield
    finally:
        unsealer.end_bundle()  # type: ignore[union-attr]


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
        extra = {}
        hint = (meta.get("annotations") or {}).get(sealedsecret.ANNOTATION_KEY_ID)
        if hint and getattr(unsealer, "accepts_hints", False):
            extra["key_hint"] = str(hint)
        try:
            data = unsealer.unseal(ns, name, scope, dict(encrypted), **extra)
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
