"""Hub replicas started at once on a fresh PostgreSQL, as the ``ha`` overlay starts them: real processes.

Two ``--role both`` hubs and a ``--role serve`` replica start in the same instant on an empty database. One
hub wins the writer lease and imports its trust directory; the other two find no trust metadata yet and
wait for that import instead of exiting, then serve. All three end up serving the same signed metadata.

While it waits a replica answers its probes (``--metrics-listen``): alive, not ready, saying it waits for the
writer's first import; once it caught up with the writer it is ready.
"""

from __future__ import annotations

import pathlib
import shutil
import urllib.error
import urllib.request

from skerry.agent.tuf_fetch import URL_PREFIX, GrpcFetcher
from skerry.core import tls
from skerry.testing.devstack import Service, Stack, wait_for
from skerry.testing.postgres import free_port

DEADLINE = 90.0  # three hubs starting together on a loaded 2-core machine
SERVED = ("metadata/1.root.json", "metadata/timestamp.json")
MAX_BYTES = 1 << 20


def served(address: str, files: tls.TlsFiles) -> tuple[bytes, ...] | None:
    """The metadata a hub serves over TrustService (what an agent fetches), or None if it refuses for now."""
    fetcher = GrpcFetcher(address, files)
    try:
        return tuple(fetcher.download_bytes(URL_PREFIX + name, MAX_BYTES) for name in SERVED)
    except Exception:  # noqa: BLE001 - not serving yet: asked again
        return None
    finally:
        fetcher.close()


def probe(port: int, path: str) -> tuple[int, str] | None:
    """(HTTP status, body) of an ops endpoint, or None if nothing answers (a refused connection)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None


def fresh_stack(tmp_path: pathlib.Path, dsn: str) -> Stack:
    (tmp_path / "dsn").write_text(dsn)
    stack = Stack(tmp_path, None, interval=1.0)
    stack.seed_repo()
    stack.init_trust()
    return stack


def hub_command(stack: Stack, tmp_path: pathlib.Path, name: str, role: str, *extra: str) -> list[str]:
    """``skerry hub serve`` of replica ``name`` on the PostgreSQL state whose DSN is in ``tmp_path/dsn``."""
    trust_args: list[str] = []
    if role != "serve":  # each writer host its own copy of the trust directory
        trust_dir = tmp_path / name / "trust"
        shutil.copytree(stack.trust_dir, trust_dir)
        trust_args = ["--trust-dir", str(trust_dir), "--trust-refresh", "1"]
    return [
        "hub", "serve", "--repo", str(stack.remote or stack.repo), "--interval", "1s",
        "--listen", f"127.0.0.1:{free_port()}", "--state-dir", str(tmp_path / name / "state"),
        "--state", "postgresql", "--state-dsn-file", str(tmp_path / "dsn"), "--hub-id", name, "--role", role,
        "--lease-ttl", "30s", *trust_args, *stack.tls_args(stack.identity("hub", tls.ROLE_HUB, server=True)), *extra]


def test_two_both_hubs_and_a_serve_replica_started_at_once_on_a_fresh_database_all_serve_one_trust(
        tmp_path, postgres_dsn):
    stack = fresh_stack(tmp_path, postgres_dsn)
    hubs: dict[str, Service] = {}
    try:
        commands = {name: hub_command(stack, tmp_path, name, role)
                    for name, role in (("hub-a", "both"), ("hub-b", "both"), ("hub-c", "serve"))}
        for name, args in commands.items():  # at once: nobody waits for anybody's ready file
            hubs[name] = Service(name, args, tmp_path).start()
        ports = {name: hub.ready(DEADLINE)["port"] for name, hub in hubs.items()}
        agent = stack.identity("oslo-dev", tls.ROLE_AGENT)  # a cluster of the fleet
        metadata = {name: wait_for(lambda port=port: served(f"127.0.0.1:{port}", agent), DEADLINE,
                                   f"{name} to serve trust metadata", hubs[name]) for name, port in ports.items()}
        # the same root everywhere; the timestamp, once every replica followed the writer's latest
        assert len({m[0] for m in metadata.values()}) == 1
        wait_for(lambda: len(now := {served(f"127.0.0.1:{port}", agent) for port in ports.values()}) == 1
                 and None not in now, DEADLINE,
                 "every replica to serve the writer's newest timestamp")
        assert all(hub.alive() for hub in hubs.values())
    finally:
        for hub in hubs.values():
            hub.stop()
        stack.stop()


def test_a_replica_waiting_for_the_writers_first_import_answers_its_probes_not_ready_until_caught_up(
        tmp_path, postgres_dsn):
    stack = fresh_stack(tmp_path, postgres_dsn)
    ops = free_port()
    hubs: dict[str, Service] = {}
    try:
        hubs["hub-c"] = Service("hub-c", hub_command(stack, tmp_path, "hub-c", "serve",
                                                     "--metrics-listen", f"127.0.0.1:{ops}"), tmp_path).start()
        # no writer yet: the replica waits, alive and answering, not ready, and says for what
        waiting = wait_for(lambda: (got := probe(ops, "/readyz")) and "writer's first import" in got[1] and got,
                           DEADLINE, "hub-c to answer its readiness probe with what it waits for", hubs["hub-c"])
        assert waiting[0] == 503, waiting
        assert probe(ops, "/healthz") == (200, "ok\n")
        assert hubs["hub-c"].alive() and hubs["hub-c"].status() is None  # not serving agents: no ready file
        hubs["hub-a"] = Service("hub-a", hub_command(stack, tmp_path, "hub-a", "both"), tmp_path).start()
        hubs["hub-c"].ready(DEADLINE)  # the writer imported: the replica serves
        wait_for(lambda: (got := probe(ops, "/readyz")) and got[0] == 200, DEADLINE,
                 "hub-c to catch up with the writer (ready)", hubs["hub-c"])
    finally:
        for hub in hubs.values():
            hub.stop()
        stack.stop()
