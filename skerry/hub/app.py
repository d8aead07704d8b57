"""The hub's composition root: config -> trust repository, Git source, engine, store, sync loop, gRPC server.

``HubApp`` is what tests run in-process (``await app.start()`` returns the
port, ``await app.stop()``); ``run(config)`` is what ``skerry hub serve``
runs until SIGTERM/SIGINT. Start-up order: open the TUF trust repository
(``--trust-dir``), find the render tool, sync once (failures are logged, not fatal: the
hub serves ``Unavailable`` until the fleet loads), start serving, start the
sync loop, then write the ready file ``{"port": N, "trust_root": "<path>"}``
atomically.
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
from skerry.core.files import as_refusal, atomic_write
from skerry.hub.reports import FLUSH_SECONDS, ReportJournal
from skerry.hub.state import StateUnavailable
from skerry.hub.writer import Releases, Writer

log = structlog.get_logger("skerry.hub")


def _atomic_write(path: pathlib.Path, data: bytes, mode: int = 0o644) -> None:
    """``skerry.core.files.atomic_write`` with this module's default: public files (0644)."""
    atomic_write(path, data, mode)


def _mtls_credentials(files, agent_ca_pem: bytes):
    """Mutual TLS trusting the operator's CA (``--tls-ca``) and the hub-run agent CA."""
    import grpc

    ca, cert, key = files.read()
    roots = ca.rstrip(b"\n") + b"\n" + agent_ca_pem
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=roots, require_client_auth=True)


# A token or secret file holds one line; anything bigger is not one.
MAX_SECRET_FILE_BYTES = 64 * 1024


def _read_secret(path: pathlib.Path | None, what: str) -> str:
    """One secret from a file (surrounding whitespace removed); the value is never logged."""
    assert path is not None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{what} {path}: cannot read: {e.strerror}") from e
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{what} {path}: over {MAX_SECRET_FILE_BYTES} bytes")
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


