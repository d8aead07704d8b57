"""Hub replicas on a real PostgreSQL: real hub processes and signals, agents on a serving replica.

Three ``skerry hub serve`` processes share one state: two that may write (``--role both``) and one
that only serves (``--role serve``, no trust directory, no keys). Simulated agents (real mTLS
identities, a stock TUF client over the replica's TrustService, a WatchBundles stream each) watch
the serving replica. The writer is SIGKILLed right after a commit (mid-sync), and later another
writer is SIGSTOPped past its lease and SIGCONTed after a third published. Afterwards every agent
is on the newest release, each agent saw its releases strictly increase, each (cluster, content)
was released exactly once, and no release counter was spent without a release.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys

import grpc
import pytest

from skerry.agent.trust import TufVerifier
from skerry.agent.tuf_fetch import GrpcFetcher
from skerry.api.v1 import hub_pb2, hub_pb2_grpc
from skerry.core.rpc import CHANNEL_OPTIONS
from skerry.core.tls import ROLE_HUB, channel_credentials
from skerry.hub.bundles.builder import content_digest
from skerry.hub.bundles.store import BUNDLE_RECORD
from skerry.hub.state import open_state
from skerry.testing.devstack import Service
from skerry.testing.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.hub.helpers import FLEET_FILES, GitRepo

pytestmark = [pytest.mark.e2e]

CLUSTERS = {"oslo-prod": "prod", "oslo-dev": "dev", "bergen-dev": "dev"}
LEASE_TTL = 2.0
DEADLINE = 60.0


class Agent:
    """One cluster's agent: a watch stream on a hub and a stock TUF client verifying each event there."""

    def __init__(self, cluster: str, address: str, pki, dev_trust, directory):
        self.cluster = cluster
        self.address = address
        self.files = pki.agent(cluster)
        self.verifier = TufVerifier(cluster, CLUSTERS[cluster], dev_trust.root, directory / cluster,
                                    lambda: GrpcFetcher(address, self.files))
        self.seen: list[tuple[int, str]] = []  # (release, content digest), in the order applied
        self.refused: list[str] = []

    async def run(self) -> None:
        async with grpc.aio.secure_channel(self.address, channel_credentials(self.files),
                                           options=CHANNEL_OPTIONS) as channel:
            call = hub_pb2_grpc.HubServiceStub(channel).WatchBundles(
                hub_pb2.WatchBundlesRequest(cluster=self.cluster, accepts_chunks=True))
            async for message in call:
                if not message.HasField("bundle"):
                    continue
                try:
                    verified = await asyncio.to_thread(self.verifier.update)
                except Exception as e:  # noqa: BLE001 - recorded: the test asserts there are none
                    self.refused.append(str(e))
                    continue
                if verified is not None:
                    self.seen.append((verified.release, content_digest(verified.bundle)))


def hub(name: str, role: str, tmp_path, repo, pki, dev_trust, dsn_file) -> Service:
    args = ["hub", "serve", "--repo", str(repo.path), "--interval", "1s", "--listen", "127.0.0.1:0",
            "--state-dir", str(tmp_path / name), "--state", "postgresql", "--state-dsn-file", str(dsn_file),
            "--hub-id", name, "--lease-ttl", f"{LEASE_TTL:.0f}s", "--role", role]
    files = pki.server("hub", ROLE_HUB)
    args += ["--tls-ca", str(files.ca), "--tls-cert", str(files.cert), "--tls-key", str(files.key)]
    if role != "serve":  # each writer host has its own copy of the trust directory (and of the dev keys)
        trust_dir = tmp_path / name / "trust"
        if not trust_dir.exists():
            shutil.copytree(dev_trust.dir, trust_dir)
        keys = ",".join(f"{env}={trust_dir / 'offline' / path.name}" for env, path in dev_trust.release_keys)
        args += ["--trust-dir", str(trust_dir), "--release-keys", keys]
    return Service(name, args, tmp_path).start()


def scale(repo: GitRepo, count: int) -> str:
    return repo.commit(f"scale to {count}", {"overlays/prod/kustomization.yaml": f"""
        resources: [../../base]
        replicas: [{{name: web, count: {count}}}]
    """, "overlays/dev/kustomization.yaml": f"""
        resources: [../../base]
        replicas: [{{name: web, count: {count + 10}}}]
    """})


