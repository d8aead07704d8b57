"""Hub replicas on a real PostgreSQL: real hub processes and signals, a fleet of agents across them.

One world for the module (starting it is most of the cost): a private PostgreSQL server, the sealer,
three ``skerry hub serve`` processes sharing one state — two that may write (``--role both``) and one
that only serves (``--role serve``, no trust directory, no keys) — ``SIMULATED`` simulated agents
(``skerry.testing.simagents``: real mTLS identities, the real agent's watch stream and TUF verifier)
spread over all three replicas, and one real agent applying into the session's API server, with a
Secret sealed for it. Each test does one thing to the world (SIGKILL the writer mid fan-out, SIGSTOP
it past its lease, SIGKILL the serving replica, stop PostgreSQL for 10 s, revoke a cluster during a
failover), then commits again and checks the fleet: every agent on the newest release, per agent the
releases strictly increased, no verification refusal, each (cluster, content) released exactly once,
and no release counter spent without a release. The tests build on each other's world, in file order
(the database outage last: a hub that waited out the outage may be slow to recover under load).

``SKERRY_HA_AGENTS`` sets the number of simulated agents: 100 by default, to keep the module within the CI
suite's time on a shared 2-core machine; ``SKERRY_HA_AGENTS=500`` runs the issue's floor (several minutes).
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import grpc
import pytest

from skerry.agent.trust import TufVerifier
from skerry.agent.tuf_fetch import GrpcFetcher
from skerry.api.v1 import hub_pb2, hub_pb2_grpc, trust_pb2, trust_pb2_grpc
from skerry.core import tls
from skerry.core.client import secure_channel
from skerry.hub.bundles.store import BUNDLE_RECORD
from skerry.hub.state import open_state
from skerry.testing import simagents
from skerry.testing.devstack import Service, Stack, wait_for
from skerry.testing.postgres import PostgresServer, private_server

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

SIMULATED = int(os.environ.get("SKERRY_HA_AGENTS", "100"))
ENV = "dev"
REAL = "ha-real-dev"  # the real agent's cluster (names unique to this module: the API server is shared)
NAMESPACE = "ha-e2e-real"
REVOKED = "ha-sim-00007"
# Short, so takeovers are quick; renewals every third of it keep a busy writer's lease.
LEASE_TTL = 3.0
OUTAGE = 10.0  # seconds PostgreSQL is down
# Agents ping their hub this often (the least hubs accept): a SIGSTOPped hub is noticed within ~2x.
KEEPALIVE = 6.0
DEADLINE = 120.0  # the longest any one wait may take on a loaded 2-core machine
TTL_ARGS = ("--lease-ttl", f"{LEASE_TTL:.0f}s")


def sim_name(i: int) -> str:
    return f"ha-sim-{i:05d}"


def fleet_yaml() -> str:
    clusters = [{"name": REAL, "labels": {"env": ENV, "kind": "real"}}]
    clusters += [{"name": sim_name(i), "labels": {"env": ENV, "kind": "sim"}} for i in range(SIMULATED)]
    return json.dumps({
        "apiVersion": "skerry.io/v1alpha1", "kind": "Fleet", "environments": [ENV], "clusters": clusters,
        "paths": [{"path": "sim", "selector": {"matchLabels": {"kind": "sim"}}},
                  {"path": "real", "selector": {"matchLabels": {"kind": "real"}}}],
    }, indent=1)


def content(generation: int) -> dict[str, str]:
    """The fleet's desired state at ``generation``: one ConfigMap for the simulated clusters, and a
    Namespace + ConfigMap for the real one (plain YAML directories)."""
    return {
        "sim/config.yaml": textwrap.dedent(f"""
            apiVersion: v1
            kind: ConfigMap
            metadata: {{name: sim, namespace: sim}}
            data: {{generation: "{generation}"}}
        """),
        "real/namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n",
        "real/config.yaml": textwrap.dedent(f"""
            apiVersion: v1
            kind: ConfigMap
            metadata: {{name: web, namespace: {NAMESPACE}}}
            data: {{generation: "{generation}"}}
        """),
    }


class World:
    """Everything the tests act on; ``hubs`` by name, each keeping its port across restarts."""

    def __init__(self, workdir: pathlib.Path, kubeconfig: pathlib.Path, pg: PostgresServer, dsn: str):
        self.workdir = workdir
        self.pg = pg
        self.dsn_file = workdir / "dsn"
        self.dsn_file.write_text(dsn)
        self.stack = Stack(workdir, kubeconfig, environments=(ENV,), auto_release=(ENV,))
        self.state = open_state("postgresql", state_dir=workdir, dsn=dsn)
        self.hubs: dict[str, Service] = {}
        self.ports: dict[str, int] = {}
        self.roles = {"hub-a": "both", "hub-b": "both", "hub-c": "serve"}
        self.generation = 0
        self.agents: simagents.CommandProcess | None = None
        self.revoked: set[str] = set()
        self.sims = [sim_name(i) for i in range(SIMULATED)]

    # --- processes ------------------------------------------------------------------------------

    def start_hub(self, name: str) -> Service:
        stack, role = self.stack, self.roles[name]
        listen = f"127.0.0.1:{self.ports.get(name, 0)}"  # a restarted replica comes back at its address
        args = ["hub", "serve", "--repo", str(stack.repo), "--interval", "1s", "--listen", listen,
                "--state-dir", str(self.workdir / name), "--state", "postgresql", "--state-dsn-file",
                str(self.dsn_file), "--hub-id", name, *TTL_ARGS, "--role", role,
                *stack.tls_args(stack.identity("hub", tls.ROLE_HUB, server=True))]
        if role != "serve":  # each writer host has its own copy of the trust directory and keys
            trust_dir = self.workdir / name / "trust"
            if not trust_dir.exists():
                shutil.copytree(stack.trust_dir, trust_dir)
            keys = ",".join(f"{ENV}={trust_dir / 'offline' / key.name}" for key in stack.release_keys(ENV))
            args += ["--trust-dir", str(trust_dir), "--release-keys", keys]
        # warnings and errors only: a line per request of 500 agents' refreshes is most of a hub's CPU
        self.hubs[name] = Service(name, args, self.workdir, env={"SKERRY_HUB_LOG_LEVEL": "warning"}).start()
        return self.hubs[name]

    def ready(self, name: str) -> None:
        self.ports[name] = self.hubs[name].ready(DEADLINE)["port"]

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    @property
    def addresses(self) -> str:
        return ",".join(self.address(name) for name in sorted(self.ports))

    def live(self) -> list[str]:
        return [name for name, hub in self.hubs.items() if hub.alive()]

    def kill(self, name: str) -> None:
        self.hubs[name].kill()

    def restart(self, name: str) -> None:
        self.start_hub(name)
        self.ready(name)

    # --- the state, as the tests read it ---------------------------------------------------------

    def holder(self) -> str:
        lease = self.state.current_lease()
        return lease.holder if lease is not None else ""

    def epoch(self) -> int:
        lease = self.state.current_lease()
        return lease.epoch if lease is not None else 0

    def released(self) -> dict[str, dict]:
        with self.state.read() as tx:
            return tx.records(BUNDLE_RECORD)

    def commit(self) -> str:
        """The next generation of the fleet's content, committed; returns the commit."""
        self.generation += 1
        self.stack.repo.joinpath("sim", "config.yaml").write_text(content(self.generation)["sim/config.yaml"])
        self.stack.repo.joinpath("real", "config.yaml").write_text(content(self.generation)["real/config.yaml"])
        return self.stack.commit(f"generation {self.generation}")

    def positions(self) -> dict[str, int]:
        assert self.agents is not None
        return self.agents.ask("positions")["releases"]

    def converged(self, head: str, timeout: float = DEADLINE) -> dict[str, dict]:
        """Wait until every cluster is released at ``head`` and every agent (revoked ones aside) holds
        its cluster's release; then check the fleet (see the module docstring). Returns the releases."""
        def probe():
            released = self.released()
            if len(released) < SIMULATED + 1 or {doc["revision"] for doc in released.values()} != {head}:
                return None
            have = self.positions()
            behind = [c for c in self.sims if c not in self.revoked and have.get(c) != released[c]["release"]]
            if behind:
                return None
            status = self.stack.agents[REAL].status() or {}
            if status.get("applied_release") != released[REAL]["release"] or not status.get("ready"):
                return None
            return released

        released = wait_for(probe, timeout, f"every agent on {head[:8]}")
        self.check_fleet(released)
        return released

    def check_fleet(self, released: dict[str, dict]) -> None:
        assert self.agents is not None
        report = self.agents.ask("report")
        assert not report["refused"], f"verification refused: {report['refused']}"
        assert not report["regressions"], f"releases not strictly increasing: {report['regressions']}"
        assert not report["duplicates"], f"one content released more than once: {report['duplicates']}"
        with self.state.read() as tx:  # no counter spent on a release that did not happen
            spent = {c: tx.last_release(c) for c in released}
        assert spent == {c: int(doc["release"]) for c, doc in released.items()}

    def stop(self) -> None:
        if self.agents is not None:
            self.agents.kill()
        for agent in self.stack.agents.values():  # first: a hub's SIGTERM grace waits for its open watch streams
            agent.stop()
        for hub in self.hubs.values():
            if hub.alive():
                os.kill(hub.proc.pid, signal.SIGCONT)
            hub.stop()
        self.stack.stop()
        self.state.close()


