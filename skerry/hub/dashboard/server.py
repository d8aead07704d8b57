"""The dashboard's HTTPS server: the page, a JSON API, and Server-Sent Events for live updates.

Same auth as the gRPC API: TLS with the hub's own certificate, and the
caller must be an operator - either a client certificate from the hub's CA
with role ``skerry:operator`` (what ``GetFleetStatus`` asks), or, for
browsers that hold no client certificate, the bearer token from
``--dashboard-token-file`` (``Authorization: Bearer``, or once through
``/login?token=`` which sets an HttpOnly, Secure, SameSite=Strict cookie).
A client certificate with another role is refused even with a token.

Every refusal it answers (a missing or wrong token, a certificate without
the operator role, a method other than GET, a request body, and a request
aiohttp's parser cannot read) is counted by status in one place, the
server's access log (``skerry.hub.httplog``), which hands its reason
(``core.metrics.HTTP_REFUSAL_REASONS``) to ``count_refusal``: the hub's
``skerry_refusals_total``.

Read-only: GET only, no route changes state. One snapshot is built per
tick while anyone watches and shared by all streams; a stream is sent a
snapshot only when it changed (plus a keep-alive comment).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import pathlib
import ssl
import time
from collections.abc import Callable

import structlog
from aiohttp import web

from skerry.core.errors import ConfigError
from skerry.core.metrics import parse_listen
from skerry.core.tls import ROLE_OPERATOR, TlsFiles, identity_from_pem
from skerry.hub.httplog import refusal_log

log = structlog.get_logger("skerry.hub.dashboard")

STATIC = pathlib.Path(__file__).resolve().parent / "static"
COOKIE = "skerry_dashboard"
# How often the shared snapshot is rebuilt while a stream is open (live-update latency).
TICK_SECONDS = 1.0
# The snapshot is built on the hub's event loop; the tick stretches so that building it takes at most
# this share of the loop's time (a 1000-cluster fleet: ~150 ms per build -> a tick of ~1.5 s).
MAX_LOOP_SHARE = 0.1
# A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0
# Concurrent event streams (each holds a socket and a task); more get 503.
MAX_STREAMS = 64
# A token file larger than this is not a token.
MAX_TOKEN_BYTES = 4096
# Requests carry no body; headers are bounded by aiohttp (8 KiB lines).
MAX_REQUEST_BODY = 1024
_STATIC_FILES = {"app.js": "application/javascript", "style.css": "text/css"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def read_token(path: pathlib.Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        raw = pathlib.Path(path).read_bytes()[: MAX_TOKEN_BYTES + 1]
    except OSError as e:
        raise ConfigError(f"dashboard token file {path}: {e.strerror}") from e
    token = raw.strip()
    if not token or len(raw) > MAX_TOKEN_BYTES:
        raise ConfigError(f"dashboard token file {path}: must hold one token of 1..{MAX_TOKEN_BYTES} bytes")
    if len(token) < 16:
        raise ConfigError(f"dashboard token file {path}: the token is too short (use at least 16 characters)")
    return token


def server_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.cert), str(files.key))
    ctx.load_verify_locations(cafile=str(files.ca))
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a browser may come with a token instead
    return ctx


class DashboardServer:
    def __init__(self, listen: str, tls: TlsFiles, snapshot: Callable[[], dict], *, token: bytes | None = None,
                 detail: Callable[[str], dict | None] | None = None,
                 count_refusal: Callable[[str], None] | None = None):
        self._listen = listen
        self._count_refusal = count_refusal
        self._tls = tls
        self._snapshot = snapshot
        self._detail = detail
        self._token_digest = hashlib.sha256(token).digest() if token else None
        self._runner: web.AppRunner | None = None
        self._streams = 0
        self._latest: tuple[int, str] = (0, "")
        self._changed = asyncio.Event()
        self._ticker: asyncio.Task | None = None
        self.port: int | None = None

    # --- auth ------------------------------------------------------------------------------

    def _token_ok(self, presented: str | None) -> bool:
        if self._token_digest is None or not presented:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._token_digest)

    def _who(self, request: web.Request) -> str:
        """The operator calling, or raise 401/403."""
        ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
        if der:
            identity = identity_from_pem(ssl.DER_cert_to_PEM_cert(der).encode())
            if not identity.has_role(ROLE_OPERATOR):
                raise web.HTTPForbidden(text=f"{identity} may not read the dashboard: it needs role {ROLE_OPERATOR}\n")
            return str(identity)
        header = request.headers.get("Authorization", "")
        presented = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        if self._token_ok(presented):
            return "token"
        raise web.HTTPUnauthorized(
            text="the dashboard needs an operator client certificate or the dashboard token "
            "(Authorization: Bearer, or open /login?token=...)\n",
            headers={"WWW-Authenticate": 'Bearer realm="skerry"'},
        )

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"], text="the dashboard is read-only\n")
        if (request.content_length or 0) > MAX_REQUEST_BODY or "chunked" in request.headers.get(
                "Transfer-Encoding", "").lower():
            raise web.HTTPRequestEntityTooLarge(MAX_REQUEST_BODY, request.content_length or 0,
                                                text="the dashboard takes no request body\n")
        if request.path != "/login":
            self._who(request)
        response = await handler(request)
        for k, v in _SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    # --- routes ----------------------------------------------------------------------------

    async def _login(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token", "")
        if not self._token_ok(token):
            log.info("dashboard login refused", peer=request.remote)
            raise web.HTTPUnauthorized(text="wrong or missing dashboard token\n")
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, token, httponly=True, secure=True, samesite="Strict", path="/")
        raise response

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(body=(STATIC / name).read_bytes(), content_type=_STATIC_FILES[name])

    async def _fleet(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._snapshot())

    async def _cluster(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if self._detail is not None:
            found = self._detail(name)
            if found is not None:
                return web.json_response(found)
        else:
            for c in self._snapshot()["clusters"]:
                if c["name"] == name:
                    return web.json_response(c)
        raise web.HTTPNotFound(text=f"cluster {name!r} is not in the fleet\n")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if self._streams >= MAX_STREAMS:
            raise web.HTTPServiceUnavailable(text=f"too many open dashboards (limit {MAX_STREAMS})\n")
        self._streams += 1
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **_SECURITY_HEADERS})
            await response.prepare(request)
            await self._publish()
            sent = -1
            while True:
                version, data = self._latest
                if version != sent:
                    await response.write(f"event: fleet\ndata: {data}\n\n".encode())
                    sent = version
                changed = self._changed
                try:  # asyncio.timeout: wait_for (3.11) can lose a cancel that lands as the event fires
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        await changed.wait()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
        except ConnectionResetError:  # the browser tab closed: one log line, not aiohttp's traceback
            log.info("dashboard stream closed by the client", peer=request.remote)
            return response
        finally:
            self._streams -= 1

    # --- the shared snapshot ---------------------------------------------------------------

    async def _publish(self) -> None:
        snap = self._snapshot()
        snap.pop("generated_at", None)  # changes every tick; a stream gets an event only when the fleet changed
        data = json.dumps(snap, separators=(",", ":"))
        if data != self._latest[1]:
            self._latest = (self._latest[0] + 1, data)
            old, self._changed = self._changed, asyncio.Event()
            old.set()

    async def _tick(self) -> None:
        cost = 0.0
        while True:
            await asyncio.sleep(max(TICK_SECONDS, cost / MAX_LOOP_SHARE))
            if self._streams:
                started = time.monotonic()
                try:
                    await self._publish()
                except Exception:  # noqa: BLE001 - the next tick tries again
                    log.exception("dashboard snapshot failed")
                cost = time.monotonic() - started

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> int:
        host, port = parse_listen(self._listen, "dashboard listen")
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_REQUEST_BODY)
        app.add_routes([
            web.get("/", self._index),
            web.get("/login", self._login),
            web.get("/static/{name}", self._static),
            web.get("/api/fleet", self._fleet),
            web.get("/api/clusters/{name}", self._cluster),
            web.get("/api/stream", self._stream),
        ])
        try:
            ctx = server_ssl_context(self._tls)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"dashboard TLS: {e}") from e
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0,
                                     **refusal_log(self._count_refusal))
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ctx)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            raise ConfigError(f"cannot listen on {self._listen} for the dashboard: {e.strerror}") from e
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ticker = asyncio.create_task(self._tick(), name="skerry-dashboard-tick")
        return self.port

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