async def wait_until(condition, what: str, deadline: float = DEADLINE) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_writers_killed_and_paused_lose_nothing_and_release_nothing_twice(
    tmp_path, pki, dev_trust, postgres_dsn  # noqa: F811
):
    repo = GitRepo(tmp_path / "fleet")
    repo.commit("initial fleet", FLEET_FILES)
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(postgres_dsn)
    state = open_state("postgresql", state_dir=tmp_path, dsn=postgres_dsn)

    def holder() -> str:
        lease = state.current_lease()
        return lease.holder if lease is not None else ""

    hubs = {"hub-a": hub("hub-a", "both", tmp_path, repo, pki, dev_trust, dsn_file)}
    agents: list[Agent] = []
    tasks: list[asyncio.Task] = []
    try:
        hubs["hub-a"].ready(DEADLINE)
        hubs["hub-b"] = hub("hub-b", "both", tmp_path, repo, pki, dev_trust, dsn_file)
        hubs["hub-c"] = hub("hub-c", "serve", tmp_path, repo, pki, dev_trust, dsn_file)
        port = hubs["hub-c"].ready(DEADLINE)["port"]
        hubs["hub-b"].ready(DEADLINE)
        assert holder() == "hub-a"
        agents = [Agent(c, f"127.0.0.1:{port}", pki, dev_trust, tmp_path / "agents") for c in CLUSTERS]
        tasks = [asyncio.create_task(a.run()) for a in agents]
        await wait_until(lambda: all(a.seen for a in agents), "every agent's first bundle")

        # SIGKILL the writer while it syncs a new commit; the standby takes over and publishes it.
        scale(repo, 2)
        await asyncio.sleep(0.5)  # about when the 1 s poll finds it
        hubs["hub-a"].kill()
        await wait_until(lambda: holder() == "hub-b", "hub-b to take the lease")
        await wait_until(lambda: all(a.seen[-1] != a.seen[0] for a in agents), "the commit on every agent")

        # A new hub-a stands by; SIGSTOP the writer past its lease, let hub-a publish, SIGCONT it.
        hubs["hub-a"] = hub("hub-a", "both", tmp_path, repo, pki, dev_trust, dsn_file)
        hubs["hub-a"].ready(DEADLINE)
        os.kill(hubs["hub-b"].proc.pid, signal.SIGSTOP)
        try:
            await wait_until(lambda: holder() == "hub-a", "hub-a to take the lease from the stopped writer")
            head = scale(repo, 3)
            await wait_until(lambda: revision(state) == head and all(
                a.verifier.last_release == latest(state, a.cluster) for a in agents), "hub-a's release on every agent")
        finally:
            os.kill(hubs["hub-b"].proc.pid, signal.SIGCONT)
        # hub-b wakes mid-duty with a lease that is gone: whatever it tries to commit fails and it steps
        # down (a commit of its would show below as a release twice or a counter spent for nothing).
        head = scale(repo, 4)
        await wait_until(lambda: revision(state) == head and all(
            a.verifier.last_release == latest(state, a.cluster) for a in agents), "the next release everywhere")
        assert holder() == "hub-a" and hubs["hub-b"].alive()

        for a in agents:
            assert not a.refused, a.refused
            releases = [r for r, _ in a.seen]
            assert releases == sorted(set(releases)), f"{a.cluster}: releases not strictly increasing: {releases}"
            contents = [c for _, c in a.seen]
            assert len(contents) == len(set(contents)), f"{a.cluster}: one content released twice: {a.seen}"
            assert a.verifier.last_release == latest(state, a.cluster)
            with state.read() as tx:  # no counter spent on a release that did not happen
                assert tx.last_release(a.cluster) == a.verifier.last_release
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for service in hubs.values():
            if service.alive():
                os.kill(service.proc.pid, signal.SIGCONT)
            service.stop()
        state.close()


def latest(state, cluster: str) -> int:
    with state.read() as tx:
        doc = tx.record(BUNDLE_RECORD, cluster)
    return int(doc["release"]) if doc else 0


def revision(state) -> str:
    """The commit every cluster's current release is at ("" while they differ: a publication is under way)."""
    with state.read() as tx:
        revisions = {doc["revision"] for doc in tx.records(BUNDLE_RECORD).values()}
    return revisions.pop() if len(revisions) == 1 else ""


@pytest.mark.parametrize("dsn", ["postgresql://skerry@127.0.0.1:1/nowhere", "not a dsn at all"])
def test_an_unreachable_or_wrong_dsn_is_one_clear_line(tmp_path, pki, dev_trust, dsn):
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(dsn)
    files = pki.server("hub", ROLE_HUB)
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
