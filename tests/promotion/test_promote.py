"""Promotion through the real sync loop, store and Git remote: gates, the commit, races, progress, rollback."""

from __future__ import annotations

import asyncio

import pytest

from skerry.core.errors import Unavailable
from skerry.hub.source import writes

from .helpers import git, operator

DEV_K = "overlays/dev/kustomization.yaml"
PROD_K = "overlays/prod/kustomization.yaml"


async def ready_for_prod(h, tag: str = "1.27.0") -> None:
    """dev runs a new tag, healthy and soaked; alice and bob approve."""
    h.edit(DEV_K, 'newTag: "1.25.3"', f'newTag: "{tag}"', f"dev: web {tag}")
    await h.sync()
    h.dev_healthy_and_soaked()
    for who in ("alice", "bob"):
        rec = await h.promoter.promote(operator(who), "web", "dev", "prod", approve=True, dry_run=True)
    assert rec.state == "ready", rec


async def until(pred, what):
    for _ in range(500):
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def trailers(message: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in message.strip().splitlines()[-12:]:
        k, sep, v = line.partition(": ")
        if sep and "-" in k or k in ("Reverts", "Reason"):
            out.setdefault(k, []).append(v)
    return out


async def test_promotion_commits_dev_images_into_prod_with_trailers_and_untouched_comments(harness):
    h = harness
    before = h.remote_file(PROD_K)
    await ready_for_prod(h)
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    try:
        assert rec.state in ("committed", "rolling-out"), rec
        assert h.remote_head() == rec.commit
        after = h.remote_file(PROD_K)
        # exactly one line changed; comments, indentation and quoting of the rest are byte for byte
        assert after == before.replace('newTag: "1.25.3"', 'newTag: "1.27.0"')
        assert "# Sealed with the sealer's certificate" in after
        message = git(h.remote, "log", "-1", "--format=%B", rec.commit)
        t = trailers(message)
        assert t["Promoted-by"] == ["alice"]
        assert t["From-env"] == ["dev"]
        assert sorted(t["Approved-by"]) == ["alice", "bob"]
        digests = {h.store.current(c).digest for c in ("oslo-dev", "bergen-dev")}
        assert {v.split()[0] for v in t["From-bundle"]} == digests
        assert message.startswith("promote web: dev -> prod (web=nginx:1.27.0)")
        # only the prod overlay changed
        assert git(h.remote, "diff", "--name-only", f"{rec.commit}~1", rec.commit) == PROD_K
        audit = h.audit.entries
        assert any(e["method"] == "Promote" and e["outcome"] == "committed" and e["commit"] == rec.commit for e in audit)
    finally:
        await h.stop()


async def test_an_unhealthy_dev_cluster_blocks_and_is_named(harness):
    h = harness
    await h.sync()
    h.report("oslo-dev")
    h.report("bergen-dev", ready=False)
    h.clock.advance(3600)
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod", approve=True)
    assert rec.state == "blocked"
    gate = next(g for g in rec.gates if g.name == "clusters")
    assert not gate.passed and "bergen-dev" in gate.message and "not Ready" in gate.message
    assert "oslo-dev" not in gate.message
    assert "bergen-dev" in rec.message
    assert h.remote_head() == git(h.work, "rev-parse", "HEAD"), "nothing was pushed"


async def test_a_dev_cluster_that_never_reported_or_runs_an_old_bundle_blocks(harness):
    h = harness
    await h.sync()
    h.report("oslo-dev", digest="sha256:" + "0" * 64)  # still the previous bundle
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    gate = next(g for g in rec.gates if g.name == "clusters")
    assert "oslo-dev has not applied its current bundle" in gate.message
    assert "bergen-dev has not reported" in gate.message


async def test_missing_approvals_block_prod(harness):
    h = harness
    h.edit(DEV_K, 'newTag: "1.25.3"', 'newTag: "1.27.0"', "dev: web 1.27.0")
    await h.sync()
    h.dev_healthy_and_soaked()
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    gate = next(g for g in rec.gates if g.name == "approvals")
    assert rec.state == "blocked" and "needs 2 approvals of 4, has 0" in gate.message
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod", approve=True)
    gate = next(g for g in rec.gates if g.name == "approvals")
    assert rec.state == "blocked" and "has 1 (alice)" in gate.message and "bob, carol, dave" in gate.message
    # the second approver completes it
    rec = await h.promoter.promote(operator("carol"), "web", "dev", "prod", approve=True)
    assert rec.state in ("committed", "rolling-out"), rec.message
    assert rec.approved_by == ["alice", "carol"]
    await h.stop()


async def test_approvals_are_for_one_freight_only(harness):
    h = harness
    await ready_for_prod(h, "1.27.0")
    # dev moves on before the promotion: the approvals were for 1.27.0, not for 1.27.1
    h.edit(DEV_K, 'newTag: "1.27.0"', 'newTag: "1.27.1"', "dev: web 1.27.1")
    await h.sync()
    h.dev_healthy_and_soaked()
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    assert rec.state == "blocked"
    assert "has 0" in next(g for g in rec.gates if g.name == "approvals").message


async def test_soak_time_is_respected(harness):
    h = harness
    h.edit(DEV_K, 'newTag: "1.25.3"', 'newTag: "1.27.0"', "dev: web 1.27.0")
    await h.sync()
    for c in ("oslo-dev", "bergen-dev"):
        h.report(c)
    h.clock.advance(4 * 60)
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod", approve=True, dry_run=True)
    soak = next(g for g in rec.gates if g.name == "soak")
    assert not soak.passed and "of the 10m00s soak" in soak.message and "oslo-dev" in soak.message
    # a dev cluster that turns unhealthy restarts its soak
    h.report("bergen-dev", ready=False)
    h.report("bergen-dev")
    h.clock.advance(7 * 60)
    rec = await h.promoter.promote(operator("bob"), "web", "dev", "prod", approve=True, dry_run=True)
    soak = next(g for g in rec.gates if g.name == "soak")
    assert not soak.passed and "bergen-dev" in soak.message and "oslo-dev" not in soak.message
    h.clock.advance(4 * 60)
    rec = await h.promoter.promote(operator("bob"), "web", "dev", "prod", dry_run=True)
    assert rec.state == "ready", rec.message


async def test_a_freeze_of_the_target_blocks_and_is_named(harness):
    h = harness
    await ready_for_prod(h)
    # move the clock to Friday 19:00 UTC
    import datetime as _dt

    friday = _dt.datetime(2030, 1, 4, 19, 0, tzinfo=_dt.UTC)
    h.clock.advance((friday - h.clock.now()).total_seconds())
    for c in ("oslo-dev", "bergen-dev"):
        h.report(c)  # still healthy (re-reported; the soak keeps counting from the first report)
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    gate = next(g for g in rec.gates if g.name == "freeze")
    assert rec.state == "blocked" and "friday-night" in gate.message


async def test_promotion_must_follow_the_environment_order(harness):
    h = harness
    await h.sync()
    rec = await h.promoter.promote(operator("alice"), "web", "prod", "dev")
    assert rec.state == "blocked"
    assert "dev does not follow prod" in rec.gates[0].message


async def test_concurrent_promotions_of_one_app_serialise(harness):
    h = harness
    await ready_for_prod(h)
    first, second = await asyncio.gather(
        h.promoter.promote(operator("alice"), "web", "dev", "prod"),
        h.promoter.promote(operator("bob"), "web", "dev", "prod"),
    )
    try:
        states = sorted([first.state, second.state])
        # exactly one commit: the second waited for the first and found prod already on dev's freight
        # (its approvals were consumed by the first, so it may also be blocked on approvals)
        committed = [r for r in (first, second) if r.commit]
        assert len(committed) == 1, states
        other = second if committed[0] is first else first
        assert other.state in ("done", "blocked"), other
        log = git(h.remote, "log", "--format=%s", "main").splitlines()
        assert sum(1 for s in log if s.startswith("promote web")) == 1
    finally:
        await h.stop()


async def test_a_push_race_is_redone_on_the_new_tip_without_losing_either_commit(harness, monkeypatch):
    h = harness
    await ready_for_prod(h)
    real_push = writes.push_commit
    raced = []

    def racing_push(source, commit, **kw):
        if not raced:  # someone else pushes between the hub's fetch and its push
            raced.append(h.edit(PROD_K, "count: 3", "count: 5", "prod: 5 replicas (someone else)"))
        return real_push(source, commit, **kw)

    monkeypatch.setattr(writes, "push_commit", racing_push)
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    try:
        assert rec.commit and h.promoter.push_attempts == 2
        assert git(h.remote, "rev-parse", f"{rec.commit}~1") == raced[0], "redone on top of the other commit"
        prod = h.remote_file(PROD_K)
        assert "count: 5" in prod and 'newTag: "1.27.0"' in prod
        # never forced: the other commit is an ancestor of the tip
        git(h.remote, "merge-base", "--is-ancestor", raced[0], "main")
    finally:
        await h.stop()


async def test_progress_follows_prod_to_done_and_lists_offline_clusters_as_pending(harness):
    h = harness
    await ready_for_prod(h)
    h.start_loop()
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    try:
        # the hub renders the commit; prod has not reported the new bundle: pending / applying
        await until(lambda: rec.clusters and h.store.current("oslo-prod").revision == rec.commit, "the new bundle")
        assert rec.state == "rolling-out"
        assert [c.state for c in rec.clusters] in (["pending"], ["applying"])
        h.report("oslo-prod")
        await until(lambda: rec.state == "verifying", "verifying")  # prod has autoRollback: watched for its soak
        h.clock.advance(61)
        await until(lambda: rec.state == "done", "done")
        assert rec.clusters[0].state == "healthy"
        # the release it rolled out, as people read it: prod's second
        assert (rec.clusters[0].target_release, rec.clusters[0].applied_release) == ("r2", "r2")
        assert h.promoter.health("oslo-prod").desired_release == "r2"
        seen = []
        async for r in h.promoter.watch(operator("carol"), rec.id):
            seen.append(r.state)
        assert seen == ["done"]
    finally:
        await h.stop()


async def test_unhealthy_prod_within_soak_is_rolled_back_by_a_commit(harness):
    h = harness
    await ready_for_prod(h)
    h.start_loop()
    before = h.remote_file(PROD_K)
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    try:
        for _ in range(500):
            if h.store.current("oslo-prod").revision == rec.commit and rec.state == "rolling-out" and rec.clusters:
                break
            await asyncio.sleep(0.02)
        h.report("oslo-prod", ready=False)
        for _ in range(500):
            if rec.state == "rolled-back":
                break
            await asyncio.sleep(0.02)
        assert rec.state == "rolled-back", rec
        assert rec.rollback_commit and h.remote_head() == rec.rollback_commit
        assert h.remote_file(PROD_K) == before
        msg = git(h.remote, "log", "-1", "--format=%B", rec.rollback_commit)
        assert f"Reverts: {rec.commit}" in msg and "oslo-prod" in msg
    finally:
        await h.stop()


async def test_rollback_restores_the_previous_freight_by_a_commit(harness):
    h = harness
    await ready_for_prod(h)
    old_head = h.remote_head()
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    await h.promoter.close()
    assert 'newTag: "1.27.0"' in h.remote_file(PROD_K)
    back = await h.promoter.rollback(operator("bob"), "web", "prod", old_head)
    await h.stop()
    assert back.commit and back.kind == "rollback"
    assert git(h.remote, "rev-parse", f"{back.commit}~1") == rec.commit, "a new commit, history kept"
    assert h.remote_file(PROD_K) == h.remote_file(PROD_K, old_head)
    msg = git(h.remote, "log", "-1", "--format=%B", back.commit)
    assert f"Rolled-back-to: {old_head}" in msg and "Rolled-back-by: bob" in msg
    audited = [(e["method"], e["outcome"], e["commit"], e.get("branch")) for e in h.audit.entries
               if e.get("id") in (rec.id, back.id) and e["outcome"] == "committed"]
    assert audited == [("Promote", "committed", rec.commit, "main"), ("Rollback", "committed", back.commit, None)]


async def test_push_to_a_review_branch_leaves_main_alone(harness):
    h = harness
    await ready_for_prod(h)
    main_before = h.remote_head()
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod", branch="review/web-prod")
    assert rec.state == "pushed-for-review"
    assert h.remote_head() == main_before
    assert git(h.remote, "rev-parse", "review/web-prod") == rec.commit


async def test_who_may_do_what_is_enforced_by_the_hub_table_and_audited(harness, pki):
    """Over real mTLS through the hub's interceptor: operators read, promoters promote and roll back,
    an approver only approves; every refusal lands in the promotion audit log."""
    import grpc

    from skerry.api.v1 import promotion_pb2 as pb
    from skerry.api.v1 import promotion_pb2_grpc
    from skerry.core.rpc import CHANNEL_OPTIONS, GrpcServer
    from skerry.core.tls import ROLE_HUB, channel_credentials, server_credentials
    from skerry.hub.authz import audit_promotion_refusals, hub_rules
    from skerry.hub.promotion.servicer import SERVICE_NAME, PromotionServicer

    h = harness
    await h.sync()
    servicer = PromotionServicer(h.promoter)
    server = GrpcServer(
        "127.0.0.1:0", server_credentials(pki.server("hub", ROLE_HUB)),
        register=[lambda s: promotion_pb2_grpc.add_PromotionServiceServicer_to_server(servicer, s)],
        service_names=[SERVICE_NAME], rules=hub_rules(h.promoter.policy),
        on_refused=audit_promotion_refusals(h.audit.record),
    )
    port = await server.start()

    async def refused(files, call) -> str:
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", channel_credentials(files), options=CHANNEL_OPTIONS) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(promotion_pb2_grpc.PromotionServiceStub(ch))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value
        return err.value.details()

    promote = pb.PromoteRequest(app="web", from_env="dev", to_env="prod")
    try:
        assert "promoters" in await refused(pki.operator("mallory"), lambda s: s.Promote(promote, timeout=20))
        assert "skerry:operator" in await refused(
            pki.agent("oslo-dev"), lambda s: s.GetFreight(pb.GetFreightRequest(app="web", env="dev"), timeout=20))
        assert "promoters" in await refused(
            pki.operator("mallory"),
            lambda s: s.Rollback(pb.RollbackRequest(app="web", env="prod", to_revision="main"), timeout=20))
        # dave approves prod but is no promoter: approving is all he may do
        assert "promoters" in await refused(pki.operator("dave"), lambda s: s.Promote(promote, timeout=20))
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{port}", channel_credentials(pki.operator("dave")), options=CHANNEL_OPTIONS
        ) as ch:
            rec = await promotion_pb2_grpc.PromotionServiceStub(ch).Promote(
                pb.PromoteRequest(app="web", from_env="dev", to_env="prod", approve=True, dry_run=True), timeout=20)
        assert rec.approved_by == ["dave"] and not rec.commit
    finally:
        await server.stop(0)
        await h.stop()
    denied = [e for e in h.audit.entries if e["outcome"] == "denied"]
    assert [e["method"] for e in denied] == ["Promote", "GetFreight", "Rollback", "Promote"]
    assert "mallory" in denied[0]["identity"] and "dave" in denied[3]["identity"]

