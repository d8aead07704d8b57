"""Enrollment as the hub serves it: redeem a token, renew a certificate, publish revocations.

``Enrollment`` holds the logic (pure apart from the files of its
collaborators); ``EnrollmentServicer`` only translates protos. Who may call
which RPC is the hub's table (``skerry.hub.authz``): ``Renew`` is for agents,
``WatchRevocations`` for sealers. ``revocations_changed`` wakes every open
``WatchRevocations`` stream once the hub re-read a changed list.
"""

from __future__ import annotations

import asyncio
import pathlib

import structlog

from skerry.api.v1 import enrollment_pb2, enrollment_pb2_grpc
from skerry.core.authz import identity
from skerry.core.revocation import RevokedSet
from skerry.core.tls import Identity
from skerry.hub.enrollment.authority import AgentAuthority, IssuedCert
from skerry.hub.enrollment.revocation import Revocations
from skerry.hub.enrollment.tokens import TokenIssuer, UsedTokens
from skerry.hub.state import HubState
from skerry.hub.state.threads import OffLoop

log = structlog.get_logger("skerry.hub.enrollment")

SERVICE_NAME = enrollment_pb2.DESCRIPTOR.services_by_name["EnrollmentService"].full_name
DIR_NAME = "enrollment"


class Enrollment:
    def __init__(self, tokens: TokenIssuer, used: UsedTokens, authority: AgentAuthority, revocations: Revocations):
        self.tokens = tokens
        self.used = used
        self.authority = authority
        self.revocations = revocations
        self._changed: asyncio.Condition | None = None  # made in the serving loop, on first use

    @classmethod
    def open(cls, state_dir: pathlib.Path, state: HubState, **authority_kw) -> Enrollment:
        """Keys and CA files under ``<state_dir>/enrollment``; spent tokens in ``state`` (imported once)."""
        d = pathlib.Path(state_dir) / DIR_NAME
        used = UsedTokens(state)
        imported = used.import_previous(d)
        if imported:
            log.info("imported spent enrollment tokens into the hub state", entries=imported)
        return cls(
            TokenIssuer.load_or_create(d),
            used,
            AgentAuthority.load_or_create(d, **authority_kw),
            Revocations(d, state),
        )

    def enroll(self, token: str, csr_pem: bytes) -> IssuedCert:
        claims = self.tokens.check(token)
        # Validate the CSR before burning the token, so a typo does not cost the operator a token.
        self.authority.sign_csr(csr_pem, claims.cluster)
        self.used.redeem(claims)
        issued = self.authority.sign_csr(csr_pem, claims.cluster)
        log.info("agent enrolled", cluster=claims.cluster, fingerprint=issued.fingerprint, not_after=issued.not_after.isoformat())
        return issued

    def renew(self, agent: Identity, csr_pem: bytes) -> IssuedCert:
        """A new certificate for the cluster ``agent`` (an authorised agent caller) speaks for."""
        issued = self.authority.sign_csr(csr_pem, agent.name)
        log.info("agent certificate renewed", cluster=agent.name, old=agent.fingerprint, fingerprint=issued.fingerprint)
        return issued

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def revocations_changed(self) -> None:
        """Wake every ``watch_revocations`` (call after ``revocations.reload()`` returned True)."""
        async with self._condition():
            self._condition().notify_all()

    async def watch_revocations(self):
        """The list now, then each changed list (an async iterator that never ends by itself)."""
        sent = None
        while True:
            current = self.revocations.revoked
            if current is not sent:
                sent = current
                yield current
            async with self._condition():
                if self.revocations.revoked is sent:
                    await self._condition().wait()


def _response(issued: IssuedCert, ca_pem: bytes) -> enrollment_pb2.EnrollResponse:
    return enrollment_pb2.EnrollResponse(
        cluster=issued.cluster,
        certificate_pem=issued.cert_pem,
        client_ca_pem=ca_pem,
        not_after_unix=int(issued.not_after.timestamp()),
        fingerprint=issued.fingerprint,
    )


def revocations_to_proto(revoked: RevokedSet) -> enrollment_pb2.RevocationList:
    return enrollment_pb2.RevocationList(
        clusters={k: int(v) for k, v in revoked.clusters.items()},
        fingerprints={k: int(v) for k, v in revoked.fingerprints.items()},
    )


class EnrollmentServicer(enrollment_pb2_grpc.EnrollmentServiceServicer):
    def __init__(self, enrollment: Enrollment, off_loop: OffLoop = asyncio.to_thread):
        """``off_loop``: where a redeemed token is spent in the state (the hub's agent state threads)."""
        self._e = enrollment
        self._off_loop = off_loop

    async def Enroll(self, request, context):
        issued = await self._off_loop(self._e.enroll, request.token, request.csr_pem)  # spends the token: a state write
        return _response(issued, self._e.authority.ca_pem)

    async def Renew(self, request, context):
        issued = self._e.renew(identity(), request.csr_pem)
        return _response(issued, self._e.authority.ca_pem)

    async def WatchRevocations(self, request, context):
        async for revoked in self._e.watch_revocations():
            yield revocations_to_proto(revoked)
