"""Composition root of the sealer: config -> key registry -> gate -> gRPC server.

``SealerApp`` runs in-process (tests, the demo) and ``run`` is the
long-running service behind ``skerry sealer serve``. Keys are opened (and on
first start generated) before the port opens, so a listening sealer can
always seal and unseal. Once serving, ``{"port": N}`` (and ``"cert_port"``
when the certificate HTTP endpoint is on) is written atomically to the ready
file when one is configured, so callers can start on port 0.

A background task re-reads key storage every ``keys_refresh_seconds`` (keys
rotated, restored or retired with ``skerry sealer keys`` appear without a
restart) and adds a key when the newest is ``renewal_days`` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import os
import pathlib

import structlog

from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
from skerry.core import tls
from skerry.core.errors import ConfigError, SkerryError
from skerry.core.metrics import GrpcMetricsInterceptor, OpsServer, new_registry
from skerry.core.rpc import GrpcServer, peer_name
from skerry.sealer.authz import (
    RULES,
    ClusterDomains,
    UnsealGate,
    audit_refusals,
    decryption_limiter,
    rpc_limiters,
)
from skerry.sealer.bundle_trust import BundleTrust, TufBundleTrust
from skerry.sealer.certhttp import CertificateServer
from skerry.sealer.config import SealerConfig
from skerry.sealer.keys import KeyRegistry, configured_kek
from skerry.sealer.metrics import InstrumentedGate, KeyAgeCollector, SealerMetrics
from skerry.sealer.revocations import HubRevocations, follow
from skerry.sealer.servicer import SealerServicer

log = structlog.get_logger("skerry.sealer")

SERVICE_NAME = sealer_pb2.DESCRIPTOR.services_by_name["SealerService"].full_name


class SealerApp:
    def __init__(
        self,
        config: SealerConfig,
        *,
        registry: KeyRegistry | None = None,
        bundle_trust: BundleTrust | None = None,
    ):
        self.config = config.validate()
        self.registry = registry or KeyRegistry.from_directory(
            config.keys_dir, kek=configured_kek(config.kek_file, config.kek)
        )
        if bundle_trust is None and config.trust_root is not None:
            bundle_trust = TufBundleTrust(config.trust_root, config.tuf_state_dir)
        self.bundle_trust = bundle_trust
        domains = ClusterDomains.from_file(config.cluster_domains) if config.cluster_domains else ClusterDomains()
        self.gate = UnsealGate(
            self.registry,
            domains=domains,
            limiter=decryption_limiter(config.rate_per_second, config.rate_burst),
            bundle_trust=bundle_trust,
        )
        self.revocations = HubRevocations(config.revocations_file)
        self._server: GrpcServer | None = None
        self._cert_server = None
        self._keys_task: asyncio.Task | None = None
        self._revocations_task: asyncio.Task | None = None
        self._wrote_ready = False
        self.port: int | None = None
        self.cert_port: int | None = None
        self.metrics_port: int | None = None
        self._ops: SealerOps | None = None

    async def start(self) -> int:
        """Open the key domains, start serving and return the bound port."""
        credentials = tls.server_credentials(self.config.tls_files, require_client_auth=True)
        for domain in self.config.domains:
            await asyncio.to_thread(self.registry.open, domain)
        await self._maintain_keys()  # a sealer started after a long pause renews before serving
        if self.bundle_trust is None:
            log.warning(
                "no trust root configured: any agent identity may unseal any namespace of its domains; "
                "set SKERRY_SEALER_TRUST_ROOT to unseal only what each cluster's released bundle contains"
            )
        ops = self._ops = SealerOps(self.config, self.registry)  # metrics (skerry/sealer/metrics.py)
        if self.config.hub is None:
            log.warning("no hub configured (SKERRY_SEALER_HUB): the sealer learns no revocations",
                        persisted=len(self.revocations.clusters) + len(self.revocations.fingerprints))
        else:
            self._revocations_task = asyncio.create_task(
                follow(self.config.hub, tls.channel_credentials(self.config.tls_files), self.revocations),
                name="sealer-revocations",
            )
        servicer = SealerServicer(self.registry, ops.gate(self.gate))
        self._server = GrpcServer(
            self.config.listen,
            credentials,
            register=[lambda server: sealer_pb2_grpc.add_SealerServiceServicer_to_server(servicer, server)],
            service_names=[SERVICE_NAME],
            rules=RULES,
            revocations=self.revocations,
            on_refused=audit_refusals,
            method_limiters=rpc_limiters(self.config.rate_per_second, self.config.rate_burst),
            grace_seconds=self.config.grace_seconds,
            drain_seconds=self.config.drain,
            interceptors=[ops.interceptor],
            count_refusal=ops.metrics.refused.count,
        )
        self.port = await self._server.start()
        if self.config.cert_listen:
            host, _, cport = self.config.cert_listen.rpartition(":")
            try:
                self._cert_server = CertificateServer(self.registry, host, int(cport),
                                                      count_refusal=ops.metrics.refused.count_reason)
            except OSError as e:
                await self._server.stop(0)
                raise ConfigError(f"cannot listen on {self.config.cert_listen}: {e.strerror}") from e
            self.cert_port = self._cert_server.start()
        self.metrics_port = ops.start()
        self._keys_task = asyncio.create_task(self._keys_loop(), name="sealer-keys")
        if self.config.ready_file is not None:
            try:
                _write_ready_file(self.config.ready_file, self.port, self.cert_port, self.metrics_port)
            except OSError as e:
                await self._server.stop(0)
                raise ConfigError(f"cannot write ready file {self.config.ready_file}: {e.strerror}") from e
            self._wrote_ready = True
        log.info(
            "sealer serving", address=self.config.listen, port=self.port, domains=list(self.registry.domains)
        )
        return self.port

    async def _maintain_keys(self) -> None:
        period = _dt.timedelta(days=self.config.renewal_days) if self.config.renewal_days else None
        for domain in self.config.domains:
            try:
                await asyncio.to_thread(self.registry.refresh, domain)
                if period is not None:
                    await asyncio.to_thread(self.registry.renew_if_due, domain, period)
            except SkerryError as e:
                log.error("key maintenance failed; keeping the loaded keys", domain=domain, error=str(e))

    async def _keys_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.keys_refresh_seconds)
            await self._maintain_keys()

    async def stop(self, grace: float | None = None) -> None:
        for task in (self._keys_task, self._revocations_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._keys_task = self._revocations_task = None
        if self._cert_server is not None:
            await asyncio.to_thread(self._cert_server.stop)
            self._cert_server = None
        if self._wrote_ready and self.config.ready_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.config.ready_file.unlink()
            self._wrote_ready = False
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
            log.info("sealer stopped")
        if self._ops is not None:
            self._ops.stop()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: report NOT_SERVING, drain for the grace period, stop."""
        if self._server is not None:
            self._server.install_signal_handlers()

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait()


