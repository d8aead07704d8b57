"""The hub's composition root: config -> trust repository, Git source, engine, store, sync loop, gRPC server.

``HubApp`` is what tests run in-process (``await app.start()`` returns the
port, ``await app.stop()``); ``run(config)`` is what ``skerry hub serve``
runs until SIGTERM/SIGINT. Start-up order: open the hub state and try for the
writer lease (``--role writer|both``), open the TUF trust repository (its files
in the state; ``--trust-dir`` is the writer's import and export), restore the
released bundles from the state, find the render tool, sync once if this
process is the writer (failures are logged, not fatal), start serving, start
following the state (``skerry.hub.replica``) and the writer's duties
(``skerry.hub.writer.Duties``: sync loop, trust refresh, promotions, under the
lease), then write the ready file ``{"port": N, "trust_root": "<path>", "role":
...}`` atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib

import structlog

from skerry.core import trust as trust_layout
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import ConfigError, SkerryError
from skerry.core.files import as_refusal, atomic_write, read_bounded
from skerry.core.openfiles import raise_open_files
from skerry.hub.admission import AdmissionGate
from skerry.hub.catchup import CatchUp
from skerry.hub.listeners import enroll_server, enrollment_service, hub_server
from skerry.hub.presence import Presence
from skerry.hub.replica import Follower, ServedFleet, StoredFleet, SyncRecords
from skerry.hub.reports import FLUSH_SECONDS, ReportJournal
from skerry.hub.state import StateUnavailable
from skerry.hub.state.threads import AGENT_MAX_WAITING, AGENT_THREADS, StateThreads
from skerry.hub.writer import Duties, Releases, Writer

log = structlog.get_logger("skerry.hub")


def _atomic_write(path: pathlib.Path, data: bytes, mode: int = 0o644) -> None:
    """``skerry.core.files.atomic_write`` with this module's default: public files (0644)."""
    atomic_write(path, data, mode)


# A token or secret file holds one line; anything bigger is not one.
MAX_SECRET_FILE_BYTES = 64 * 1024


def _read_secret(path: pathlib.Path | None, what: str) -> str:
    """One secret from a file (surrounding whitespace removed); the value is never logged."""
    assert path is not None
    data = read_bounded(path, MAX_SECRET_FILE_BYTES, f"{what} {path}", error=ConfigError)
    try:
        value = data.decode().strip()
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path}: not UTF-8 text") from e
    if not value:
        raise ConfigError(f"{what} {path}: is empty")
    return value


def open_hub_state(spec: str, *, state_dir: pathlib.Path, dsn_file: pathlib.Path | None, dsn: str | None):
    """The hub state ``spec`` names, opened and migrated; the DSN from ``dsn_file`` or ``dsn`` (environment)."""
    from skerry.hub.state import open_state

    if dsn_file is not None:
        dsn = _read_secret(dsn_file, "state DSN file")
    return open_state(spec, state_dir=state_dir, dsn=dsn)


def git_source(cfg):
    """The Git repository the hub follows (``--repo``), with its credentials and host-key checking."""
    from skerry.hub.source.git import GitAuth, GitSource

    auth = GitAuth(
        ssh_key=cfg.git_ssh_key,
        known_hosts=cfg.git_known_hosts,
        token=_read_secret(cfg.git_token_file, "git token file") if cfg.git_token_file else None,
    )
    return GitSource(cfg.repo, branch=cfg.branch, cache_dir=cfg.state_dir, tag=cfg.tag, commit=cfg.commit,
                     depth=cfg.depth, auth=auth, timeout=cfg.git_timeout)


def webhook_server(cfg, request_sync, count_refusal=None):
    """The push webhook (``--webhook-listen``) asking for a sync when the followed ref moves; None if off."""
    if cfg.webhook_listen is None:
        return None
    from skerry.hub.webhook import WebhookHandler, WebhookServer

    secret = _read_secret(cfg.webhook_secret_file, "webhook secret file").encode()
    if cfg.commit:
        refs: set[str] = set()  # a pinned commit never moves
    elif cfg.tag:
        refs = {f"refs/tags/{cfg.tag}"}
    else:
        refs = {f"refs/heads/{cfg.branch}"}
    try:
        handler = WebhookHandler(secret, lambda: refs, request_sync, count_refusal)
    except ValueError as e:
        raise ConfigError(f"webhook secret file {cfg.webhook_secret_file}: {e}") from e
    return WebhookServer(handler, cfg.webhook_listen)