class HubApp:
    def __init__(self, config, *, engine=None, clock: Clock | None = None):
        self.config = config
        self.clock = clock or SystemClock()
        self._engine = engine
        self._own_engine = None
        self.store = None
        self.statuses = None
        self.syncer = None
        self.server = None
        self.ops = None
        self.port: int | None = None
        self._loop_task: asyncio.Task | None = None
        self._trust_task: asyncio.Task | None = None
        self.trust = None
        self.attestations = None
        self._revocation_task: asyncio.Task | None = None
        self._stopped = False
        self.enrollment = None
        self.servicer = None
        self.enroll_server = None
        self.enroll_port: int | None = None
        self.webhook = None
        self.webhook_port: int | None = None
        self.promoter = None
        self.health_tracker = None
        self.state = None
        self.writer = None
        self._lease_task: asyncio.Task | None = None
        self._flush_task: asyncio.Task | None = None
        self.journal = None

    async def start(self) -> int:
        from skerry.api.v1 import enrollment_pb2_grpc, hub_pb2_grpc
        from skerry.core.rpc import GrpcServer, RateLimiter, server_options
        from skerry.core.tls import server_credentials
        from skerry.hub.authz import audit_promotion_refusals, enrollment_rules, hub_rules
        from skerry.hub.enrollment.service import SERVICE_NAME as ENROLL_SERVICE
        from skerry.hub.enrollment.service import Enrollment, EnrollmentServicer
        from skerry.hub.ops import HubOps
        from skerry.hub.render.detect import detect_engine
        from skerry.hub.servicer import SERVICE_NAME, HubServicer
        from skerry.hub.source.git import GitAuth, GitSource
        from skerry.hub.sync import Syncer

        cfg = self.config
        tls_files = cfg.require_tls()
        cfg.require_trust()
        # agents' connections retire at their maximum age, so a scale-out of replicas rebalances
        options = server_options(max_connection_age=cfg.max_connection_age)
        self.state = await asyncio.to_thread(
            open_hub_state, cfg.state, state_dir=cfg.state_dir, dsn_file=cfg.state_dsn_file, dsn=cfg.state_dsn
        )
        self.writer = Writer(self.state, cfg.hub_id, ttl=cfg.lease_ttl)
        await self.writer.acquire()
        self._lease_task = asyncio.create_task(self.writer.keep(), name="skerry-hub-lease")
        releases = Releases(self.writer)
        self.enrollment = Enrollment.open(cfg.state_dir, self.state, lifetime=cfg.agent_cert_lifetime)
        credentials = _mtls_credentials(tls_files, self.enrollment.authority.ca_pem)
        if self._engine is None:  # made here, so closed here (its render worker process) on stop
            self._engine = self._own_engine = await asyncio.to_thread(
                detect_engine, cfg.engine, timeout=cfg.render_timeout
            )
        engine = self._engine
        self.ops = HubOps(cfg, self.clock)  # metrics, ops server, dashboard (skerry/hub/ops.py)
        engine = self.ops.engine(engine)
        auth = GitAuth(
            ssh_key=cfg.git_ssh_key,
            known_hosts=cfg.git_known_hosts,
            token=_read_secret(cfg.git_token_file, "git token file") if cfg.git_token_file else None,
        )
        source = GitSource(
            cfg.repo,
            branch=cfg.branch,
            cache_dir=cfg.state_dir,
            tag=cfg.tag,
            commit=cfg.commit,
            depth=cfg.depth,
            auth=auth,
            timeout=cfg.git_timeout,
        )
        register = []
        service_names = [SERVICE_NAME]
        self._start_trust(cfg, register, service_names, releases)
        self.statuses = self._status_board()
        self.syncer = Syncer(source, engine, self.store, statuses=self.statuses)
        self.ops.attach(self.store, self.statuses, self.syncer, self.state)
        servicer = HubServicer(self.store, self.statuses, self.syncer, clock=self.clock, revocations=self.enrollment.revocations)
        self.servicer = servicer
        enroll_servicer = EnrollmentServicer(self.enrollment)
        promotion = self._promotion(cfg, source)
        self.ops.promotion_source(self.promoter)  # promotion history on the dashboard
        self.server = GrpcServer(
            cfg.listen,
            credentials,
            register=[
                lambda server: hub_pb2_grpc.add_HubServiceServicer_to_server(servicer, server),
                lambda server: enrollment_pb2_grpc.add_EnrollmentServiceServicer_to_server(enroll_servicer, server),
                *promotion[0],
                *register,
            ],
            service_names=[*service_names, ENROLL_SERVICE, *promotion[1]],
            rules=hub_rules(self.promoter.policy),
            revocations=self.enrollment.revocations,
            on_refused=audit_promotion_refusals(self.promoter.audit.record),
            limiter=RateLimiter(),
            interceptors=[self.ops.interceptor],
            options=options,
        )
        if cfg.enroll_listen is not None:
            # Server-authenticated TLS only: enrolling agents have no client certificate yet.
            self.enroll_server = GrpcServer(
                cfg.enroll_listen,
                server_credentials(tls_files, require_client_auth=False),
                register=[
                    lambda server: enrollment_pb2_grpc.add_EnrollmentServiceServicer_to_server(
                        enroll_servicer, server
                    )
                ],
                service_names=[ENROLL_SERVICE],
                rules=enrollment_rules(),
                revocations=self.enrollment.revocations,
                limiter=RateLimiter(),
            )
        log.info(
            "hub starting",
            repo=source.url,
            branch=cfg.branch,
            engine=engine.name,
            engine_version=engine.version,
        )
        try:
            await self.syncer.sync_once()
        except (SkerryError, OSError) as e:  # the loop retries; the hub serves what it can meanwhile
            failed = as_refusal(e, "the hub's state or trust repository")
            log.error("first sync failed", reason=failed.reason, error=str(failed))
        except Exception:  # noqa: BLE001 - the loop retries; the hub serves what it can meanwhile
            log.exception("first sync failed")
        self.port = await self.server.start()
        if self.enroll_server is not None:
            self.enroll_port = await self.enroll_server.start()
        ops_ports = await self.ops.start()
        if cfg.webhook_listen is not None:
            from skerry.hub.webhook import WebhookHandler, WebhookServer

            secret = _read_secret(cfg.webhook_secret_file, "webhook secret file").encode()
            if cfg.commit:
                refs: set[str] = set()  # a pinned commit never moves
            elif cfg.tag:
                refs = {f"refs/tags/{cfg.tag}"}
            else:
                refs = {f"refs/heads/{cfg.branch}"}
            try:
                handler = WebhookHandler(secret, lambda: refs, self.syncer.request_sync)
            except ValueError as e:
                raise ConfigError(f"webhook secret file {cfg.webhook_secret_file}: {e}") from e
            self.webhook = WebhookServer(handler, cfg.webhook_listen)
            self.webhook_port = await self.webhook.start()
        resumed = self.promoter.resume()  # rollouts a previous process was following, after the first sync
        if resumed:
            log.info("resumed following promotions", ids=resumed)
        self._loop_task = asyncio.create_task(self._loop(), name="skerry-hub-sync")
        self._trust_task = asyncio.create_task(self._trust_loop(), name="skerry-hub-trust")
        self._revocation_task = asyncio.create_task(self._watch_revocations(), name="skerry-hub-revocations")
        self._flush_task = asyncio.create_task(self._flush_reports(), name="skerry-hub-reports")
        if cfg.ready_file is not None:
            ready = {"port": self.port, "trust_root": str(cfg.trust_dir / "root.json"), **ops_ports}
            if self.enroll_port is not None:
                ready["enroll_port"] = self.enroll_port
            _atomic_write(cfg.ready_file, json.dumps(ready).encode() + b"\n")
        log.info("hub serving", listen=cfg.listen, port=self.port, trust_dir=str(cfg.trust_dir))
        return self.port

    def _start_trust(self, cfg, register: list, service_names: list, releases) -> None:
        """The store directs through the trust repository; TrustService serves it."""
        from skerry.api.v1 import trust_pb2_grpc
        from skerry.hub.bundles.store import HubStore
        from skerry.hub.trust.attest import AttestationBoard
        from skerry.hub.trust.repository import TrustRepository
        from skerry.hub.trust.servicer import SERVICE_NAME as TRUST_SERVICE
        from skerry.hub.trust.servicer import TrustServicer

        self.trust = TrustRepository.open(cfg.trust_dir, clock=self.clock, release_keys=cfg.release_keys)
        self.store = HubStore(
            self.trust, environment_of=self._environment_of, clock=self.clock, releases=releases
        )
        self.trust.on_change(lambda role: trust_layout.is_release_side(role) and self.store.retry_pending())
        self.attestations = AttestationBoard(self.clock)
        trust_servicer = TrustServicer(self.trust, self.store, self.attestations, self._environment_of,
                                       cfg.require_tls().ca.read_bytes(), self.enrollment.authority.ca_pem)
        register.append(lambda server: trust_pb2_grpc.add_TrustServiceServicer_to_server(trust_servicer, server))
        service_names.append(TRUST_SERVICE)
        self.trust.refresh()

    def _environment_of(self, cluster: str) -> str:
        """A cluster's environment: its ``env`` label in the fleet file (``default`` if it has none)."""
        fleet = self.syncer.fleet if self.syncer is not None else None
        if fleet is not None:
            try:
                return str(fleet.cluster(cluster).labels.get("env", "default"))
            except Exception:  # noqa: BLE001 - unknown cluster
                pass
        return "default"

    async def _trust_loop(self) -> None:
        """Re-sign online metadata before it expires; adopt offline changes (`skerry keys`)."""
        while True:
            await asyncio.sleep(self.config.trust_refresh)
            try:
                if self.trust.reload():
                    self.store.retry_pending()
                self.trust.refresh()
            except (SkerryError, OSError) as e:  # e.g. a full disk: retried next tick
                failed = as_refusal(e, "the trust repository")
                log.error("trust refresh failed; retrying", reason=failed.reason, error=str(failed))
            except Exception:  # noqa: BLE001 - retried next tick; agents keep what they have meanwhile
                log.exception("trust refresh failed")

    def _status_board(self):
        """The status board; it also feeds the promotion health tracker (soak times)."""
        from skerry.hub.promotion.gates import HealthTracker
        from skerry.hub.promotion.service import TrackingStatusBoard

        self.health_tracker = HealthTracker()
        self.journal = ReportJournal(self.state)
        board = TrackingStatusBoard(self.health_tracker, self.clock, journal=self.journal)
        board.restore(self.journal.load())  # reports and soak clocks survive a restart
        return board

    async def _flush_reports(self) -> None:
        """Commit the agents' reports and soak clocks every ``FLUSH_SECONDS`` (one transaction each time)."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await asyncio.to_thread(self.journal.flush)
            except StateUnavailable as e:
                log.error("cannot store agent reports; retrying", reason=e.reason, error=str(e))

    def _promotion(self, cfg, source):
        """PromotionService (issue 8): its own Git mirror, audit log, and the servicer to register."""
        from skerry.api.v1 import promotion_pb2_grpc
        from skerry.hub.promotion.approvals import Approvals
        from skerry.hub.promotion.audit import AuditLog
        from skerry.hub.promotion.records import RecordStore
        from skerry.hub.promotion.service import Promoter, PromotionSettings
        from skerry.hub.promotion.servicer import SERVICE_NAME as PROMOTION_SERVICE
        from skerry.hub.promotion.servicer import PromotionServicer
        from skerry.hub.source.git import GitSource

        audit = AuditLog(self.state, clock=self.clock)
        approvals = Approvals(self.state, audit, self.clock)
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
            settings=PromotionSettings(
                push_url=cfg.push_url, push_branch=cfg.push_branch, ssh_key=cfg.push_ssh_key
            ),
            clock=self.clock,
            approvals=approvals,
            # TUF mode: gates trust only reports the agent signed with a hub nonce (no replay, no forgery).
            attestations=self.attestations,
            # Records and follow state in the hub state, written in the writer's fenced transactions.
            records=RecordStore(self.state, write=self.writer.write),
        )
        servicer = PromotionServicer(self.promoter)
        return (
            [lambda server: promotion_pb2_grpc.add_PromotionServiceServicer_to_server(servicer, server)],
            [PROMOTION_SERVICE],
        )

    async def _loop(self) -> None:
        assert self.syncer is not None
        # The first sync already ran in start(); the next one is an interval (or a trigger) away.
        await self.syncer.run(self.config.interval, immediately=False)

    async def _watch_revocations(self) -> None:
        """Re-read the revocation list when `skerry cluster revoke` changes it; end revoked streams and
        tell the sealers following WatchRevocations."""
        from skerry.hub.enrollment.revocation import RELOAD_SECONDS

        assert self.enrollment is not None and self.servicer is not None
        while True:
            await asyncio.sleep(RELOAD_SECONDS)
            try:
                if self.enrollment.revocations.reload():
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
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
        if self.writer is not None:
            await asyncio.to_thread(self.writer.release)  # the next writer need not wait out the lease
        if self.state is not None:
            self.state.close()
        if self._own_engine is not None and hasattr(self._own_engine, "close"):
            await asyncio.to_thread(self._own_engine.close)

    async def _stop_serving(self, grace: float | None) -> None:
        if self.server is None:  # never started (or failed before serving)
            return
        for task in (self._loop_task, self._trust_task, self._revocation_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.enroll_server is not None:
            await self.enroll_server.stop(0)
        if self.webhook is not None:
            await self.webhook.stop()
        if getattr(self, "promoter", None) is not None:
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
    app = HubApp(config)
    try:
        await app.start()
        app.server.install_signal_handlers()
        await app.wait()
    finally:
        await app.stop(grace=0)
    return 0
