"""The hub's revocation list as this sealer follows it, so a revoked agent cannot unseal.

The sealer shares no disk with the hub: ``follow`` holds the hub's
``EnrollmentService.WatchRevocations`` stream open (mutual TLS with the
sealer's own ``skerry:sealer`` certificate), replacing the list in force on
every message, and reconnects with capped, jittered backoff when the hub is
away (to another replica when ``--hub`` names several). Every list received is written atomically to ``revocations.json``
beside the keys before it takes effect, and read back at start, so a sealer
restarted while the hub is down still refuses what the hub had revoked. A
persisted list that cannot be read stops the start (``ConfigError`` naming
the file): trusting every certificate instead would undo a revocation.
"""

from __future__ import annotations

import asyncio
import pathlib
import random

import grpc
import structlog

from skerry.api.v1 import enrollment_pb2, enrollment_pb2_grpc
from skerry.core.client import Endpoints, aio_secure_channel
from skerry.core.errors import ConfigError
from skerry.core.files import atomic_write
from skerry.core.revocation import RevocationList, RevokedSet, read_file

log = structlog.get_logger("skerry.sealer.revocations")

# Reconnect backoff (full jitter): quick after a hub restart, at most one attempt per
# RETRY_CAP_SECONDS per sealer while the hub is down.
RETRY_BASE_SECONDS = 0.2
RETRY_CAP_SECONDS = 10.0


class HubRevocations(RevocationList):
    """The list in force: the last one the hub sent, persisted at ``path``."""

    def __init__(self, path: pathlib.Path):
        self.path = pathlib.Path(path)
        stored = read_file(self.path)  # ConfigError on a corrupt file: refuse to start
        super().__init__(stored)
        self.received = 0  # lists received from the hub since start
        self._updated = asyncio.Event()

    def update(self, revoked: RevokedSet) -> None:
        """Persist, then enforce, a list from the hub."""
        if revoked != self.revoked or not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, revoked.to_bytes(), 0o600)
        self.revoked = revoked
        self.received += 1
        self._updated.set()

    async def wait_received(self, count: int) -> None:
        """Until at least ``count`` lists arrived (tests and readiness wait on it, never sleep)."""
        while self.received < count:
            self._updated.clear()
            await self._updated.wait()


def from_proto(msg: enrollment_pb2.RevocationList, source: str) -> RevokedSet:
    return RevokedSet.from_mapping({"clusters": dict(msg.clusters), "fingerprints": dict(msg.fingerprints)}, source)


async def follow(hub: str | Endpoints, credentials: grpc.ChannelCredentials, revocations: HubRevocations) -> None:
    """Follow the hub's list until cancelled; each failure is logged once per attempt and retried.

    ``hub`` may name the hub's replicas (``a:7440,b:7440``): any of them serves the same list (from the
    hub state), so a feed that breaks resumes from another, chosen afresh (``core.client.Endpoints``).
    """
    endpoints = hub if isinstance(hub, Endpoints) else Endpoints(hub, what="hub")
    attempt = 0
    while True:
        address = endpoints.current
        try:
            async with aio_secure_channel(address, credentials) as channel:
                stream = enrollment_pb2_grpc.EnrollmentServiceStub(channel).WatchRevocations(
                    enrollment_pb2.WatchRevocationsRequest()
                )
                async for msg in stream:
                    try:
                        revoked = from_proto(msg, f"hub {address}")
                    except ConfigError as e:
                        log.error("revocation list from the hub refused; keeping the previous one", error=str(e))
                        continue
                    if attempt or not revocations.received:
                        log.info("following the hub's revocation list", hub=address,
                                 clusters=len(revoked.clusters), fingerprints=len(revoked.fingerprints))
                    attempt = 0
                    revocations.update(revoked)
        except grpc.aio.AioRpcError as e:
            log.warning("revocation feed from the hub interrupted; the last list stays in force",
                        hub=address, code=e.code().name, error=e.details(), persisted=str(revocations.path))
        endpoints.failed(address)
        attempt += 1
        await asyncio.sleep(random.uniform(0, min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**min(attempt, 16))))