async def test_freight_reports_images_revision_bundles_and_health(harness):
    h = harness
    await h.sync()
    h.report("oslo-dev")
    f = await h.promoter.get_freight(operator("carol"), "web", "dev")
    assert [i.reference for i in f.images] == ["nginx:1.25.3"]
    assert f.revision == h.remote_head()
    by = {c.cluster: c for c in f.clusters}
    assert by["oslo-dev"].healthy and not by["bergen-dev"].reported
    assert not f.healthy
    src, dst, changes, gates = await h.promoter.diff(operator("carol"), "web", "dev", "prod")
    assert changes == []


async def test_an_offline_target_cluster_stays_pending_and_is_named_when_time_runs_out(harness):
    import dataclasses

    h = harness
    h.promoter.settings = dataclasses.replace(h.promoter.settings, progress_timeout=30.0)
    await ready_for_prod(h)
    h.start_loop()
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    try:
        for _ in range(500):
            if rec.clusters:
                break
            await asyncio.sleep(0.02)
        # oslo-prod's agent never reported: pending, never counted as done
        assert rec.state == "rolling-out" and rec.clusters[0].state == "pending"
        assert "no report yet" in rec.clusters[0].message
        h.clock.advance(31)
        for _ in range(500):
            if rec.final:
                break
            await asyncio.sleep(0.02)
        assert rec.state == "timed-out", rec
        assert "pending: oslo-prod" in rec.message
    finally:
        await h.stop()