async def run(config: SealerConfig) -> None:
    """Serve until SIGTERM/SIGINT."""
    app = SealerApp(config)
    await app.start()
    app.install_signal_handlers()
    try:
        await app.wait()
    finally:
        await app.stop(0)


def _write_ready_file(
    path: pathlib.Path, port: int, cert_port: int | None = None, metrics_port: int | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    doc = {"port": port}
    if cert_port is not None:
        doc["cert_port"] = cert_port
    if metrics_port is not None:
        doc["metrics_port"] = metrics_port
    tmp.write_text(json.dumps(doc) + "\n")
    os.replace(tmp, path)


class SealerOps:
    """The sealer's registry, gRPC metrics, unseal/key metrics and the optional ops HTTP server."""

    def __init__(self, config: SealerConfig, registry: KeyRegistry):
        self.config = config
        self.registry = new_registry()
        self.metrics = SealerMetrics(self.registry)
        self.registry.register(KeyAgeCollector(registry))
        self.interceptor = GrpcMetricsInterceptor(self.registry, peer_of=peer_name)
        self.server = None

    def gate(self, gate):
        return InstrumentedGate(gate, self.metrics)

    def start(self) -> int | None:
        if not self.config.metrics_listen:
            return None
        self.server = OpsServer(self.config.metrics_listen, self.registry)
        return self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
