"""Hubs for transport tests, shared by their modules: a bare store + servicer behind real mTLS (no Git),
or a whole HubApp over a real Git repository; and a client channel with the production options."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import secrets

import grpc
from devtrust import DevTrust

from skerry.agent.enroll import enroll
from skerry.api.v1 import hub_pb2_grpc
from skerry.core.bundle import Bundle
from skerry.core.rpc import CHANNEL_OPTIONS, GrpcServer
from skerry.core.tls import ROLE_HUB, ROLE_SEALER, TlsFiles, channel_credentials, server_credentials
from skerry.hub.app import HubApp
from skerry.hub.authz import hub_rules
from skerry.hub.bundles.store import HubStore
from skerry.hub.config import HubConfig
from skerry.hub.promotion_policy import PromotionPolicy
from skerry.hub.servicer import SERVICE_NAME, HubServicer
from skerry.hub.status import StatusBoard
from skerry.hub.sync import SyncResult
from skerry.hub.trust import admin
from skerry.sealer.app import SealerApp
from skerry.sealer.config import SealerConfig
from skerry.sealer.keys import KeyRegistry

READ = 20.0
CALL_TIMEOUT = 20.0  # one authorisation probe or revocation wait
CHUNK = 64 * 1024


class StaticFleetView:
    """Stands in for the sync loop's view (no Git here): the fleet is 'loaded'."""

    fleet = object()
    revision = "0" * 40
    fleet_error = None

    async def sync_once(self, *, force: bool = False) -> SyncResult:
        return SyncResult(self.revision, False)


def bundle(cluster: str, size: int, tag: str = "") -> Bundle:
    data = secrets.token_hex(size // 2)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"big{tag}", "namespace": "x"},
          "data": {"blob": data}}
    return Bundle(cluster=cluster, revision="a" * 40, source_url="file:///fleet", paths=("p",),
                  engine="plain", engine_version="0", objects=(cm,))


def bare_server(tls: TlsFiles, trust_dir: pathlib.Path, *, limiter=None, clock=None, options=None,
                servicer_class=HubServicer):
    """``(store, servicer, server)``: a store for oslo and bergen (no Git) and the real servicer behind the
    real server, not started. ``servicer_class``: the servicer or a subclass (a test's recording one)."""
    store = HubStore(DevTrust(trust_dir).repository(), clock=clock)
    store.declare(["oslo", "bergen"])
    servicer = servicer_class(store, StatusBoard(), StaticFleetView(), chunk_bytes=CHUNK)
    server = GrpcServer(
        "127.0.0.1:0",
        server_credentials(tls),
        register=[lambda s: hub_pb2_grpc.add_HubServiceServicer_to_server(servicer, s)],
        service_names=[SERVICE_NAME],
        rules=hub_rules(PromotionPolicy),
        limiter=limiter,
        options=options,
    )
    return store, servicer, server


@contextlib.asynccontextmanager
async def bare_hub(pki, tmp_path, *, limiter=None, clock=None, options=None):
    """``options``: the server's gRPC options (default: the production set, ``core.rpc.SERVER_OPTIONS``)."""
    store, servicer, server = bare_server(pki.server("hub", ROLE_HUB), tmp_path / "trust", limiter=limiter,
                                          clock=clock, options=options)
    port = await server.start()
    try:
        yield store, servicer, server, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def channel(address, files):
    async with grpc.aio.secure_channel(address, channel_credentials(files), options=CHANNEL_OPTIONS) as ch:
        yield ch


@contextlib.asynccontextmanager
async def running_hub(repo, state_dir, pki, engine, *, clock=None, **config):
    """A whole HubApp on loopback; ``clock``: the hub's clock (default the system's)."""
    if "trust_dir" not in config:  # a dev trust repository beside the state, kept across a restart of the hub
        trust = DevTrust(pathlib.Path(state_dir).parent / "trust")
        config.update(trust_dir=trust.dir, release_keys=trust.release_keys)
    cfg = HubConfig(
        repo=str(repo.path),
        interval=3600,
        tls=pki.server("hub", ROLE_HUB),
        state_dir=state_dir,
        listen="127.0.0.1:0",
        enroll_listen="127.0.0.1:0",
        **config,
    )
    app = HubApp(cfg, engine=engine, clock=clock)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(grace=0)


async def enrolled(hub, pki, directory, cluster: str) -> TlsFiles:
    """An agent certificate from the hub's enrollment listener, for a token the hub minted."""
    token, _ = hub.enrollment.tokens.issue(cluster)
    got = await enroll(f"127.0.0.1:{hub.enroll_port}", token, pki.ca_file, directory)
    return TlsFiles(ca=pki.ca_file, cert=got.cert, key=got.key)


@contextlib.asynccontextmanager
async def fleet_of_servers(fleet_repo, tmp_path, pki, engine, *, metrics: bool = False):
    """A hub and a sealer on loopback; ``metrics``: both serve /metrics (``hub.ops.ops_server.port``,
    ``sealer.metrics_port``)."""
    admin.init(tmp_path / "trust", {"dev": (1, 1), "prod": (1, 1)})
    listen = "127.0.0.1:0" if metrics else ""
    async with running_hub(fleet_repo, tmp_path / "hub", pki, engine, trust_dir=tmp_path / "trust",
                           metrics_listen=listen) as hub:
        sealer_dir = tmp_path / "sealer"  # its own disk: it learns revocations from the hub only
        sealer_dir.mkdir()
        client_cas = sealer_dir / "client-cas.pem"
        client_cas.write_bytes(pki.ca_file.read_bytes() + hub.enrollment.authority.ca_pem)
        own = pki.server("sealer", ROLE_SEALER)
        cfg = SealerConfig(listen="127.0.0.1:0", tls_ca=client_cas, tls_cert=own.cert, tls_key=own.key,
                           keys_dir=sealer_dir / "keys", hub=f"127.0.0.1:{hub.port}", grace_seconds=0,
                           metrics_listen=listen)
        sealer = SealerApp(cfg, registry=KeyRegistry.from_directory(cfg.keys_dir, key_bits=2048))
        await sealer.start()
        try:
            await asyncio.wait_for(sealer.revocations.wait_received(1), CALL_TIMEOUT)
            yield hub, sealer
        finally:
            await sealer.stop(0)