async def test_unknown_apps_and_environments_are_named(harness):
    from skerry.core.errors import NotFound

    h = harness
    await h.sync()
    with pytest.raises(NotFound, match="app 'shop' is not in skerry.yaml promotion.apps"):
        await h.promoter.get_freight(operator("alice"), "shop", "dev")
    with pytest.raises(NotFound, match="environment 'qa' is not in skerry.yaml"):
        await h.promoter.promote(operator("alice"), "web", "dev", "qa")


async def test_an_approver_who_is_not_a_promoter_approves_and_a_promoter_commits(harness):
    h = harness
    h.edit(DEV_K, 'newTag: "1.25.3"', 'newTag: "1.27.0"', "dev: web 1.27.0")
    await h.sync()
    h.dev_healthy_and_soaked()
    rec = await h.promoter.promote(operator("dave"), "web", "dev", "prod", approve=True)
    assert rec.state == "approved" and not rec.commit
    assert "still blocked: approvals" in rec.message
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod", approve=True)
    try:
        assert rec.commit and rec.approved_by == ["alice", "dave"]
    finally:
        await h.stop()


async def test_approvals_survive_a_hub_restart(harness, engine):
    h = harness
    h.edit(DEV_K, 'newTag: "1.25.3"', 'newTag: "1.27.0"', "dev: web 1.27.0")
    await h.sync()
    h.dev_healthy_and_soaked()
    await h.promoter.promote(operator("bob"), "web", "dev", "prod", approve=True)
    restarted = restarted_promoter(h)  # the restarted hub's own connection
    rec = await restarted.promote(operator("carol"), "web", "dev", "prod", approve=True, dry_run=True)
    assert rec.state == "ready" and rec.approved_by == ["bob", "carol"]
    # and they expire: an approval is for today's freight, not forever
    h.clock.advance(25 * 3600)
    h.dev_healthy_and_soaked()
    rec = await restarted.promote(operator("carol"), "web", "dev", "prod", dry_run=True)
    assert rec.state == "blocked" and "has 0" in next(g for g in rec.gates if g.name == "approvals").message


