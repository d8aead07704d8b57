"""The fault proxy itself, against a real TCP echo server: each mode does what the fault tests rely on."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from skerry.testing.faultproxy import TO_CLIENT, FaultProxy, ProxyError

# A blackholed read gives up after this long (the proxy must stay silent at least that long).
SILENCE_SECONDS = 0.5
# socketserver polls for shutdown() this often (0.5 s by default: half a second of every teardown)
SHUTDOWN_POLL_SECONDS = 0.05


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo):
    with FaultProxy(echo) as p:
        yield p


def dial(proxy: FaultProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.settimeout(5)
    return s


def roundtrip(s: socket.socket, data: bytes = b"ping") -> bytes:
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_pass_forwards_both_ways_and_counts(proxy):
    with dial(proxy) as s:
        assert roundtrip(s, b"x" * 200_000) == b"x" * 200_000
    # a chunk is counted once written on (after its drain): the client may hold the last bytes first
    expected = {"to_server": 200_000, "to_client": 200_000}
    deadline = time.monotonic() + 5
    while proxy.stats.forwarded != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proxy.stats.forwarded == expected


def test_blackhole_accepts_reads_and_never_answers_then_new_connections_pass(proxy):
    with dial(proxy) as before:
        assert roundtrip(before) == b"ping"
        proxy.blackhole()
        with dial(proxy) as during:  # not a refused port: the connection is accepted
            for s in (before, during):
                s.settimeout(SILENCE_SECONDS)
                s.sendall(b"hello?")
                with pytest.raises(TimeoutError):
                    s.recv(10)  # neither an answer nor a FIN
            proxy.passthrough()
            before.sendall(b"again")  # a connection that lived through the blackhole stays black
            with pytest.raises(TimeoutError):
                before.recv(10)
            with dial(proxy) as after:
                assert roundtrip(after) == b"ping"
    assert proxy.stats.discarded >= len(b"hello?") * 2


def test_delay_adds_latency_per_direction(proxy):
    proxy.delay(0.3)
    with dial(proxy) as s:
        started = time.monotonic()
        assert roundtrip(s) == b"ping"
        assert time.monotonic() - started >= 0.6  # 0.3 s each way
    proxy.passthrough()
    with dial(proxy) as s:
        started = time.monotonic()
        assert roundtrip(s) == b"ping"
        assert time.monotonic() - started < 0.3


def test_cut_closes_open_and_new_connections(proxy):
    with dial(proxy) as s:
        assert roundtrip(s) == b"ping"
        proxy.cut()
        assert s.recv(10) == b""  # closed
    with dial(proxy) as s:
        assert s.recv(10) == b""
    proxy.passthrough()
    with dial(proxy) as s:
        assert roundtrip(s) == b"ping"


def test_on_bytes_acts_mid_transfer_and_the_client_gets_no_more(proxy):
    seen = []
    proxy.on_bytes(TO_CLIENT, 100_000, lambda: seen.append(proxy.stats.forwarded[TO_CLIENT]))
    with dial(proxy) as s:
        got = roundtrip(s, b"y" * 300_000)  # the connection closes after the action, like a dead server's
    assert proxy.tripped and len(seen) == 1
    assert 100_000 <= seen[0] == len(got) < 300_000
    with dial(proxy) as s:  # new connections pass again
        assert roundtrip(s) == b"ping"


def test_bad_modes_are_refused(proxy):
    with pytest.raises(ProxyError):
        proxy.set_mode("flaky")
    with pytest.raises(ProxyError):
        proxy.delay(3600)