def issue_identities(stack: Stack, names: list[str], directory: pathlib.Path) -> None:
    for name in names:
        tls.write_keypair(directory, name, stack.ca.issue(name, role=tls.ROLE_AGENT))


@pytest.fixture(scope="module")
def world(kubeconfig, tmp_path_factory):
    with private_server("skerry-pg-ha-") as pg:
        yield from _world(pg, kubeconfig, tmp_path_factory.mktemp("ha"))


def _world(pg, kubeconfig, workdir: pathlib.Path):
    w = World(workdir, kubeconfig, pg, pg.create_database())
    try:
        stack = w.stack
        stack.start_sealer()
        stack.init_trust()
        source = workdir / "fleet-src"
        for rel, text in {"skerry.yaml": fleet_yaml(), **content(0)}.items():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            (source / rel).write_text(text)
        head = stack.seed_repo(source, seal={"real/secret.yaml": {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": NAMESPACE},
            "stringData": {"password": "sealed-for-ha"}}})
        w.start_hub("hub-a")
        w.ready("hub-a")  # the first writer: the others stand by
        for name in ("hub-b", "hub-c"):
            w.start_hub(name)
        for name in ("hub-b", "hub-c"):
            w.ready(name)
        identities = workdir / "sim-identities"
        issue_identities(stack, w.sims, identities)
        w.agents = simagents.CommandProcess([
            sys.executable, "-m", "skerry.testing.simagents", "--hub", w.addresses, "--identities",
            str(identities), "--ca", str(stack.pki_dir / "ca.crt"), "--root", str(stack.trust_root),
            "--environment", ENV, "--state", str(workdir / "sim-state"), "--ramp", "2", "--history", "--keepalive", f"{KEEPALIVE:g}",
            *(f"--cluster={name}" for name in w.sims)])
        w.agents.read()  # started
        stack.start_agent(REAL, hub=w.addresses, environment=ENV, extra=("--keepalive", f"{KEEPALIVE:g}s"))
        w.converged(head)
        yield w
    finally:
        w.stop()