def _signed_report(board, files, cluster: str, digest: str, *, ready: bool = True) -> tuple[bytes, bytes, bytes]:
    from skerry.core import report as report_format

    nonce, counter = board.issue(cluster)
    doc = {"cluster": cluster, "nonce": nonce, "counter": counter, "applied_digest": digest, "release": 1,
           "revision": "", "ready": ready, "health": [{"type": "Ready", "status": "True" if ready else "False",
                                                        "reason": "Applied" if ready else "ApplyFailed"}],
           "drift": {}, "observed_unix_ms": 0}
    data, signature = report_format.sign(doc, files.key.read_bytes())
    return data, signature, files.cert.read_bytes()


async def test_with_signed_reports_a_gate_opens_only_on_what_each_agent_signed_never_on_a_replay(harness, pki):
    from skerry.core.errors import VerificationError
    from skerry.hub.trust.attest import AttestationBoard

    h = harness
    board = AttestationBoard(h.clock)
    try:
        h.promoter.attestations = board  # as the hub wires it in TUF mode
        await h.sync()
        h.dev_healthy_and_soaked()  # unsigned (mTLS) reports say both dev clusters are healthy
        rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod", approve=True)
        gate = next(g for g in rec.gates if g.name == "clusters")
        assert rec.state == "blocked" and "oslo-dev has sent no signed report" in gate.message, gate
        signed = {}
        for c in ("oslo-dev", "bergen-dev"):
            signed[c] = _signed_report(board, pki.agent(c), c, h.store.current(c).digest)
            board.submit(*signed[c])
        # bergen-dev then signs that it is NOT ready; replaying its earlier good report is refused.
        board.submit(*_signed_report(board, pki.agent("bergen-dev"), "bergen-dev", h.store.current("bergen-dev").digest,
                                     ready=False))
        with pytest.raises(VerificationError) as replay:
            board.submit(*signed["bergen-dev"])
        assert replay.value.reason == "ReplayedReport"
        rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod", approve=True)
        gate = next(g for g in rec.gates if g.name == "clusters")
        assert rec.state == "blocked" and "bergen-dev is not Ready" in gate.message and "oslo-dev" not in gate.message
        board.submit(*_signed_report(board, pki.agent("bergen-dev"), "bergen-dev", h.store.current("bergen-dev").digest))
        h.clock.advance(11 * 60)
        rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod", approve=True)
        assert next(g for g in rec.gates if g.name == "clusters").passed, rec.gates
    finally:
        await h.stop()


