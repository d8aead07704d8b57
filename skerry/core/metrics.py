"""Prometheus metrics shared by every service: one registry per process, a small ops HTTP server.

Why here: the hub, the agent and the sealer all expose the same kind of
endpoint and the same gRPC server metrics, and ``prometheus_client`` gets
one home module (services build their own families on the registry this
module hands them, in ``skerry/<service>/metrics.py``).

* ``new_registry()`` - the process's ``CollectorRegistry`` (with process and
  platform collectors), created by the composition root and passed down.
* ``OpsServer`` - plaintext HTTP on a configured address (off unless the
  service is given one; ``127.0.0.1`` by default in the examples) serving
  ``/metrics`` (text exposition), ``/healthz`` (liveness) and ``/readyz``
  (readiness, from a callback). It never serves anything secret: metrics
  carry cluster names, digests and counts only. This is also the port the
  kubelet probes, since the gRPC ports speak mutual TLS only.
* ``GrpcMetricsInterceptor`` - per-method handled counts by status code,
  handling time, open streams and the distinct peers holding a stream; and
  one JSON log line per finished request (method, peer, cluster, bundle
  digest, code, duration), with request context bound by the error
  interceptor that runs outside it.
* ``Refusals`` - ``skerry_refusals_total{service,reason}``: every named refusal
  (``SkerryError.reason``) a service answers or logs, counted at the one place
  the service turns refusals into an answer (``rpc.ErrorInterceptor`` for the
  gRPC servers, the agent's bundle refusal), so no call site counts its own.
"""

from __future__ import annotations

import asyncio
import http.server
import inspect
import re
import threading
import time
from collections import Counter as _Counter
from collections.abc import Callable

import grpc
import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from skerry.core import errors
from skerry.core.peers import parse_listen

log = structlog.get_logger("skerry.requests")

# Buckets for request, render and reconcile durations: 5 ms .. 5 min.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# A refusal's reason is a label: reasons are named in code (``reason = "AliasBudget"``), but one built from
# outside input must not grow the label set without bound, so only a short CamelCase word is a reason.
MAX_REASON_CHARS = 48
_REASON = re.compile(rf"[A-Z][A-Za-z0-9]{{0,{MAX_REASON_CHARS - 1}}}")
# The reason counted for an error that has no (valid) name: an alert on it finds hostile input not yet named.
UNCLASSIFIED = "Unclassified"
# The ops server reads no request body; a request line + headers larger than this is refused.
MAX_REQUEST_LINE = 8192
# A scrape that has not sent its request within this long is dropped (slowloris bound).
OPS_SOCKET_TIMEOUT_SECONDS = 10.0

__all__ = [
    "CollectorRegistry",
    "Counter",
    "DURATION_BUCKETS",
    "Gauge",
    "GrpcMetricsInterceptor",
    "Histogram",
    "OpsServer",
    "Refusals",
    "new_registry",
    "parse_listen",
]


def new_registry() -> CollectorRegistry:
    """A fresh registry for one process (or one in-process service in tests)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


# Collectors read live service state from this (scrape) thread while the event loop may be changing it;
# a "changed size during iteration" is retried this many times before the scrape fails.
COLLECT_ATTEMPTS = 3


def _collect(registry: CollectorRegistry) -> bytes:
    for attempt in range(COLLECT_ATTEMPTS):
        try:
            return generate_latest(registry)
        except RuntimeError:
            if attempt == COLLECT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


class _OpsHandler(http.server.BaseHTTPRequestHandler):
    server_version = "skerry-ops"
    sys_version = ""
    timeout = OPS_SOCKET_TIMEOUT_SECONDS

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        ops: OpsServer = self.server.ops  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body = _collect(ops.registry)
            except Exception:  # noqa: BLE001 - a broken collector must not kill the endpoint
                structlog.get_logger("skerry.metrics").exception("metrics collection failed")
                return self._send(500, b"metrics collection failed\n")
            return self._send(200, body, CONTENT_TYPE_LATEST)
        if path == "/healthz":
            return self._send(200, b"ok\n")
        if path == "/readyz":
            ready, why = ops.readiness()
            return self._send(200 if ready else 503, (why or ("ready" if ready else "not ready")).encode() + b"\n")
        self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - scrapes are not worth a log line each
        return


class OpsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` over plaintext HTTP, in a daemon thread."""

    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        *,
        readiness: Callable[[], tuple[bool, str]] | None = None,
    ):
        self.listen = listen
        self.registry = registry
        self._readiness = readiness
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def readiness(self) -> tuple[bool, str]:
        if self._readiness is None:
            return True, "ready"
        try:
            return self._readiness()
        except Exception as e:  # noqa: BLE001 - a failing check is "not ready", with why
            return False, f"readiness check failed: {type(e).__name__}"

    def start(self) -> int:
        host, port = parse_listen(self.listen)
        try:
            httpd = http.server.ThreadingHTTPServer((host, port), _OpsHandler)
        except OSError as e:
            raise errors.ConfigError(f"cannot listen on {self.listen} for metrics: {e.strerror}") from e
        httpd.daemon_threads = True
        httpd.ops = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, name="skerry-ops", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def _request_fields(request) -> dict[str, str]:
    """Cluster and bundle digest named by a request, if it names them (never any other field)."""
    out: dict[str, str] = {}
    for holder in (request, getattr(request, "status", None)):
        if holder is None:
            continue
        for field, key in (("cluster", "cluster"), ("last_digest", "digest"), ("applied_digest", "digest")):
            value = getattr(holder, field, None)
            if isinstance(value, str) and value and key not in out:
                out[key] = value[:256]
    return out


class GrpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts, times and logs every RPC; tracks open server streams and the peers holding them.

    Runs inside ``ErrorInterceptor`` (so request context is bound and
    exceptions are still Skerry errors here, mapped to codes the same way).
    """

    def __init__(self, registry: CollectorRegistry, *, peer_of: Callable[[object], str] | None = None):
        self._handled = Counter(
            "skerry_grpc_server_handled_total",
            "RPCs completed on the server, by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self._seconds = Histogram(
            "skerry_grpc_server_handling_seconds",
            "Time from RPC start to its end (streams: how long they stayed open).",
            ["method"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._open = Gauge(
            "skerry_grpc_server_streams_open", "Server streams open now, by method.", ["method"], registry=registry
        )
        self._peer_of = peer_of or (lambda context: context.peer() or "unknown")
        self._peers: dict[str, _Counter[str]] = {}

    def peers(self, method: str) -> int:
        """How many distinct peers hold at least one open stream of ``method``."""
        return len(self._peers.get(method, ()))

    def holders(self, method: str) -> set[str]:
        """The peers holding an open stream of ``method`` now."""
        return set(self._peers.get(method, ()))

    def streams(self, method: str) -> int:
        return sum(self._peers.get(method, _Counter()).values())

    def _code(self, exc: BaseException | None, context) -> str:
        if exc is None:
            return "OK"
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            return "CANCELLED"
        if isinstance(exc, grpc.aio.AbortError):
            code = context.code() if hasattr(context, "code") else None
            return getattr(code, "name", "UNKNOWN") if code is not None else "UNKNOWN"
        if isinstance(exc, errors.SkerryError):
            return exc.status
        return "INTERNAL"

    def _done(self, method: str, request, context, started: float, exc: BaseException | None) -> None:
        seconds = time.monotonic() - started
        code = self._code(exc, context)
        self._handled.labels(method, code).inc()
        self._seconds.labels(method).observe(seconds)
        if structlog.is_configured():  # services configure logging; in-process library use stays quiet
            log.info("request", method=method, code=code, duration_ms=round(seconds * 1000, 2),
                     **_request_fields(request))

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                started = time.monotonic()
                exc: BaseException | None = None
                try:
                    return await inner(request, context)
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    self._done(method, request, context, started, exc)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def unary_stream(request, context):
                started = time.monotonic()
                peer = self._peer_of(context)
                holders = self._peers.setdefault(method, _Counter())
                holders[peer] += 1
                self._open.labels(method).inc()
                exc: BaseException | None = None
                try:
                    result = inner_stream(request, context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                    else:
                        await result
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    self._open.labels(method).dec()
                    holders[peer] -= 1
                    if holders[peer] <= 0:
                        del holders[peer]
                    self._done(method, request, context, started, exc)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


class Refusals:
    """``skerry_refusals_total{service,reason}``: the one counter of refusals, one per service process.

    ``count`` takes the error a refusal is made of: a ``SkerryError`` counts under its ``reason``; anything
    else (or a reason that is not a short CamelCase name) under ``Unclassified``. Each service hands
    ``count`` to the one place it turns refusals into answers, never to the sites that raise them.
    """

    def __init__(self, registry: CollectorRegistry, service: str):
        self.service = service
        self._counter = Counter(
            "skerry_refusals_total",
            "Requests and inputs refused, by service and named reason (Unclassified: an error with no name).",
            ["service", "reason"],
            registry=registry,
        )

    def count(self, error: BaseException) -> None:
        self.count_reason(getattr(error, "reason", "") if isinstance(error, errors.SkerryError) else "")

    def count_reason(self, reason: str) -> None:
        self._counter.labels(self.service, reason if _REASON.fullmatch(reason or "") else UNCLASSIFIED).inc()
