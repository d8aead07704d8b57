"""gRPC plumbing shared by the hub and the sealer: the one place errors meet status codes.

* ``ErrorInterceptor`` maps ``SkerryError`` to its gRPC status (``errors.py``
  names the code per class), turns anything else into INTERNAL without
  leaking details, and binds request context (method, peer identity,
  request id) into structlog for every line logged while serving.
* ``GrpcServer`` is the bootstrap every service uses: mTLS, health service
  (NOT_SERVING first on SIGTERM, then a graceful stop with a deadline),
  reflection, message-size limits and keepalives, and the authorisation
  interceptor (``skerry.core.authz``): a server is built with the table of
  who may call each of its RPCs, and refuses to start if one has no rule.
  ``server_options`` adds a maximum connection age (the hub's, so agents rebalance).
  ``count_refusal`` (the service's ``metrics.Refusals.count``) sees every error the server answers; a
  ``ResourceExhausted`` that knows its ``retry_after`` carries it as gRPC's pushback trailer.
* ``error_from_rpc`` is the client-side mirror: an ``AioRpcError`` becomes the
  matching ``SkerryError`` naming the peer.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from skerry.core import errors, pushback
from skerry.core.authz import (
    AuthzInterceptor,
    Refusal,
    Revocations,
    Rule,
    caller_from_pem,
    server_rules,
    uncovered,
)
from skerry.core.peers import (
    KEEPALIVE_TIME_MS,
    KEEPALIVE_TIMEOUT_MS,
    MIN_KEEPALIVE_SECONDS,
    SERVER_KEEPALIVE_TIME_MS,
    SERVER_KEEPALIVE_TIMEOUT_MS,
    SERVER_MIN_PING_INTERVAL_MS,
    SIGTERM_DRAIN_SECONDS,
)
from skerry.core.tls import ROLE_AGENT

log = structlog.get_logger("skerry.rpc")

# Largest message either side accepts: 16 MiB bounds the memory one request can
# pin. Bundles above BUNDLE_CHUNK_BYTES travel as chunks, so no bundle needs it.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Bundle bytes per chunk on WatchBundles: well under MAX_MESSAGE_BYTES, small
# enough that a stream to a slow agent pins at most ~1 MiB at a time.
BUNDLE_CHUNK_BYTES = 1024 * 1024
# RPCs one server runs at once (grpc.aio `maximum_concurrent_rpcs`; beyond it
# callers get RESOURCE_EXHAUSTED): 10,000 agents x (1 watch + 1 report) plus headroom.
MAX_CONCURRENT_RPCS = 25_000
# HTTP/2 streams per connection: an agent needs 2 (watch + report); 100 stops
# one connection from occupying the whole MAX_CONCURRENT_RPCS budget.
MAX_STREAMS_PER_CONNECTION = 100
# A connection with no RPC for this long is closed (probes, half-enrolled
# clients); agents always hold a watch, so they are never idle.
MAX_CONNECTION_IDLE_MS = 5 * 60 * 1000
# Calls that arrived but that grpc.aio has not picked up yet. gRPC core drops calls from this
# backlog at random above a soft limit (default 1,000) and all above a hard one (default 3,000):
# that is why 5,000 streams opened at once "stalled at ~3,300" (the rest were CANCELLED). A
# reconnect storm of 10,000 agents must queue, not be cancelled and come back for another TLS
# handshake; the backlog costs a few hundred bytes per call and is bounded by MAX_CONCURRENT_RPCS.
MAX_PENDING_CALLS = 20_000
MAX_PENDING_CALLS_HARD = MAX_CONCURRENT_RPCS
# TLS record size gRPC's frame protector buffers per connection (default 16 KiB). 1 KiB is the
# lower bound gRPC accepts (TSI_SSL_MAX_PROTECTED_FRAME_SIZE_LOWER_BOUND) and saves ~7.5 KiB of hub
# memory per agent connection; bench/fleet.py measured no fan-out cost (1000 agents, 100 KiB bundle:
# 0.88 s at 1 KiB vs 1.01 s at 16 KiB). What each gRPC knob buys per connection is measured by
# bench/grpc_memory.py: the rest of a TLS connection's ~49 KiB is BoringSSL's BIO pair (2 x 17 KiB,
# sizes hard-coded in gRPC, no option) and is not tunable from here.
TLS_MAX_FRAME_BYTES = 1024
# Per-identity request rate (token bucket): an agent makes a handful of calls
# per reconcile; 5/s sustained with bursts of 20 lets every legitimate pattern
# through and stops one broken or hostile client from starving the other 9,999.
RATE_PER_SECOND = 5.0
RATE_BURST = 20.0
# Identities tracked by the rate limiter (LRU): bounds its memory to ~2 MiB.
RATE_MAX_KEYS = 20_000
# Trailing metadata key that carries a refused call's reason (``SkerryError.reason``) to the client.
REASON_METADATA = "skerry-reason"
# Keepalive timing (KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS and the servers' ping limit) is core.peers',
# where settings check it without importing gRPC.
# gRPC core (1.5x+) waits for a ping's ack for ``grpc.http2.ping_timeout_ms`` (default 60 s), whatever
# ``keepalive_timeout_ms`` says: without it a blackholed peer was noticed after 30 s + 60 s, and with a
# 6 s keepalive after 64 s (tests/faults/test_net_blackhole.py). Both are set, to the same value.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]
def merge_options(*option_lists) -> list[tuple[str, object]]:
    """One list of channel options, a later list's value replacing an earlier one's.

    gRPC keeps the *first* of two options with the same key, so appending an override is silently lost.
    """
    merged: dict[str, object] = {}
    for options in option_lists:
        for key, value in options or ():
            merged.pop(key, None)
            merged[key] = value
    return list(merged.items())


# Maximum age of a hub connection to an agent: past it the server sends GOAWAY, and the agent dials
# again — through a Service, wherever the balancer sends it now — so a hub tier that scaled out takes
# its share of an already connected fleet within one age. gRPC core jitters each connection's age by
# +-10 % (kMaxConnectionAgeJitter in src/core/ext/filters/channel_idle/legacy_channel_idle_filter.cc,
# grpcio 1.85), so a fleet connected at once is not retired at once. 30 minutes: 10,000 agents then
# reconnect at about 6 per second in all, each a TLS handshake and a watch request that re-sends no
# bundle (it carries the agent's position and held blob), against a rebalance within half an hour.
DEFAULT_MAX_CONNECTION_AGE_SECONDS = 30 * 60.0
# After the GOAWAY, calls in flight have this long before the connection closes: a watch is open for
# ever, so it always ends here (the agent sees UNAVAILABLE "max connection age" and resumes at once);
# 30 s lets a status report and most bundle transfers in progress finish. Never longer than the age
# itself: a short age (a drain, a test) would otherwise wait mostly on the grace.
MAX_CONNECTION_AGE_GRACE_SECONDS = 30.0
# Longest maximum age: gRPC reads it as a 32-bit number of milliseconds (24.8 days); a week is already
# longer than any rebalance should wait.
MAX_CONNECTION_AGE_SECONDS = 7 * 86400.0
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
    ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_MS),
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.tsi.max_frame_size", TLS_MAX_FRAME_BYTES),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS_HARD),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", SERVER_MIN_PING_INTERVAL_MS),
    # the server's own pings: looser than its clients' (core.peers says why)
    *merge_options(KEEPALIVE_OPTIONS, [("grpc.keepalive_time_ms", SERVER_KEEPALIVE_TIME_MS),
                                       ("grpc.keepalive_timeout_ms", SERVER_KEEPALIVE_TIMEOUT_MS),
                                       ("grpc.http2.ping_timeout_ms", SERVER_KEEPALIVE_TIMEOUT_MS)]),
]


def server_options(*, max_connection_age: float | None = None) -> list[tuple[str, object]]:
    """``SERVER_OPTIONS``, retiring each connection after ``max_connection_age`` seconds (+-10 %, gRPC's
    jitter; the grace as ``MAX_CONNECTION_AGE_GRACE_SECONDS`` says). ``None``: the default age
    (``DEFAULT_MAX_CONNECTION_AGE_SECONDS``); 0: connections never age out."""
    age = DEFAULT_MAX_CONNECTION_AGE_SECONDS if max_connection_age is None else max_connection_age
    if age <= 0:
        return list(SERVER_OPTIONS)
    if age > MAX_CONNECTION_AGE_SECONDS:
        raise errors.ConfigError(f"max_connection_age: at most {MAX_CONNECTION_AGE_SECONDS / 86400:g} days, got {age:g}s")
    grace = min(MAX_CONNECTION_AGE_GRACE_SECONDS, age)
    return [
        *SERVER_OPTIONS,
        ("grpc.max_connection_age_ms", max(1, round(age * 1000))),
        ("grpc.max_connection_age_grace_ms", max(1, round(grace * 1000))),
    ]


CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    *KEEPALIVE_OPTIONS,
]
# gRPC abandons a connection whose TCP or TLS handshake is unanswered after this long (its default).
CONNECT_TIMEOUT_MS = 20_000


def keepalive_options(seconds: float) -> list[tuple[str, object]]:
    """Client options that notice a silent peer (a network blackhole, not a refused port) within ~2 x ``seconds``.

    A ping every ``seconds`` on an idle connection, the connection dropped when it is not acknowledged
    within ``min(seconds, 20 s)``, and a handshake abandoned after as long: with 30 s these are the
    defaults above (a dead peer noticed within a minute); smaller values notice sooner.
    """
    if seconds < MIN_KEEPALIVE_SECONDS:
        raise ValueError(f"keepalive must be at least {MIN_KEEPALIVE_SECONDS:g}s (servers refuse faster pings)")
    ms = int(seconds * 1000)
    return [
        ("grpc.keepalive_time_ms", ms),
        ("grpc.keepalive_timeout_ms", min(KEEPALIVE_TIMEOUT_MS, ms)),
        ("grpc.http2.ping_timeout_ms", min(KEEPALIVE_TIMEOUT_MS, ms)),
        # the connect timeout, despite its name (gRPC core's min_connect_timeout)
        ("grpc.min_reconnect_backoff_ms", min(CONNECT_TIMEOUT_MS, ms)),
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


def _peer(context):
    """``(log name, rate-limit key, cluster or "")`` of the caller."""
    try:
        auth = context.auth_context() or {}
        pems = auth.get("x509_pem_cert")
        if pems:
            ident = caller_from_pem(bytes(pems[0])).identity
            return str(ident), ident.fingerprint, ident.name if ident.has_role(ROLE_AGENT) else ""
    except Exception:  # noqa: BLE001 - identity is only a log hint here
        pass
    peer = context.peer() or "unknown"
    return peer, peer.rsplit(":", 1)[0], ""


class RateLimiter:
    """Token buckets per key (a peer identity): ``rate`` tokens a second up to ``burst``, the least
    recently seen keys evicted past ``max_keys``. The one rate limiter: the interceptor spends a token per
    call; the sealer's unseal gate also spends one per RSA decryption. Thread-safe (the sealer decrypts in
    worker threads)."""

    def __init__(
        self,
        rate: float = RATE_PER_SECOND,
        burst: float = RATE_BURST,
        *,
        max_keys: int = RATE_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "request(s)",
    ):
        if not rate > 0 or not burst >= 1:
            raise errors.ConfigError(f"rate limits must be positive (rate {rate:g} > 0, burst {burst:g} >= 1)")
        self.rate, self.burst, self.max_keys, self._clock = float(rate), float(burst), max_keys, clock
        self.unit = unit
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1, *, who: str | None = None) -> None:
        """Spend ``cost`` tokens of ``key``'s bucket, or raise ``ResourceExhausted`` (reason ``RateLimited``)
        spending nothing; ``who`` names the caller in the message (default: the key)."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            ok = tokens >= cost
            self._buckets[key] = (tokens - cost if ok else tokens, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        if not ok:
            raise errors.ResourceExhausted(
                f"rate limit for {who or key}: {cost:g} {self.unit} asked, {int(tokens)} left; retry in "
                f"{(cost - tokens) / self.rate:.1f}s (limit {self.rate:g}/s, burst {self.burst:g})",
                reason="RateLimited",
                retry_after=(cost - tokens) / self.rate,
            )

    def allow(self, key: str) -> bool:
        try:
            self.take(key)
        except errors.ResourceExhausted:
            return False
        return True


# TrustService.Fetch: one TUF refresh is several small, size-capped reads (root probe, timestamp, snapshot,
# delegated roles, blob); limiting them per call would stall a refresh half-way.
_EXEMPT = ("/grpc.health.v1.Health/", "/grpc.reflection.", "/skerry.api.v1.TrustService/Fetch")


def peer_name(context) -> str:
    """The caller as log lines name it; public so the metrics interceptor names stream holders the same way."""
    return _peer(context)[0]


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions to status codes, binds request context into structlog, limits per-identity rates.

    ``limiter`` applies to every RPC but the exempt ones; an RPC named in ``method_limiters`` (full method
    name) is limited by its own limiter instead. The limit is checked before authorisation and before
    the servicer runs: a caller over its rate costs the server no more than this check. A refused call
    carries its reason to the client as the ``skerry-reason`` trailing metadata, and is handed to
    ``count_refusal`` (the service's ``metrics.Refusals.count``): every refusal a server answers is counted here.
    """

    def __init__(
        self,
        limiter: RateLimiter | None = None,
        method_limiters: Mapping[str, RateLimiter] | None = None,
        count_refusal: Callable[[BaseException], None] | None = None,
    ):
        self._limiter = limiter
        self._method_limiters = dict(method_limiters or {})
        self._count_refusal = count_refusal

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        md = dict(handler_call_details.invocation_metadata or ())
        request_id = str(md.get("x-request-id") or "")[:64] or uuid.uuid4().hex[:16]  # bounded: it is logged

        limiter = None if method.startswith(_EXEMPT) else self._method_limiters.get(method, self._limiter)

        def bind(context):
            structlog.contextvars.clear_contextvars()
            name, key, cluster = _peer(context)
            structlog.contextvars.bind_contextvars(rpc=method, peer=name, request_id=request_id)
            if cluster:
                structlog.contextvars.bind_contextvars(cluster=cluster)
            if limiter is not None:
                limiter.take(key, who=f"{name} calling {method.rpartition('/')[2]}")

        async def fail(context, exc: BaseException):
            if isinstance(exc, errors.Absent):  # a probe's answer, not a refusal (see errors.Absent)
                await context.abort(status_code(exc), str(exc))
            if self._count_refusal is not None:
                self._count_refusal(exc)
            if isinstance(exc, errors.SkerryError):
                log.info("rpc refused", code=exc.status, reason=exc.reason, error=str(exc))
                retry_after = getattr(exc, "retry_after", None)
                pushed = () if retry_after is None else (pushback.entry(pushback.PUSHBACK_METADATA, retry_after),)
                context.set_trailing_metadata(((REASON_METADATA, exc.reason), *pushed))
                await context.abort(status_code(exc), str(exc))
            log.exception("rpc failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (see server log)")

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                try:
                    bind(context)
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
                try:
                    bind(context)
                    result = inner_stream(request, context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                            # an idle watch waits here for its next event: do not pin the last message
                            del item
                    else:
                        await result
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except Exception as exc:  # noqa: BLE001 - mapped to a status
                    await fail(context, exc)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, _passthrough(handler.response_serializer)
            )
        return handler


def _passthrough(serializer):
    """A response serializer that sends ``bytes`` as they are: messages serialised once for many streams."""
    if serializer is None:
        return None

    def serialize(message):
        return message if type(message) is bytes else serializer(message)

    return serialize


class GrpcServer:
    """A grpc.aio server with mTLS, health, reflection and a graceful SIGTERM drain."""

    def __init__(
        self,
        address: str,
        credentials: grpc.ServerCredentials | None,
        *,
        register: Iterable[Callable[[grpc.aio.Server], None]],
        service_names: Iterable[str],
        rules: Mapping[str, Rule],
        revocations: Revocations | None = None,
        on_refused: Refusal | None = None,
        grace_seconds: float = 10.0,
        drain_seconds: float = SIGTERM_DRAIN_SECONDS,
        options: list[tuple[str, object]] | None = None,
        limiter: RateLimiter | None = None,
        method_limiters: Mapping[str, RateLimiter] | None = None,
        maximum_concurrent_rpcs: int | None = MAX_CONCURRENT_RPCS,
        interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
        count_refusal: Callable[[BaseException], None] | None = None,
    ):
        self._address = address
        self._credentials = credentials
        self._grace = grace_seconds
        self._drain = drain_seconds
        self._names = list(service_names)
        missing = uncovered(rules, self._names)
        if missing:
            raise errors.ConfigError(f"no authorisation rule for {', '.join(missing)}: every RPC needs one")
        self.authz = AuthzInterceptor(server_rules(rules), revocations=revocations, on_refused=on_refused)
        self._server = grpc.aio.server(
            # the authorisation interceptor runs innermost: its refusals are mapped, counted and logged
            interceptors=[ErrorInterceptor(limiter, method_limiters, count_refusal), *interceptors, self.authz],
            options=options or SERVER_OPTIONS,
            maximum_concurrent_rpcs=maximum_concurrent_rpcs,
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        for reg in register:
            reg(self._server)
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

    async def stop(self, grace: float | None = None, *, drain: float = 0.0) -> None:
        """Report NOT_SERVING, keep serving ``drain`` seconds (probes and load balancers see it),
        then stop accepting and finish in-flight calls up to the grace period."""
        for name in ["", *self._names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if drain > 0:
            await asyncio.sleep(drain)
        await self._server.stop(self._grace if grace is None else grace)
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop(drain=self._drain)))

    async def wait(self) -> None:
        await self._server.wait_for_termination()