def restarted_promoter(h, **kwargs):
    """The hub restarted: a new Promoter on its own connection to the same SQLite state, same fleet."""
    from skerry.hub.promotion.approvals import Approvals
    from skerry.hub.promotion.audit import AuditLog
    from skerry.hub.promotion.records import RecordStore
    from skerry.hub.promotion.service import Promoter
    from skerry.hub.state import open_state

    state = open_state("", state_dir=h.tmp / "hub-state")
    audit = AuditLog(state, clock=h.clock)
    return Promoter(source=h.promoter.source, fleet=h.syncer, store=h.store, statuses=h.statuses,
                    tracker=h.tracker, audit=audit, settings=h.promoter.settings, clock=h.clock,
                    approvals=Approvals(state, audit, h.clock), records=RecordStore(state), **kwargs)


@pytest.mark.parametrize("outcome", ["done", "rolled-back"])
async def test_a_hub_restarted_mid_promotion_resumes_following_it(harness, outcome):
    h = harness
    await ready_for_prod(h)
    h.start_loop()
    before = h.remote_file(PROD_K)
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    restarted = None
    try:
        await until(lambda: rec.clusters and h.store.current("oslo-prod").revision == rec.commit, "the new bundle")
        h.report("oslo-prod")
        await until(lambda: rec.state == "verifying", "verifying")  # prod's soak (60 s) has begun
        h.clock.advance(40)
        await h.promoter.close()  # the hub stops: its follow task is gone
        restarted = restarted_promoter(h)
        assert await restarted.resume() == [rec.id]
        again = restarted.records[rec.id]
        assert again.state == "verifying" and again.commit == rec.commit
        if outcome == "done":
            h.clock.advance(21)  # 61 s since the soak began: the clock was kept across the restart
            await until(lambda: again.state == "done", "done")
        else:
            h.report("oslo-prod", ready=False)  # unhealthy within the soak: the resumed follow rolls back
            await until(lambda: again.state == "rolled-back", "rolled back")
            assert again.rollback_commit and h.remote_head() == again.rollback_commit
            assert h.remote_file(PROD_K) == before
        assert await restarted_promoter(h).resume() == []  # finished: nothing left to resume
    finally:
        if restarted is not None:
            await restarted.close()
        await h.stop()


