"""The push webhook: GitHub HMAC and GitLab token verification over real HTTP on loopback, and a
verified push making the running hub fetch and publish at once (poll interval one hour)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import aiohttp
import pytest

from skerry.core.tls import ROLE_HUB
from skerry.hub.app import HubApp
from skerry.hub.config import HubConfig
from skerry.hub.webhook import MAX_BODY_BYTES, PATH, WebhookHandler, WebhookServer

from .helpers import scale_prod

SECRET = b"s3cret-webhook-key-0123456789"


def github_headers(body: bytes, event: str = "push", secret: bytes = SECRET) -> dict[str, str]:
    sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-Hub-Signature-256": sig, "Content-Type": "application/json"}


def push(ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"ref": ref, "after": "0" * 40, "repository": {"full_name": "acme/fleet"}}).encode()


class Server:
    def __init__(self):
        self.pushes = 0
        self.handler = WebhookHandler(SECRET, lambda: {"refs/heads/main"}, self._push)
        self.server = WebhookServer(self.handler, "127.0.0.1:0")

    def _push(self):
        self.pushes += 1

    async def __aenter__(self):
        port = await self.server.start()
        self.url = f"http://127.0.0.1:{port}{PATH}"
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc):
        await self.session.close()
        await self.server.stop()

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        async with self.session.post(self.url, data=body, headers=headers) as resp:
            return resp.status


async def test_github_push_with_a_valid_signature_triggers_a_fetch():
    async with Server() as s:
        assert await s.post(push(), github_headers(push())) == 202
        assert s.pushes == 1


async def test_github_bad_or_missing_signature_is_refused():
    async with Server() as s:
        body = push()
        assert await s.post(body, github_headers(body, secret=b"x" * 20)) == 401
        tampered = github_headers(body)
        assert await s.post(body + b" ", tampered) == 401
        assert await s.post(body, {"X-GitHub-Event": "push"}) == 401
        assert s.pushes == 0


async def test_gitlab_push_with_the_secret_token_triggers_a_fetch():
    async with Server() as s:
        headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET.decode()}
        assert await s.post(push(), headers) == 202
        assert await s.post(push(), {**headers, "X-Gitlab-Token": "wrong"}) == 401
        assert s.pushes == 1


async def test_ping_and_pushes_to_other_refs_do_nothing():
    async with Server() as s:
        assert await s.post(b"{}", github_headers(b"{}", event="ping")) == 204
        other = push("refs/heads/feature")
        assert await s.post(other, github_headers(other)) == 204
        assert s.pushes == 0


async def test_malformed_and_oversized_bodies_are_refused():
    async with Server() as s:
        assert await s.post(b"not json", github_headers(b"not json")) == 400
        big = b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}"
        assert await s.post(big, github_headers(big)) == 413
        assert s.pushes == 0


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError):
        WebhookHandler(b"short", lambda: set(), lambda: None)


async def test_a_verified_push_makes_the_hub_publish_without_waiting_for_the_poll(fleet_repo, tmp_path, pki, dev_trust):
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_bytes(SECRET + b"\n")
    cfg = HubConfig(
        repo=str(fleet_repo.path),
        interval=3600,  # the poll would not come during this test
        tls=pki.server("hub", ROLE_HUB),
        state_dir=tmp_path / "state",
        trust_dir=dev_trust.dir,
        release_keys=dev_trust.release_keys,
        listen="127.0.0.1:0",
        webhook_listen="127.0.0.1:0",
        webhook_secret_file=secret_file,
    )
    app = HubApp(cfg)
    await app.start()
    try:
        before = app.store.current("oslo-prod")
        fleet_repo.commit("prod replicas", scale_prod(5))
        body = push()
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{app.webhook_port}{PATH}"
            async with session.post(url, data=body, headers=github_headers(body)) as resp:
                assert resp.status == 202
        for _ in range(200):
            current = app.store.current("oslo-prod")
            if current.release != before.release:
                break
            await asyncio.sleep(0.05)
        assert app.store.current("oslo-prod").release > before.release
        assert app.syncer.revision == fleet_repo.head()
    finally:
        await app.stop(grace=0)
