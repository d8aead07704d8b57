"""Composition root of the sealer: config -> key registry -> gate -> gRPC server.

``SealerApp`` runs in-process (tests, the demo) and ``run`` is the
long-running service behind ``skerry sealer serve``. Keys are opened (and on
first start generated) before the port opens, so a listening sealer can
always seal and unseal. Once serving, ``{"port": N}`` is written atomically
to the ready file when one is configured, so callers can start on port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib

import structlog

from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
from skerry.core import tls
from skerry.core.errors import ConfigError
from skerry.core.rpc import GrpcServer
from skerry.sealer.authz import UnsealGate
from skerry.sealer.config import SealerConfig
from skerry.sealer.keys import KeyRegistry
from skerry.sealer.servicer import SealerServicer

log = structlog.get_logger("skerry.sealer")

SERVICE_NAME = sealer_pb2.DESCRIPTOR.services_by_name["SealerService"].full_name


class SealerApp:
    def __init__(self, config: SealerConfig, *, registry: KeyRegistry | None = None):
        self.config = config.validate()
        self.registry = registry or KeyRegistry.from_directory(config.keys_dir)
        self._server: GrpcServer | None = None
        self._wrote_ready = False
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._ops: SealerOps | None = None

    async def start(self) -> int:
        """Open the key domains, start serving and return the bound port."""
        credentials = tls.server_credentials(self.config.tls_files, require_client_auth=True)
        for domain in self.config.domains:
            await asyncio.to_thread(self.registry.open, domain)
        ops = self._ops = SealerOps(self.config, self.registry)  # metrics (skerry/sealer/metrics.py)
        servicer = SealerServicer(self.registry, gate=ops.gate(UnsealGate(self.registry)))
        self._server = GrpcServer(
            self.config.listen,
            credentials,
            register=[lambda server: sealer_pb2_grpc.add_SealerServiceServicer_to_server(servicer, server)],
            service_names=[SERVICE_NAME],
            grace_seconds=self.config.grace_seconds,
            interceptors=[ops.interceptor],
        )
        self.port = await self._server.start()
        self.metrics_port = ops.start()
        if self.config.ready_file is not None:
            try:
                _write_ready_file(self.config.ready_file, self.port, self.metrics_port)
            except OSError as e:
                await self._server.stop(0)
                raise ConfigError(f"cannot write ready file {self.config.ready_file}: {e.strerror}") from e
            self._wrote_ready = True
        log.info(
            "sealer serving", address=self.config.listen, port=self.port, domains=list(self.registry.domains)
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        if self._wrote_ready and self.config.ready_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.config.ready_file.unlink()
            self._wrote_ready = False
        if self._server is not None:
            await self._server.stop(grace)
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


def _write_ready_file(path: pathlib.Path, port: int, metrics_port: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    doc = {"port": port} if metrics_port is None else {"port": port, "metrics_port": metrics_port}
    tmp.write_text(json.dumps(doc) + "\n")
    os.replace(tmp, path)


class SealerOps:
    """The sealer's registry, gRPC metrics, unseal/key metrics and the optional ops HTTP server."""

    def __init__(self, config: SealerConfig, registry: KeyRegistry):
        from skerry.core.metrics import GrpcMetricsInterceptor, new_registry
        from skerry.core.rpc import peer_name
        from skerry.sealer.metrics import KeyAgeCollector, SealerMetrics

        self.config = config
        self.registry = new_registry()
        self.metrics = SealerMetrics(self.registry)
        self.registry.register(KeyAgeCollector(registry))
        self.interceptor = GrpcMetricsInterceptor(self.registry, peer_of=peer_name)
        self.server = None

    def gate(self, gate):
        from skerry.sealer.metrics import InstrumentedGate

        return InstrumentedGate(gate, self.metrics)

    def start(self) -> int | None:
        from skerry.core.metrics import OpsServer

        if not self.config.metrics_listen:
            return None
        self.server = OpsServer(self.config.metrics_listen, self.registry)
        return self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
