"""Where a peer is and how often it is pinged, as plain values: importable without gRPC.

Every service's settings check ``HOST:PORT`` addresses and keepalive bounds, and the settings modules are
imported when the ``skerry`` command line is built (their fields make the flags). Kept here, those checks
cost no network library at start-up (``skerry render`` would otherwise load gRPC to print YAML); the
channel factory (``core.client``) and the server bootstrap (``core.rpc``) take them from here.

    parse_addresses("a:7440,b:7440", what)   one or several HOST:PORT, checked, duplicates dropped
    check_address("sealer:7443", what)       exactly one HOST:PORT (a port 1..65535)
    parse_listen("0.0.0.0:9090", what)       a listen address -> (host, port); port 0 picks one

and how long a server keeps serving after SIGTERM (``SIGTERM_DRAIN_SECONDS``, each server's ``--drain``).
"""

from __future__ import annotations

from collections.abc import Iterable

from skerry.core.errors import ConfigError

# Most addresses one list may name: a hub tier larger than this sits behind a Service address (one
# name, many backends), and a longer list in a flag or variable is a mistake, not a topology.
MAX_ADDRESSES = 16

# Keepalive pings detect dead peers behind NAT within about a minute (30 s + 20 s). The
# 20 s ack timeout is for a busy peer: at 10 s, a hub or agent busy with a reconnect storm of
# TLS handshakes missed acks and dropped healthy connections, which made the storm worse.
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 20_000
# A server's own keepalive, looser than its clients': a server pings only to free the connections of
# clients that vanished (a reconnecting agent supersedes its old stream anyway), while dropping a live
# one costs a reconnect. bench/fleet_ha.py, 30,000 agent streams on 3 hubs (2 shared cores): during a
# fan-out at load 56-87 the hubs dropped over 6,000 connections of live agents whose acks came more
# than 20 s late (GOAWAY ping_timeout), and each came back as another handshake. A ping every 2 minutes
# also costs a 10,000-agent hub 83 pings a second instead of 333.
SERVER_KEEPALIVE_TIME_MS = 120_000
SERVER_KEEPALIVE_TIMEOUT_MS = 60_000
# The fastest keepalive a client may be configured with (agents' ``--keepalive``).
MIN_KEEPALIVE_SECONDS = 6.0
# A server takes a ping without data at most this often; a client pinging more often is sent GOAWAY
# (too_many_pings) and loses every stream of its connection. Half the fastest keepalive: a busy server
# reads pings late and in bursts, and with a one-second margin (5 s against 6 s) hubs under a
# failover's reconnect storm sent thousands of GOAWAYs to 500 agents pinging every 6 s, whose
# reconnects made the storm worse (tests/e2e/test_hub_replicas.py, SKERRY_HA_AGENTS=500).
SERVER_MIN_PING_INTERVAL_MS = int(MIN_KEEPALIVE_SECONDS * 1000 / 2)
# After SIGTERM the health service says NOT_SERVING this long before the server stops taking
# calls: long enough for a readiness probe or load balancer to look once more and move away.
# A server's ``--drain`` setting overrides it (a test world with no load balancer sets 0).
SIGTERM_DRAIN_SECONDS = 2.0
# Longest drain a setting may ask for: Kubernetes kills a pod 30 s after SIGTERM (its default grace).
MAX_DRAIN_SECONDS = 30.0


def check_address(address: str, what: str) -> str:
    """``address`` if it is one ``HOST:PORT`` with a port in 1..65535, else a ConfigError naming ``what``."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{what}: address {address!r} must be HOST:PORT")
    return address


def parse_addresses(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    """``HOST:PORT[,HOST:PORT...]`` as a tuple, each checked, duplicates dropped, order kept.

    ``what`` names the setting in the one-line error (e.g. ``SKERRY_AGENT_HUB``).
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        check_address(item, what)
        if item not in out:
            out.append(item)
    if not out:
        raise ConfigError(f"{what}: no address given (HOST:PORT, or several separated by commas)")
    if len(out) > MAX_ADDRESSES:
        raise ConfigError(f"{what}: {len(out)} addresses; at most {MAX_ADDRESSES} (put more behind a Service)")
    return tuple(out)


def parse_listen(listen: str, what: str = "metrics listen") -> tuple[str, int]:
    """A listen address as ``(host, port)``: brackets around an IPv6 host dropped, port 0 allowed."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what}: {listen!r} is not host:port (e.g. 127.0.0.1:9090)")
    return host, int(port)
