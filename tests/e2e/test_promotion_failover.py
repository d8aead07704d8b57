"""A promotion whose writer died is finished, or rolled back when its soak fails, by the next writer.

Real processes on a real PostgreSQL: two ``skerry hub serve`` processes (``--role both``) share one hub
state and follow (and push promotions to) one bare Git remote; simulated agents
(``skerry.testing.simagents``: real mTLS identities, the real agent's watch stream, TUF verifier, status
and signed reports) run two dev and two prod clusters, and report Ready or not when the test says so
(nothing is applied: there is no API server in this module). Prod's rules come from ``skerry.yaml``
(auto-rollback, a ``SOAK`` soak), so the soak is the product's own, made short.

Each test ships new dev freight, promotes it to prod through the writer's PromotionService, lets prod's
agents verify the promoted bundle and report Ready, waits until the writer follows the promotion in
its soak (record state ``verifying``, its follow state and soak clock in the database), SIGKILLs the
writer, and checks what the other hub does once it takes the lease: with prod healthy it finishes the
promotion (``done`` after the soak); with a prod cluster reporting unhealthy it rolls the promotion
back by a commit restoring the previous freight, which prod's agents then verify.

The last test kills the writer at the worst moment: the remote's own ``post-receive`` hook (a test hook,
``kill_at_push``) SIGKILLs it once its promotion commit landed, before it could record it. The next
writer asks the remote about the push the dead one stored, records the commit and finishes the promotion.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import signal
import sys

import grpc
import pytest

from skerry.api.v1 import promotion_pb2, promotion_pb2_grpc
from skerry.core import tls
from skerry.core.client import secure_channel
from skerry.hub.bundles.store import BUNDLE_RECORD
from skerry.hub.promotion.records import KIND as PROMOTION_RECORD
from skerry.hub.state import open_state
from skerry.testing import simagents
from skerry.testing.devstack import Service, Stack, git, wait_for
from skerry.testing.postgres import private_server

pytestmark = [pytest.mark.e2e]

DEV = ["pf-dev-0", "pf-dev-1"]
PROD = ["pf-prod-0", "pf-prod-1"]
HUBS = ("pf-a", "pf-b")
# Short, so the other hub takes over soon after the writer dies (renewed every third of it).
LEASE_TTL = "3s"
# Prod's soak: longer than a takeover (the lease running out, a reload and a sync), so the next writer
# resumes the promotion inside it; short enough to wait out.
SOAK = 8.0
DEADLINE = 90.0  # the longest any one wait may take on a loaded 2-core machine
OPERATOR = "tester"
FINAL = ("done", "failed", "rolled-back", "timed-out")
PROD_KUSTOMIZATION = "overlays/prod/kustomization.yaml"


def fleet_yaml() -> str:
    clusters = [{"name": c, "labels": {"env": "dev"}} for c in DEV]
    clusters += [{"name": c, "labels": {"env": "prod"}} for c in PROD]
    return json.dumps({
        "apiVersion": "skerry.io/v1alpha1", "kind": "Fleet", "environments": ["dev", "prod"], "clusters": clusters,
        "paths": [{"path": f"overlays/{env}", "selector": {"matchLabels": {"env": env}}} for env in ("dev", "prod")],
        "promotion": {
            "promoters": [OPERATOR],
            "apps": {"web": {"overlays": {"dev": "overlays/dev", "prod": "overlays/prod"}}},
            "environments": {"prod": {"autoRollback": True, "soak": f"{SOAK:g}s"}},
        },
    }, indent=1)


def kustomization(env: str, tag: str) -> str:
    return (f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: shop-{env}\n"
            f"resources: [../../base]\nimages:\n  - name: web\n    newName: nginx\n    newTag: \"{tag}\"\n")


FILES = {
    "skerry.yaml": fleet_yaml(),
    "base/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                               "resources: [deployment.yaml]\n",
    "base/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n"
                            "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
                            "    spec:\n      containers: [{name: web, image: web}]\n",
    "overlays/dev/kustomization.yaml": kustomization("dev", "1.25.3"),
    "overlays/prod/kustomization.yaml": kustomization("prod", "1.25.3"),
}


class World:
    """Two hubs (``hubs`` by name, each keeping its port across restarts) and the simulated agents."""

    def __init__(self, workdir: pathlib.Path, dsn: str):
        self.workdir = workdir
        self.dsn_file = workdir / "dsn"
        self.dsn_file.write_text(dsn)
        self.stack = Stack(workdir, None, environments=("dev", "prod"), auto_release=("dev", "prod"))
        self.state = open_state("postgresql", state_dir=workdir, dsn=dsn)
        self.hubs: dict[str, Service] = {}
        self.ports: dict[str, int] = {}
        self.agents: dict[str, simagents.CommandProcess] = {}  # by environment

    # --- processes ------------------------------------------------------------------------------

    def start_hub(self, name: str) -> None:
        stack = self.stack
        trust_dir = self.workdir / name / "trust"  # each writer host has its own copy of the trust directory
        if not trust_dir.exists():
            shutil.copytree(stack.trust_dir, trust_dir)
        keys = ",".join(f"{env}={trust_dir / 'offline' / key.name}" for env in ("dev", "prod")
                        for key in stack.release_keys(env))
        self.hubs[name] = Service(name, [
            "hub", "serve", "--repo", str(stack.remote), "--interval", "1s",
            "--listen", f"127.0.0.1:{self.ports.get(name, 0)}", "--state-dir", str(self.workdir / name),
            "--state", "postgresql", "--state-dsn-file", str(self.dsn_file), "--hub-id", name,
            "--lease-ttl", LEASE_TTL, "--trust-dir", str(trust_dir), "--release-keys", keys,
            *stack.tls_args(stack.identity("hub", tls.ROLE_HUB, server=True))], self.workdir).start()

    def ready(self, name: str) -> None:
        self.ports[name] = self.hubs[name].ready(DEADLINE)["port"]

    def revive(self) -> None:
        """Start again every hub an earlier test killed (as standbys)."""
        for name in [n for n in HUBS if not self.hubs[n].alive()]:
            self.start_hub(name)
            self.ready(name)

    def kill_at_push(self, name: str) -> None:
        """A test hook: the remote SIGKILLs hub ``name`` as soon as a push to it landed (once)."""
        hook = self.stack.remote / "hooks" / "post-receive"
        hook.write_text(f"#!{sys.executable}\n# test hook: kill the pushing hub once its push landed\n"
                        f"import os\nos.remove(__file__)\nos.kill({self.hubs[name].proc.pid}, {int(signal.SIGKILL)})\n")
        hook.chmod(0o755)

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def start_agents(self, env: str, clusters: list[str]) -> None:
        identities = self.workdir / "identities"
        for name in clusters:
            tls.write_keypair(identities, name, self.stack.ca.issue(name, role=tls.ROLE_AGENT))
        agents = self.agents[env] = simagents.CommandProcess([
            sys.executable, "-m", "skerry.testing.simagents", "--hub", ",".join(self.address(h) for h in HUBS),
            "--identities", str(identities), "--ca", str(self.stack.pki_dir / "ca.crt"),
            "--root", str(self.stack.trust_root), "--environment", env, "--state", str(self.workdir / f"sim-{env}"),
            *(f"--cluster={name}" for name in clusters)])
        agents.read()  # started

    def stop(self) -> None:
        for agents in self.agents.values():
            agents.kill()
        for hub in self.hubs.values():
            hub.kill()  # the world ends here: nothing to hand over
        self.state.close()

    # --- the state and the remote, as the tests read them ---------------------------------------

    def holder(self) -> str:
        lease = self.state.current_lease()
        return lease.holder if lease is not None else ""

    def released(self) -> dict[str, dict]:
        with self.state.read() as tx:
            return tx.records(BUNDLE_RECORD)

    def records(self) -> dict[str, dict]:
        with self.state.read() as tx:
            return tx.records(PROMOTION_RECORD)

    def record(self, promotion_id: str) -> dict:
        with self.state.read() as tx:
            return tx.record(PROMOTION_RECORD, promotion_id) or {}

    def audit(self) -> list[dict]:
        with self.state.read() as tx:
            return [dict(e.doc) for e in tx.audit_entries(1000)]

    def prod_tag(self, revision: str = "main") -> str:
        text = git(self.stack.remote, "show", f"{revision}:{PROD_KUSTOMIZATION}")
        return text.split("newTag:")[1].split()[0].strip('"')

    # --- acts -----------------------------------------------------------------------------------

    def wait_verified(self, env: str, clusters: list[str], revision: str) -> None:
        """Until each of ``clusters`` is released at ``revision`` and its agent verified that release."""
        def probe():
            released = self.released()
            if any(released.get(c, {}).get("revision") != revision for c in clusters):
                return False
            have = self.agents[env].ask("positions")["releases"]
            return all(have.get(c) == released[c]["release"] for c in clusters)

        wait_for(probe, DEADLINE, f"{', '.join(clusters)} to verify {revision[:12]}")

    def report(self, env: str, clusters: list[str], *, ready: bool) -> None:
        """Each agent reports what it verified, Ready or not; asked again while its hub is away."""
        for cluster in clusters:
            wait_for(lambda cluster=cluster: "error" not in self.agents[env].ask(
                f"status {cluster} {'ready' if ready else 'unready'}"), DEADLINE, f"{cluster}'s report")

    def ship_to_dev(self, tag: str) -> None:
        """Commit new dev freight; dev's agents verify it and report Ready."""
        self.stack.repo.joinpath("overlays/dev/kustomization.yaml").write_text(kustomization("dev", tag))
        head = self.stack.commit(f"dev: web {tag}")
        self.wait_verified("dev", DEV, head)
        self.report("dev", DEV, ready=True)

    def promote_at(self, hub: str) -> promotion_pb2.Promotion:
        """Promote web dev -> prod through ``hub``'s PromotionService, as an operator."""
        with secure_channel(self.address(hub), self.stack.identity(OPERATOR, tls.ROLE_OPERATOR)) as channel:
            return promotion_pb2_grpc.PromotionServiceStub(channel).Promote(
                promotion_pb2.PromoteRequest(app="web", from_env="dev", to_env="prod"), timeout=DEADLINE)

    def promote(self) -> promotion_pb2.Promotion:
        """Promote at the writer; its gates pass once dev's reports reached it."""
        return wait_for(lambda: (done := self.promote_at(self.holder())).state != "blocked" and done, DEADLINE,
                        "the promotion's gates to pass")

    def promote_into_soak(self) -> tuple[promotion_pb2.Promotion, str]:
        """A promotion followed into prod's soak (every prod cluster Ready on it); returns it and its writer."""
        rec = self.promote()
        assert rec.state == "committed" and rec.commit, rec
        self.wait_verified("prod", PROD, rec.commit)
        self.report("prod", PROD, ready=True)
        wait_for(lambda: self.record(rec.id).get("record", {}).get("state") == "verifying", DEADLINE,
                 "the writer to follow the promotion into its soak")
        follow = self.record(rec.id)["follow"]
        assert follow["auto_rollback"] and follow["soak"] == SOAK and follow["verified_since"]
        return rec, self.holder()

    def take_over(self, dead: str) -> str:
        """The other hub, once it holds the lease."""
        survivor = next(name for name in HUBS if name != dead)
        wait_for(lambda: self.holder() == survivor, DEADLINE, f"{survivor} to take the writer lease")
        return survivor

    def outcome(self, promotion_id: str) -> dict:
        return wait_for(lambda: (r := self.record(promotion_id).get("record", {})).get("state") in FINAL and r,
                        DEADLINE, "the promotion to end")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with private_server("skerry-pg-pf-") as pg:
        yield from _world(pg, tmp_path_factory.mktemp("pf"))


