"""The ops HTTP server and the shared registry, on loopback."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from skerry.core.errors import ConfigError, SkerryError
from skerry.core.metrics import Counter, OpsServer, Refusals, new_registry, parse_listen


def fetch(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_health_and_readiness_are_served():
    registry = new_registry()
    c = Counter("skerry_test_things_total", "Things.", ["kind"], registry=registry)
    c.labels("a").inc(3)
    ready = {"ok": False}
    server = OpsServer("127.0.0.1:0", registry, readiness=lambda: (ready["ok"], "fleet not loaded"))
    port = server.start()
    try:
        status, body = fetch(port, "/metrics")
        assert status == 200 and 'skerry_test_things_total{kind="a"} 3.0' in body
        assert "process_cpu_seconds_total" in body
        assert fetch(port, "/healthz")[0] == 200
        assert fetch(port, "/readyz") == (503, "fleet not loaded\n")
        ready["ok"] = True
        assert fetch(port, "/readyz")[0] == 200
        assert fetch(port, "/nope")[0] == 404
    finally:
        server.stop()


def test_a_broken_readiness_check_is_not_ready():
    server = OpsServer("127.0.0.1:0", new_registry(), readiness=lambda: 1 / 0)
    port = server.start()
    try:
        assert fetch(port, "/readyz") == (503, "readiness check failed: ZeroDivisionError\n")
    finally:
        server.stop()


def test_bad_listen_addresses_are_config_errors():
    for bad in ("9090", "host:", ":9090", "host:99999"):
        with pytest.raises(ConfigError, match="host:port"):
            parse_listen(bad)
    assert parse_listen("[::1]:9090") == ("::1", 9090)
    taken = OpsServer("127.0.0.1:0", new_registry())
    port = taken.start()
    try:
        with pytest.raises(ConfigError, match="cannot listen"):
            OpsServer(f"127.0.0.1:{port}", new_registry()).start()
    finally:
        taken.stop()


def test_a_refusal_without_a_name_counts_as_unclassified_and_never_adds_a_label_from_input():
    registry = new_registry()
    refusals = Refusals(registry, "hub")
    refusals.count(ConfigError("x", reason="AliasBudget"))
    refusals.count(KeyError("trust-state.json"))  # an unexpected error: not named yet
    refusals.count(SkerryError("x", reason="zoë ☃ from a request"))  # a reason built from input
    refusals.count(SkerryError("x", reason="A" * 100))
    server = OpsServer("127.0.0.1:0", registry)
    port = server.start()
    try:
        body = fetch(port, "/metrics")[1]
    finally:
        server.stop()
    samples = [line for line in body.splitlines() if line.startswith("skerry_refusals_total")]
    assert sorted(samples) == ['skerry_refusals_total{reason="AliasBudget",service="hub"} 1.0',
                               'skerry_refusals_total{reason="Unclassified",service="hub"} 3.0']