def write_ready(cfg, ports: dict) -> None:
    """The ready file: ``{"port": N, "trust_root": PATH, "role": ..., <ops and enroll ports>}``, atomically."""
    root = str(cfg.trust_dir / "root.json") if cfg.trust_dir is not None else ""
    _atomic_write(cfg.ready_file, json.dumps({**ports, "trust_root": root, "role": cfg.role}).encode() + b"\n")


def _log_failed(event: str, error: BaseException, what: str) -> None:
    """In an ``except`` block: one line with a named reason for a refusal or an OS error (e.g. a full
    disk, ``as_refusal``), a traceback for anything else."""
    if isinstance(error, (SkerryError, OSError)):
        failed = as_refusal(error, what)
        log.error(event, reason=failed.reason, error=str(failed))
    else:
        log.exception(event)


def environment_of(syncer, cluster: str) -> str:
    """A cluster's environment: its ``env`` label in the fleet file (``default`` if it has none)."""
    fleet = syncer.fleet if syncer is not None else None
    try:
        return str(fleet.cluster(cluster).labels.get("env", "default")) if fleet is not None else "default"
    except Exception:  # noqa: BLE001 - unknown cluster
        return "default"


def follow_state(state, writer, store, syncer, trust, blob, presence, catch_up,
                 writes) -> tuple[Follower, ServedFleet]:
    """How this process follows the state (``Follower``) and what its servicer shows of the fleet: only the
    writer syncs, records the fleet and render errors after each sync (``SyncRecords``); the others show them.
    Their writes run on ``writes`` (``StateThreads``)."""
    syncer.observers.append(SyncRecords(state, writer, store, syncer, off_loop=writes.run).observe)
    stored = StoredFleet()
    follower = Follower(state, store, trust, blob=blob, writer=writer, fleet=stored, presence=presence,
                        catch_up=catch_up, off_loop=writes.run)
    return follower, ServedFleet(syncer, stored, lambda: writer.is_writer)


def status_board(state, clock) -> tuple:
    """The status board, the promotion health tracker it feeds (soak times) and its journal in the state, from
    which reports and soak clocks are restored (they survive a restart): (board, tracker, journal)."""
    from skerry.hub.promotion.gates import HealthTracker
    from skerry.hub.promotion.service import TrackingStatusBoard

    tracker, journal = HealthTracker(), ReportJournal(state)
    board = TrackingStatusBoard(tracker, clock, journal=journal)
    board.restore(journal.load())
    return board, tracker, journal


