"""gRPC plumbing shared by the hub and the sealer: the one place errors meet status codes.

* ``ErrorInterceptor`` maps ``SkerryError`` to its gRPC status (``errors.py``
  names the code per class), turns anything else into INTERNAL without
  leaking details, and binds request context (method, peer identity,
  request id) into structlog for every line logged while serving.
* ``GrpcServer`` is the bootstrap every service uses: mTLS, health service
  (NOT_SERVING first on SIGTERM, then a graceful stop with a deadline),
  reflection, message-size limits and keepalives.
* ``error_from_rpc`` is the client-side mirror: an ``AioRpcError`` becomes the
  matching ``SkerryError`` naming the peer.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import uuid
from collections.abc import Callable, Iterable

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from skerry.core import errors
from skerry.core.tls import identity_from_pem

log = structlog.get_logger("skerry.rpc")

# Largest message either side accepts. Bundles are chunked above this by the
# transport issue; 16 MiB bounds the memory one request can pin.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Keepalive pings detect dead peers behind NAT within about a minute.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    *KEEPALIVE_OPTIONS,
]
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    *KEEPALIVE_OPTIONS,
]


def status_code(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, errors.SkerryError):
        return getattr(grpc.StatusCode, exc.status, grpc.StatusCode.INTERNAL)
    return grpc.StatusCode.INTERNAL


_CODE_TO_ERROR: dict[grpc.StatusCode, type[errors.SkerryError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidInput,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
}


_HANDSHAKE_MARKERS = ("Socket closed", "handshake", "SSL", "certificate")


def error_from_rpc(exc: grpc.RpcError, peer: str) -> errors.SkerryError:
    """Translate a client-side RPC failure into a Skerry error that names the peer."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = _CODE_TO_ERROR.get(code, errors.SkerryError)
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = ""
        if any(m in (details or "") for m in _HANDSHAKE_MARKERS):
            # gRPC reports a refused TLS handshake as a closed socket; say what usually causes it
            hint = " (TLS handshake failed: check that each side's certificate is issued by a CA the other trusts)"
        details = f"cannot reach {peer}: {details}{hint}"
    else:
        details = f"{peer}: {details}"
    return cls(details)


def _peer_name(context) -> str:
    try:
        auth = context.auth_context() or {}
        pems = auth.get("x509_pem_cert")
        if pems:
            return str(identity_from_pem(pems[0]))
    except Exception:  # noqa: BLE001 - identity is only a log hint here
        pass
    return context.peer() or "unknown"


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions to status codes and binds request context into structlog."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        md = dict(handler_call_details.invocation_metadata or ())
        request_id = md.get("x-request-id") or uuid.uuid4().hex[:16]

        def bind(context):
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(rpc=method, peer=_peer_name(context), request_id=request_id)

        async def fail(context, exc: BaseException):
            if isinstance(exc, errors.SkerryError):
                log.info("rpc refused", code=exc.status, reason=exc.reason, error=str(exc))
                await context.abort(status_code(exc), str(exc))
            log.exception("rpc failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (see server log)")

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                bind(context)
                try:
                    return await inner(request, context)
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except Exception as exc:  # noqa: BLE001 - mapped to a status
                    await fail(context, exc)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def unary_stream(request, context):
                bind(context)
                try:
                    result = inner_stream(request, context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                    else:
                        await result
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except Exception as exc:  # noqa: BLE001 - mapped to a status
                    await fail(context, exc)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


class GrpcServer:
    """A grpc.aio server with mTLS, health, reflection and a graceful SIGTERM drain."""

    def __init__(
        self,
        address: str,
        credentials: grpc.ServerCredentials | None,
        *,
        register: Iterable[Callable[[grpc.aio.Server], None]],
        service_names: Iterable[str],
        grace_seconds: float = 10.0,
        options: list[tuple[str, object]] | None = None,
    ):
        self._address = address
        self._credentials = credentials
        self._grace = grace_seconds
        self._server = grpc.aio.server(interceptors=[ErrorInterceptor()], options=options or SERVER_OPTIONS)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        for reg in register:
            reg(self._server)
        self._names = list(service_names)
        reflection.enable_server_reflection([*self._names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server)
        self.port: int | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> int:
        if self._credentials is None:
            port = self._server.add_insecure_port(self._address)
        else:
            port = self._server.add_secure_port(self._address, self._credentials)
        if port == 0:
            raise errors.ConfigError(f"cannot listen on {self._address}")
        await self._server.start()
        for name in ["", *self._names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.port = port
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, then stop accepting and drain in-flight calls up to the grace period."""
        for name in ["", *self._names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.stop(self._grace if grace is None else grace)
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))

    async def wait(self) -> None:
        await self._server.wait_for_termination()
