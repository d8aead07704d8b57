"""Enrollment as the hub serves it: redeem a token, renew a certificate, authenticate agent peers.

``Enrollment`` holds the logic (pure apart from the files of its
collaborators); ``EnrollmentServicer`` only translates protos.
``Enrollment.authenticate(context)`` is the gate every hub RPC passes: the
verified mTLS identity plus the revocation check on its certificate.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import pathlib

import structlog

from skerry.api.v1 import enrollment_pb2, enrollment_pb2_grpc
from skerry.core.errors import PermissionDenied, Unauthenticated
from skerry.core.tls import ROLE_AGENT, Identity, identity_from_pem
from skerry.hub.enrollment.authority import AgentAuthority, IssuedCert, cert_times
from skerry.hub.enrollment.revocation import Revocations
from skerry.hub.enrollment.tokens import TokenIssuer, UsedTokens
from skerry.hub.state import HubState

log = structlog.get_logger("skerry.hub.enrollment")

SERVICE_NAME = enrollment_pb2.DESCRIPTOR.services_by_name["EnrollmentService"].full_name
DIR_NAME = "enrollment"


@dataclasses.dataclass(frozen=True)
class PeerCert:
    identity: Identity
    not_before: _dt.datetime
    not_after: _dt.datetime


@functools.lru_cache(maxsize=20_000)
def _parse_peer(pem: bytes) -> PeerCert:
    nb, na = cert_times(pem)
    return PeerCert(identity_from_pem(pem), nb, na)


class Enrollment:
    def __init__(self, tokens: TokenIssuer, used: UsedTokens, authority: AgentAuthority, revocations: Revocations):
        self.tokens = tokens
        self.used = used
        self.authority = authority
        self.revocations = revocations

    @classmethod
    def open(cls, state_dir: pathlib.Path, state: HubState, **authority_kw) -> Enrollment:
        """Keys and CA files under ``<state_dir>/enrollment``; spent tokens in ``state`` (imported once)."""
        d = pathlib.Path(state_dir) / DIR_NAME
        used = UsedTokens(state)
        imported = used.import_legacy(d)
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

    def renew(self, peer: PeerCert, csr_pem: bytes) -> IssuedCert:
        ident = peer.identity
        if not ident.has_role(ROLE_AGENT):
            raise PermissionDenied(f"{ident} may not renew: only agent certificates are renewed")
        issued = self.authority.sign_csr(csr_pem, ident.name)
        log.info("agent certificate renewed", cluster=ident.name, old=ident.fingerprint, fingerprint=issued.fingerprint)
        return issued

    def authenticate(self, context) -> PeerCert:
        auth = context.auth_context() or {}
        pems = auth.get("x509_pem_cert")
        if not pems:
            raise Unauthenticated("no verified client certificate on this connection (mutual TLS required)")
        peer = _parse_peer(bytes(pems[0]))
        self.check(peer)
        return peer

    def check(self, peer: PeerCert) -> None:
        ident = peer.identity
        if ident.has_role(ROLE_AGENT):
            self.revocations.check(ident.name, ident.fingerprint, peer.not_before)


def _response(issued: IssuedCert, ca_pem: bytes) -> enrollment_pb2.EnrollResponse:
    return enrollment_pb2.EnrollResponse(
        cluster=issued.cluster,
        certificate_pem=issued.cert_pem,
        client_ca_pem=ca_pem,
        not_after_unix=int(issued.not_after.timestamp()),
        fingerprint=issued.fingerprint,
    )


class EnrollmentServicer(enrollment_pb2_grpc.EnrollmentServiceServicer):
    def __init__(self, enrollment: Enrollment):
        self._e = enrollment

    async def Enroll(self, request, context):
        issued = self._e.enroll(request.token, request.csr_pem)
        return _response(issued, self._e.authority.ca_pem)

    async def Renew(self, request, context):
        peer = self._e.authenticate(context)
        issued = self._e.renew(peer, request.csr_pem)
        return _response(issued, self._e.authority.ca_pem)