def test_the_real_agent_applies_its_bundle_and_its_sealed_secret(world):
    secret = json.loads(world.stack.kubectl("get", "secret", "db", "-n", NAMESPACE, "-o", "json"))
    assert base64.b64decode(secret["data"]["password"]) == b"sealed-for-ha"
    config = json.loads(world.stack.kubectl("get", "configmap", "web", "-n", NAMESPACE, "-o", "json"))
    assert config["data"]["generation"] == str(world.generation)


def test_writer_killed_mid_fanout_loses_nothing(world):
    writer = world.holder()
    before = world.released()
    head = world.commit()
    # SIGKILL the writer the moment its release of the new commit is committed: agents are being told
    wait_for(lambda: any(doc["revision"] == head for doc in world.released().values()), DEADLINE,
             "the writer to start releasing the commit")
    world.kill(writer)
    wait_for(lambda: world.holder() not in ("", writer), DEADLINE, "another hub to take the lease")
    released = world.converged(head)
    assert all(released[c]["release"] > before[c]["release"] for c in released)
    # ...and the next commit is released by the new writer
    world.converged(world.commit())
    world.restart(writer)  # back as a standby


def test_writer_paused_past_its_lease_commits_nothing_and_steps_down(world):
    writer, epoch = world.holder(), world.epoch()
    paused = world.hubs[writer]
    os.kill(paused.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: world.holder() not in ("", writer) and world.epoch() > epoch, DEADLINE,
                 "another hub to take the lease from the stopped writer")
        world.converged(world.commit())
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    # it wakes mid-duty with a lease that is gone: whatever it tries to commit is refused (a commit of
    # its would show as a release twice or a counter spent for nothing) and it stands by
    world.converged(world.commit())
    assert paused.alive()


def test_serving_replica_killed_its_agents_move_to_the_others(world):
    world.kill("hub-c")
    world.converged(world.commit())  # hub-c's agents got it from another replica
    world.restart("hub-c")  # back for the tests that follow