class HubApp:
    def __init__(self, config, *, engine=None, clock: Clock | None = None):
        self.config = config
        self.clock = clock or SystemClock()
        self._engine = engine
        self._own_engine = None  # an engine this app made (and closes)
        self.store = self.statuses = self.syncer = self.server = self.ops = self.servicer = None
        self.trust = self.attestations = self.enrollment = self.enroll_server = self.webhook = None
        self.promoter = self.health_tracker = self.journal = None
        self.state = self.writer = self.follower = self.duties = self._files = None
        self.port = self.enroll_port = self.webhook_port = None  # int once serving
        self._tasks: dict[str, asyncio.Task] = {}  # the loops that run while serving
        self._flush_task: asyncio.Task | None = None
        self._stopped = False
        self.presence = Presence()  # real time: whether this process ran (not the injected clock's)
        self.catch_up = CatchUp()  # whether its copy reached what an agent holds (real time, like presence)
        self.writes = StateThreads()  # the state writes' own threads: a stalled database holds only them
        self.agent_calls = StateThreads(AGENT_THREADS, max_waiting=AGENT_MAX_WAITING, name="agent-state")  # agents': apart

    async def start(self) -> int:
        from skerry.hub.enrollment.service import Enrollment, EnrollmentServicer
        from skerry.hub.ops import HubOps
        from skerry.hub.render.detect import detect_engine
        from skerry.hub.servicer import HubServicer
        from skerry.hub.state.trust_files import TrustFiles
        from skerry.hub.sync import Syncer
        from skerry.hub.trust.awaiting import open_trust

        cfg = self.config
        tls_files = cfg.require_tls()
        if cfg.role != "serve":  # a serving replica needs no keys: it serves what the writer published
            cfg.require_trust()
        self.state = await asyncio.to_thread(
            open_hub_state, cfg.state, state_dir=cfg.state_dir, dsn_file=cfg.state_dsn_file, dsn=cfg.state_dsn
        )
        self.writer = Writer(self.state, cfg.hub_id, ttl=cfg.lease_ttl, off_loop=self.writes.run)
        if cfg.role != "serve":  # a lone hub writes from its first sync on; else it stands by, serving
            await asyncio.to_thread(self.writer.try_acquire)
            # renewed from now on (a first start, its import and first sync may outlast the lease)
            self._tasks["lease"] = asyncio.create_task(self.writer.hold(), name="skerry-hub-lease")
        self.ops = HubOps(cfg, self.clock)  # metrics, ops server, dashboard (skerry/hub/ops.py)
        self.ops.start_probes()  # answered (not ready, and why) while the hub may still wait below
        self.enrollment = Enrollment.open(cfg.state_dir, self.state, lifetime=cfg.agent_cert_lifetime)
        if self._engine is None:  # made here, so closed here (its render worker process) on stop
            self._engine = self._own_engine = await asyncio.to_thread(detect_engine, cfg.engine, timeout=cfg.render_timeout)
        engine = self.ops.engine(self._engine)
        source = git_source(cfg)
        # TUF files live in the hub state (every replica serves them); the trust directory is an export.
        self._files = TrustFiles(self.state, None if cfg.role == "serve" else self.writer)
        self.trust = await open_trust(cfg, self._files, self.state, self.writer, self.clock, waiting=self.ops.waiting)
        if self.writer.is_writer and self._tasks.get("lease", None) is not None and self._tasks["lease"].done():
            self._tasks["lease"] = asyncio.create_task(self.writer.hold(), name="skerry-hub-lease")  # took it waiting
        trust_service = self._start_trust(cfg)
        self.statuses, self.health_tracker, self.journal = status_board(self.state, self.clock)
        self.syncer = Syncer(source, engine, self.store, statuses=self.statuses,
                             before_publish=lambda: self.follower.ready_to_publish())  # (made just below)
        self.follower, fleet_view = follow_state(self.state, self.writer, self.store, self.syncer, self.trust,
                                                 self._files.blob, self.presence, self.catch_up, self.writes)
        gate = AdmissionGate(cfg.stream_admission_rate, cfg.stream_admission_burst, max_streams=cfg.max_streams or None)
        self.ops.attach(self.store, self.statuses, self.syncer, self.state, self.writes.run, max_streams=gate.max_streams)
        self.servicer = HubServicer(self.store, self.statuses, fleet_view, clock=self.clock,
                                    revocations=self.enrollment.revocations, may_sync=lambda: self.writer.is_writer,
                                    admission=gate, presence=self.presence, catch_up=self.catch_up)
        enrollment = enrollment_service(EnrollmentServicer(self.enrollment, self.agent_calls.run))
        promotion = self._promotion(cfg, source)
        self.ops.promotion_source(self.promoter)  # promotion history on the dashboard
        self.server = hub_server(cfg, tls_files, self.servicer, self.enrollment, self.promoter, self.ops,
                                 [trust_service, enrollment, promotion])
        self.enroll_server = enroll_server(cfg, tls_files, enrollment[0], self.enrollment.revocations,
                                           self.ops.metrics.refused.count)
        log.info("hub starting", repo=source.url, branch=cfg.branch, engine=engine.name, engine_version=engine.version)
        if self.writer.is_writer:
            try:
                await self.syncer.sync_once()
            except Exception as e:  # noqa: BLE001 - the loop retries; the hub serves what it can meanwhile
                _log_failed("first sync failed", e, "the hub's state or trust repository")
        self.port = await self.server.start()
        ports = {"port": self.port, **await self.ops.start()}
        if self.enroll_server is not None:
            self.enroll_port = ports["enroll_port"] = await self.enroll_server.start()
        self.webhook = webhook_server(cfg, self.syncer.request_sync, self.ops.metrics.refused.count_reason)
        if self.webhook is not None:
            self.webhook_port = await self.webhook.start()
        self._start_tasks()
        if cfg.ready_file is not None:
            write_ready(cfg, ports)
        log.info("hub serving", listen=cfg.listen, port=self.port, role=cfg.role, writer=self.writer.is_writer)
        return self.port

    def _start_tasks(self) -> None:
        """Follow the state; write while holding the lease; re-read revocations; store agents' reports."""
        if "lease" in self._tasks:  # the writer's duties renew it from here on
            self._tasks.pop("lease").cancel()
        self.ops.caught_up = lambda: self.follower.caught_up  # /readyz of a replica that does not sync
        loops = {"follow": self.follower.run(), "presence": self.presence.run(),
                 "revocations": self._watch_revocations()}
        if self.config.role != "serve":
            self.duties = Duties(self.writer, self._start_duties, self._stop_duties)
            loops["writer"] = self.duties.run()
        self._tasks = {name: asyncio.create_task(coro, name=f"skerry-hub-{name}") for name, coro in loops.items()}
        self._flush_task = asyncio.create_task(self._flush_reports(), name="skerry-hub-reports")

    async def _start_duties(self) -> list[asyncio.Task]:
        """This process became the writer: take the state as it is, then sync, sign and follow promotions."""
        if self.duties.terms > 1 or self.syncer.last_result is None:
            await self.follower.settle()  # drop anything signed under a lost lease (read off the loop)
            # What the previous writer's offers to CI left, in a fenced transaction, before anything publishes
            # (a publication's new blob is not yet among those it keeps). A database away fails this start and
            # ``Duties`` starts the term again: the collection is retried until it is done, the agents served
            # meanwhile from memory.
            await self.writes.run(self.trust.collect_stored_garbage)
            await self.follower.reload()
            try:  # every cluster again: a re-render with unchanged content releases nothing
                await self.syncer.sync_once(force=True)
            except Exception:  # noqa: BLE001 - the loop retries
                log.exception("first sync as writer failed")
        if resumed := await self.promoter.resume():  # rollouts a previous writer was following
            log.info("resumed following promotions", ids=resumed)
        # The first sync already ran; the next one is an interval (or a trigger) away.
        return [asyncio.create_task(self.syncer.run(self.config.interval, immediately=False), name="skerry-hub-sync"),
                asyncio.create_task(self._trust_loop(), name="skerry-hub-trust")]

    async def _stop_duties(self) -> None:
        await self.promoter.close()  # the next writer resumes them from the state

    def _start_trust(self, cfg) -> tuple:
        """The store directs through the trust repository; TrustService serves it: its (register, name)."""
        from skerry.api.v1 import trust_pb2_grpc
        from skerry.hub.bundles.store import BUNDLE_RECORD, HubStore
        from skerry.hub.trust.attest import AttestationBoard, StateBook
        from skerry.hub.trust.servicer import SERVICE_NAME as TRUST_SERVICE
        from skerry.hub.trust.servicer import TrustServicer

        files = self._files
        self.store = HubStore(
            self.trust, environment_of=lambda c: environment_of(self.syncer, c), clock=self.clock,
            releases=Releases(self.writer, journal=files),
        )
        with self.state.read() as tx:  # what was released before: an unchanged re-render releases nothing
            released = tx.records(BUNDLE_RECORD)
        self.store.restore(released, files.blob)
        self.trust.on_change(lambda role: trust_layout.is_release_side(role) and self.store.retry_pending())
        self.attestations = AttestationBoard(self.clock, StateBook(self.state))  # nonces, signed reports
        trust_servicer = TrustServicer(self.trust, self.store, self.attestations,
                                       lambda c: environment_of(self.syncer, c),
                                       cfg.require_tls().ca.read_bytes(), self.enrollment.authority.ca_pem,
                                       submit=lambda role, data: self.follower.submit_release(role, data),  # (made later)
                                       presence=self.presence, catch_up=self.catch_up, off_loop=self.agent_calls.run)
        if self.writer.is_writer:
            self.trust.refresh()
        return (lambda server: trust_pb2_grpc.add_TrustServiceServicer_to_server(trust_servicer, server),
                TRUST_SERVICE)

    async def _trust_loop(self) -> None:
        """Re-sign online metadata before it expires; adopt offline changes (`skerry keys`)."""
        while True:
            await asyncio.sleep(self.config.trust_refresh)
            try:  # the state is read off the loop; a database away skips the tick (agents keep what they have)
                if await asyncio.to_thread(self.trust.reload_due) and self.trust.reload():
                    self.store.retry_pending()
                self.trust.refresh()
            except Exception as e:  # noqa: BLE001 - retried next tick (e.g. a full disk); agents keep what they have
                _log_failed("trust refresh failed; retrying", e, "the trust repository")

    async def _flush_reports(self) -> None:
        """Commit the agents' reports and soak clocks every ``FLUSH_SECONDS``; take in the other replicas'."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self.journal.adopt(self.statuses, await asyncio.to_thread(self.journal.exchange))
            except StateUnavailable as e:
                log.error("cannot store agent reports; retrying", reason=e.reason, error=str(e))

    def _promotion(self, cfg, source):
        """PromotionService (issue 8): its own Git mirror, audit log; its (register, name)."""
        from skerry.api.v1 import promotion_pb2_grpc
        from skerry.hub.promotion.approvals import Approvals
        from skerry.hub.promotion.audit import AuditLog
        from skerry.hub.promotion.records import RecordStore
        from skerry.hub.promotion.service import Promoter, PromotionSettings
        from skerry.hub.promotion.servicer import SERVICE_NAME as PROMOTION_SERVICE
        from skerry.hub.promotion.servicer import PromotionServicer
        from skerry.hub.source.git import GitSource

        audit = AuditLog(self.state, clock=self.clock, write=self.writer.write, off_loop=self.writes.run)
        approvals = Approvals(self.state, audit, self.clock, write=self.writer.write, off_loop=self.writes.run)
        # The first start after an upgrade takes in the files older hubs wrote (renamed *.imported).
        audit.import_previous(cfg.state_dir / "promotion-audit.jsonl")
        approvals.import_previous(cfg.state_dir / "promotion-approvals.json")
        # Same credentials and host-key checking as the sync source (the push reuses them).
        writer = GitSource(cfg.repo, branch=cfg.branch, cache_dir=cfg.state_dir / "promotion", auth=source.auth)
        self.promoter = Promoter(
            source=writer,
            fleet=self.syncer,
            store=self.store,
            statuses=self.statuses,
            tracker=self.health_tracker,
            audit=audit,
            settings=PromotionSettings(push_url=cfg.push_url, push_branch=cfg.push_branch, ssh_key=cfg.push_ssh_key),
            clock=self.clock,
            approvals=approvals,
            # TUF mode: gates trust only reports the agent signed with a hub nonce (no replay, no forgery).
            attestations=self.attestations,
            # Records and follow state in the hub state, written in the writer's fenced transactions.
            records=RecordStore(self.state, write=self.writer.write, off_loop=self.writes.run),
            may_write=lambda: self.writer.is_writer,  # only the writer commits, pushes and follows
        )
        servicer = PromotionServicer(self.promoter)
        return (lambda server: promotion_pb2_grpc.add_PromotionServiceServicer_to_server(servicer, server),
                PROMOTION_SERVICE)

    async def _watch_revocations(self) -> None:
        """Re-read the revocation list (`skerry cluster revoke`); end revoked streams, tell the sealers."""
        from skerry.hub.enrollment.revocation import RELOAD_SECONDS

        assert self.enrollment is not None and self.servicer is not None
        while True:
            await asyncio.sleep(RELOAD_SECONDS)
            try:
                if await asyncio.to_thread(self.enrollment.revocations.reload):  # a database away: not on the loop
                    log.info("revocation list changed", path="enrollment/revocations.json")
                    self.servicer.recheck_streams()
                    await self.enrollment.revocations_changed()
            except ConfigError as e:
                log.error("revocation list unreadable; keeping the previous one", error=str(e))

    async def wait(self) -> None:
        if self.server is not None:
            await self.server.wait()

    async def stop(self, grace: float | None = None) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            await self._stop_serving(grace)
        finally:
            await self._close_state()

    async def _close_state(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
        if self.journal is not None:
            with contextlib.suppress(StateUnavailable):
                await asyncio.to_thread(self.journal.flush)
        if self.writer is not None:
            await asyncio.to_thread(self.writer.release)  # the next writer need not wait out the lease
        for threads in (self.writes, self.agent_calls):  # what still waits is dropped; a running call ends
            threads.shutdown()  # as the state closes
        if self.state is not None:
            self.state.close()
        if hasattr(self._own_engine, "close"):  # None has no close
            await asyncio.to_thread(self._own_engine.close)

    async def _stop_serving(self, grace: float | None) -> None:
        if self.server is None:  # never started (or failed before serving): only the probes may be up
            if self.ops is not None:
                await self.ops.stop()
            return
        for task in self._tasks.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.enroll_server is not None:
            await self.enroll_server.stop(0)
        if self.webhook is not None:
            await self.webhook.stop()
        if self.promoter is not None:
            await self.promoter.close()
        await self.server.stop(grace)
        await self.ops.stop()
        if self.config.ready_file is not None:
            with contextlib.suppress(FileNotFoundError):
                pathlib.Path(self.config.ready_file).unlink()
        log.info("hub stopped")


async def run(config) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit status."""
    from skerry.core import logging as skerry_logging

    skerry_logging.configure(config.log_level)
    raise_open_files()  # the process's: each agent holds a connection, and the stream cap is derived from it
    app = HubApp(config)
    try:
        await app.start()
        app.server.install_signal_handlers()
        await app.wait()
    finally:
        await app.stop(grace=0)
    return 0