async def test_a_hub_stopped_right_after_its_promotion_commit_has_the_promotion_resumed(harness):
    """The commit's record carries its follow state: a hub that dies before it began following (no
    render yet, no report) leaves a promotion the next one follows, auto-rollback included."""
    h = harness
    await ready_for_prod(h)
    h.start_loop()
    before = h.remote_file(PROD_K)
    rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")
    await h.promoter.close()  # stopped before its follow task ever ran: the commit's record is all it stored
    restarted = restarted_promoter(h)
    try:
        assert await restarted.resume() == [rec.id]
        again = restarted.records[rec.id]
        assert again.commit == rec.commit
        await until(lambda: h.store.current("oslo-prod").revision == rec.commit, "the new bundle")
        h.report("oslo-prod", ready=False)  # unhealthy within the soak: the resumed follow rolls back
        await until(lambda: again.state == "rolled-back", "rolled back")
        assert h.remote_file(PROD_K) == before
    finally:
        await restarted.close()
        await h.stop()


async def test_a_hub_replica_that_is_not_the_writer_refuses_to_promote_or_roll_back_and_pushes_nothing(harness):
    """A replica that synced before (it was the writer once) knows the fleet, yet commits nothing: its record
    and follow could not be stored, so nobody would follow or roll back what it pushed."""
    h = harness
    await ready_for_prod(h)
    head = h.remote_head()
    standby = restarted_promoter(h, may_write=lambda: False)
    try:
        with pytest.raises(Unavailable):
            await standby.promote(operator("alice"), "web", "dev", "prod")
        with pytest.raises(Unavailable):
            await standby.rollback(operator("alice"), "web", "prod", head)
        assert h.remote_head() == head
        rec = await h.promoter.promote(operator("alice"), "web", "dev", "prod")  # the writer does
        assert rec.state == "committed" and h.remote_head() == rec.commit
    finally:
        await standby.close()
        await h.stop()