def refused(world: World, hub: str, cluster: str) -> tuple[grpc.StatusCode | None, grpc.StatusCode | None]:
    """The status codes a replica answers ``cluster``'s agent with: a watch, and a metadata fetch."""
    files = simagents.identity_files(world.workdir / "sim-identities", world.stack.pki_dir / "ca.crt", cluster)
    codes = []
    with secure_channel(world.address(hub), files) as channel:
        for call in (
            lambda: next(iter(hub_pb2_grpc.HubServiceStub(channel).WatchBundles(
                hub_pb2.WatchBundlesRequest(cluster=cluster, accepts_chunks=True), timeout=10))),
            lambda: next(iter(trust_pb2_grpc.TrustServiceStub(channel).Fetch(
                trust_pb2.FetchRequest(path="metadata/timestamp.json"), timeout=10))),
        ):
            try:
                call()
                codes.append(None)
            except grpc.RpcError as e:
                codes.append(e.code())
    return codes[0], codes[1]


DENIED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


def test_a_cluster_revoked_during_a_failover_is_refused_by_every_replica(world):
    assert refused(world, "hub-c", REVOKED) == (None, None)  # it may watch and fetch until revoked
    writer = world.holder()
    world.kill(writer)
    survivor = next(name for name in world.live() if name != writer)
    done = subprocess.run(
        [sys.executable, "-m", "skerry", "cluster", "revoke", REVOKED, "--state-dir", str(world.workdir / survivor)],
        capture_output=True, text=True, timeout=DEADLINE,
        env={**os.environ, "SKERRY_HUB_STATE": "postgresql", "SKERRY_HUB_STATE_DSN_FILE": str(world.dsn_file)})
    assert done.returncode == 0, done.stderr
    world.revoked.add(REVOKED)
    wait_for(lambda: world.holder() not in ("", writer), DEADLINE, "another hub to take the lease")
    world.restart(writer)
    for hub in world.live():
        wait_for(lambda hub=hub: all(code in DENIED for code in refused(world, hub, REVOKED)), DEADLINE,
                 f"{hub} to refuse the revoked cluster")
    held = world.positions()[REVOKED]
    world.converged(world.commit())  # everyone else goes on
    assert world.positions()[REVOKED] == held


def fresh_verification(world: World, hub: str, cluster: str, directory: pathlib.Path):
    """A new agent of ``cluster`` on ``hub``: its first watch event, verified from scratch (what that replica
    serves: the bundle in the stream, the TUF metadata over TrustService)."""
    files = simagents.identity_files(world.workdir / "sim-identities", world.stack.pki_dir / "ca.crt", cluster)
    with secure_channel(world.address(hub), files) as channel:
        watch = hub_pb2_grpc.HubServiceStub(channel).WatchBundles(
            hub_pb2.WatchBundlesRequest(cluster=cluster), timeout=DEADLINE)
        event = next(message for message in watch if message.HasField("bundle"))
        watch.cancel()
    verifier = TufVerifier(cluster, ENV, world.stack.trust_root, directory,
                           lambda: GrpcFetcher(world.address(hub), files))
    return verifier.verify_message(event.bundle)


def test_postgres_outage_replicas_keep_serving_and_nothing_unfenced_is_published(world, tmp_path):
    released = world.released()
    held = world.positions()
    writer = world.holder()
    port = world.pg.port
    world.pg.stop("fast")
    try:
        stopped = time.monotonic()
        head = world.commit()  # found by the writer's next sync; it cannot release it without the database
        # The serving replica and the writer (which also serves) serve signed, unexpired state from memory
        # to a new agent: none of them reads the database on its event loop.
        for i, hub in enumerate(("hub-c", writer), start=1):
            verified = fresh_verification(world, hub, sim_name(i), tmp_path / hub)
            assert verified is not None and verified.release == released[sim_name(i)]["release"]
            assert verified.expires.timestamp() > time.time()
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
        assert world.positions() == held  # nothing was published while the database was away
        assert all(hub.alive() for hub in world.hubs.values())
    finally:
        world.pg.start(port=port)
    world.converged(head)


@pytest.mark.parametrize("dsn", ["postgresql://skerry@127.0.0.1:1/nowhere", "not a dsn at all"])
def test_an_unreachable_or_wrong_dsn_is_one_clear_line(tmp_path, pki, dev_trust, dsn):
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(dsn)
    files = pki.server("hub", tls.ROLE_HUB)
    done = subprocess.run(
        [sys.executable, "-m", "skerry", "hub", "serve", "--repo", str(tmp_path), "--state", "postgresql",
         "--state-dsn-file", str(dsn_file), "--state-dir", str(tmp_path / "state"), "--trust-dir",
         str(dev_trust.dir), "--tls-ca", str(files.ca), "--tls-cert", str(files.cert), "--tls-key", str(files.key)],
        capture_output=True, text=True, timeout=DEADLINE, env={**os.environ, "SKERRY_HUB_LOG_LEVEL": "error"},
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "hub state" in lines[0] and "cannot connect" in lines[0]
    assert "skerry@" not in lines[0]  # the DSN's user (and any password) never reaches a message
