"""The push webhook: GitHub and GitLab tell the hub a branch moved, so it fetches now.

Polling every interval stays the fallback (a lost webhook costs at most one
interval). The endpoint is ``POST /hooks/git`` (aiohttp). A request counts
only if it proves it knows the shared secret:

* GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``;
* GitLab: ``X-Gitlab-Token: <secret>``;

both compared in constant time. A verified ``push`` (GitHub ``X-GitHub-Event:
push``, GitLab ``X-Gitlab-Event: Push Hook`` / ``Tag Push Hook``) whose
``ref`` is the one the hub follows calls ``on_push()`` (``Syncer.request_sync``)
and answers 202; a verified ``ping`` or a push to another ref answers 204
(nothing to do); a bad or missing signature 401; a body over
``MAX_BODY_BYTES`` 413; anything else 400. The secret is never logged and
the body is not logged either (it may hold private repository details). Every refusal is counted in
one place, the server's access log (``skerry.hub.httplog``), which hands it to ``count_refusal`` (the
hub's ``skerry_refusals_total``): the handler's own under their reasons (``TooLarge``,
``BadSignature``, ``MalformedPayload``), what it never sees (a request aiohttp's parser cannot read,
a method other than POST) by status.
Serve it behind TLS termination, or on loopback; it needs no TLS of its own
because the HMAC authenticates each request and the payload is not trusted
beyond "fetch now" (the hub always fetches and reads Git itself).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import structlog
from aiohttp import web

from skerry.core import documents
from skerry.hub.httplog import Refusal, refusal_log

log = structlog.get_logger("skerry.hub.webhook")

PATH = "/hooks/git"
# GitHub caps payloads at 25 MB; a push that only says "fetch now" needs far less, and the hub reads
# nothing from it but the ref. 1 MiB keeps large pushes (many commits listed) working.
MAX_BODY_BYTES = 1024 * 1024
# The webhook's named refusals.
TOO_LARGE, BAD_SIGNATURE, MALFORMED_PAYLOAD = "TooLarge", "BadSignature", "MalformedPayload"


class WebhookHandler:
    def __init__(self, secret: bytes, refs: Callable[[], set[str]], on_push: Callable[[], None],
                 count_refusal: Callable[[str], None] | None = None):
        if len(secret) < 16:
            raise ValueError("webhook secret must be at least 16 bytes")
        self._secret = secret
        self._refs = refs  # the refs that count as ours, e.g. {"refs/heads/main"}
        self._on_push = on_push
        self.count_refusal = count_refusal
        self.accepted = 0


    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(PATH, self.handle)
        return app

    def _verified(self, request: web.Request, body: bytes) -> str | None:
        """Which provider signed the request, or None."""
        signature = request.headers.get("X-Hub-Signature-256")
        if signature is not None:
            expected = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            return "github" if hmac.compare_digest(signature.encode(), expected.encode()) else None
        token = request.headers.get("X-Gitlab-Token")
        if token is not None:
            return "gitlab" if hmac.compare_digest(token.encode(), self._secret) else None
        return None

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return Refusal(413, "payload too large\n", TOO_LARGE)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return Refusal(413, "payload too large\n", TOO_LARGE)
        provider = self._verified(request, body)
        if provider is None:
            log.warning("webhook refused: bad or missing signature", remote=request.remote)
            return Refusal(401, "signature does not verify\n", BAD_SIGNATURE)
        event = (
            request.headers.get("X-GitHub-Event", "")
            if provider == "github"
            else request.headers.get("X-Gitlab-Event", "")
        )
        if event in ("ping", "System Hook"):
            return web.Response(status=204)
        if event not in ("push", "Push Hook", "Tag Push Hook"):
            return web.Response(status=204)
        try:
            payload = documents.load_json(body, max_bytes=MAX_BODY_BYTES)
            ref = payload["ref"]
            if not isinstance(ref, str):
                raise TypeError("ref is not a string")
        except (ValueError, KeyError, TypeError):
            return Refusal(400, "a push payload needs a JSON body with a ref\n", MALFORMED_PAYLOAD)
        if ref not in self._refs():
            log.info("webhook push to another ref ignored", provider=provider, ref=ref[:200])
            return web.Response(status=204)
        self.accepted += 1
        log.info("webhook push: fetching now", provider=provider, ref=ref)
        self._on_push()
        return web.Response(status=202, text="fetch scheduled\n")


class WebhookServer:
    """The handler served on ``host:port`` (port 0: the kernel picks)."""

    def __init__(self, handler: WebhookHandler, listen: str):
        self.handler = handler
        self.host, _, port = listen.rpartition(":")
        self.host = self.host.strip("[]")
        self._port = int(port)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> int:
        self._runner = web.AppRunner(self.handler.app(), **refusal_log(self.handler.count_refusal))
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("webhook listening", host=self.host, port=self.port, path=PATH)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