def _world(pg, workdir: pathlib.Path):
    w = World(workdir, pg.create_database())
    try:
        w.stack.init_trust()
        source = workdir / "fleet-src"
        for rel, text in FILES.items():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            (source / rel).write_text(text)
        head = w.stack.seed_repo(source, bare=True)
        w.start_hub(HUBS[0])
        w.ready(HUBS[0])  # the first writer (it imports the trust repository): the other stands by
        w.start_hub(HUBS[1])
        w.ready(HUBS[1])
        w.start_agents("dev", DEV)
        w.start_agents("prod", PROD)
        w.wait_verified("dev", DEV, head)
        w.wait_verified("prod", PROD, head)
        yield w
    finally:
        w.stop()


def test_a_promotion_whose_writer_died_in_its_soak_is_finished_by_the_next_writer(world):
    world.ship_to_dev("1.27.0")
    # only the writer promotes: the standby refuses before it touches Git (it could not record or follow)
    standby = next(name for name in HUBS if name != world.holder())
    head = git(world.stack.remote, "rev-parse", "main")
    with pytest.raises(grpc.RpcError) as refused:
        world.promote_at(standby)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert git(world.stack.remote, "rev-parse", "main") == head
    rec, writer = world.promote_into_soak()
    assert world.prod_tag() == "1.27.0"
    world.hubs[writer].kill()
    survivor = world.take_over(writer)
    ended = world.outcome(rec.id)
    assert ended["state"] == "done", ended
    assert not ended["rollback_commit"] and world.prod_tag() == "1.27.0"
    assert world.holder() == survivor
    resumed = [e for e in world.audit() if e["method"] == "ResumePromotion" and e.get("id") == rec.id]
    assert resumed, "the next writer did not resume the promotion"
    world.start_hub(writer)  # back, as a standby, for the next test
    world.ready(writer)


