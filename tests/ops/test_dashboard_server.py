"""The dashboard server in-process on loopback: same auth as the API, read-only, live stream, bounded.

Real HTTPS with the test CA; the snapshot is a plain function so these tests
are about the server only (the snapshot itself: test_model.py; the page in a
browser against real processes: test_live_stack.py).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl

import pytest

from skerry.core import tls
from skerry.core.errors import ConfigError
from skerry.hub.dashboard.server import DashboardServer, read_token

TOKEN = "t0ken-for-the-dashboard-tests-0123456789"


def _client_ctx(pki, files: tls.TlsFiles | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    if files is not None:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def _get(port: int, path: str, ctx: ssl.SSLContext, *, method: str = "GET", headers=None, read: bool = True):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read() if read else b""
    conn.close()
    return resp.status, dict(resp.getheaders()), body


def run_with_server(pki, fn, snapshot=None, token: bytes | None = TOKEN.encode("ascii")):  # noqa: B008
    state = {"n": 0}

    def default_snapshot():
        return {"generated_at": "now", "clusters": [{"name": "oslo", "n": state["n"]}], "n": state["n"]}

    async def main():
        server = DashboardServer("127.0.0.1:0", pki.server("hub", tls.ROLE_HUB), snapshot or default_snapshot,
                                 token=token)
        port = await server.start()
        try:
            return await asyncio.to_thread(fn, port, state)
        finally:
            await server.stop()

    return asyncio.run(main())


def test_operator_client_certificate_opens_the_dashboard(pki):
    def check(port, _):
        status, headers, body = _get(port, "/api/fleet", _client_ctx(pki, pki.operator("alice")))
        assert status == 200 and json.loads(body)["clusters"][0]["name"] == "oslo"
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        status, _, body = _get(port, "/", _client_ctx(pki, pki.operator("alice")))
        assert status == 200 and b"Skerry fleet" in body
        status, _, body = _get(port, "/api/clusters/oslo", _client_ctx(pki, pki.operator("alice")))
        assert status == 200 and json.loads(body)["name"] == "oslo"
        assert _get(port, "/api/clusters/nope", _client_ctx(pki, pki.operator("alice")))[0] == 404
        assert _get(port, "/static/../server.py", _client_ctx(pki, pki.operator("alice")))[0] == 404

    run_with_server(pki, check)


def test_an_agent_certificate_is_refused_even_with_the_token(pki):
    def check(port, _):
        ctx = _client_ctx(pki, pki.agent("oslo"))
        status, _, body = _get(port, "/api/fleet", ctx, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 403 and b"skerry:operator" in body

    run_with_server(pki, check)


def test_without_credentials_or_with_a_wrong_token_it_is_401(pki):
    def check(port, _):
        ctx = _client_ctx(pki, None)
        assert _get(port, "/api/fleet", ctx)[0] == 401
        assert _get(port, "/api/fleet", ctx, headers={"Authorization": "Bearer wrong-token-wrong-token"})[0] == 401
        assert _get(port, "/login?token=wrong", ctx)[0] == 401
        assert _get(port, "/api/stream", ctx)[0] == 401

    run_with_server(pki, check)


def test_the_token_works_as_bearer_and_through_login_cookie(pki):
    def check(port, _):
        ctx = _client_ctx(pki, None)
        assert _get(port, "/api/fleet", ctx, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        status, headers, _ = _get(port, f"/login?token={TOKEN}", ctx)
        assert status == 303
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
        assert _get(port, "/api/fleet", ctx, headers={"Cookie": cookie.split(";")[0]})[0] == 200

    run_with_server(pki, check)


def test_it_is_read_only(pki):
    def check(port, _):
        ctx = _client_ctx(pki, pki.operator("alice"))
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert _get(port, "/api/fleet", ctx, method=method)[0] == 405

    run_with_server(pki, check)


def test_the_stream_sends_a_snapshot_and_then_each_change(pki):
    def check(port, state):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=_client_ctx(pki, pki.operator("a")), timeout=10)
        conn.request("GET", "/api/stream")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")

        def next_event():
            lines = []
            while True:
                line = resp.readline().decode()
                if line == "\n" and lines:
                    return lines
                if line.strip() and not line.startswith(":"):
                    lines.append(line.strip())

        first = next_event()
        assert first[0] == "event: fleet" and json.loads(first[1][6:])["n"] == 0
        state["n"] = 1
        second = next_event()
        assert json.loads(second[1][6:])["n"] == 1
        conn.close()

    run_with_server(pki, check)


def test_a_closed_browser_stream_is_one_log_line_and_no_traceback(pki, caplog):
    import logging
    import time

    from structlog.testing import capture_logs

    def check(port, state):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=_client_ctx(pki, pki.operator("a")), timeout=10)
        conn.request("GET", "/api/stream")
        resp = conn.getresponse()
        assert resp.readline().startswith(b"event: fleet")
        conn.sock.close()  # the tab goes away mid-stream
        conn.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(e["event"].startswith("dashboard stream closed") for e in logs):
            state["n"] += 1  # a change the server tries to send to the closed stream
            time.sleep(0.3)

    with capture_logs() as logs, caplog.at_level(logging.DEBUG):
        run_with_server(pki, check)
    closed = [e for e in logs if e["event"].startswith("dashboard stream closed")]
    assert len(closed) == 1 and closed[0]["peer"] == "127.0.0.1"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


def test_token_file_must_hold_a_real_token(tmp_path):
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="too short"):
        read_token(short)
    with pytest.raises(ConfigError, match="dashboard token file"):
        read_token(tmp_path / "missing")
    good = tmp_path / "good"
    good.write_text(TOKEN + "\n")
    assert read_token(good) == TOKEN.encode()