def test_a_promotion_whose_writer_died_is_rolled_back_by_the_next_when_its_soak_fails(world):
    world.ship_to_dev("1.28.0")
    rec, writer = world.promote_into_soak()
    assert world.prod_tag() == "1.28.0"
    world.hubs[writer].kill()
    world.report("prod", PROD[:1], ready=False)  # within the soak, while no hub may write
    world.take_over(writer)
    ended = world.outcome(rec.id)
    assert ended["state"] == "rolled-back", ended
    rollback = ended["rollback_commit"]
    assert rollback and world.prod_tag(rollback) == "1.27.0" and world.prod_tag() == "1.27.0"
    message = git(world.stack.remote, "log", "-1", "--format=%B", rollback)
    assert f"Reverts: {rec.commit}" in message and PROD[0] in message
    rolled = [e for e in world.audit() if e["method"] == "AutoRollback" and e.get("id") == rec.id]
    assert [e["outcome"] for e in rolled] == ["committed"]
    world.wait_verified("prod", PROD, rollback)  # the next writer releases the rollback, prod verifies it


def test_a_promotion_whose_writer_was_killed_right_after_its_push_is_recorded_and_finished_by_the_next(world):
    world.revive()
    world.ship_to_dev("1.29.0")
    writer, head = world.holder(), git(world.stack.remote, "rev-parse", "main")
    world.kill_at_push(writer)
    with pytest.raises(grpc.RpcError):  # the writer died in the call, its commit pushed and not recorded
        world.promote()
    pushed = git(world.stack.remote, "rev-parse", "main")
    assert git(world.stack.remote, "rev-parse", f"{pushed}~1") == head and world.prod_tag() == "1.29.0"
    world.take_over(writer)
    rid = wait_for(lambda: next((k for k, d in world.records().items() if d["record"]["commit"] == pushed), None),
                   DEADLINE, "the next writer to record the dead writer's commit")
    world.wait_verified("prod", PROD, pushed)
    world.report("prod", PROD, ready=True)
    ended = world.outcome(rid)
    assert ended["state"] == "done", ended
    assert git(world.stack.remote, "rev-parse", "main") == pushed  # one promotion, one commit
    recorded = [e for e in world.audit() if e["method"] == "Promote" and e.get("id") == rid]
    assert [(e["outcome"], e.get("recovered")) for e in recorded] == [("committed", True)]
