"""TrustService: proto <-> domain for the trust repository and signed reports.

Who may call what is the hub's table (``skerry.hub.authz``), enforced by the
server's interceptor before any code here runs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import structlog
from cryptography import x509

from skerry.api.v1 import trust_pb2, trust_pb2_grpc
from skerry.core import trust
from skerry.core.authz import identity
from skerry.core.canonical import sha256_digest, sha256_hex
from skerry.core.errors import NotFound, VerificationError
from skerry.hub.catchup import CatchUp
from skerry.hub.presence import Presence
from skerry.hub.state.threads import OffLoop
from skerry.hub.trust.attest import AttestationBoard
from skerry.hub.trust.releasing import SubmitResult
from skerry.hub.trust.repository import _SERIALIZER, TrustRepository

log = structlog.get_logger("skerry.hub.trust.servicer")

SERVICE_NAME = trust_pb2.DESCRIPTOR.services_by_name["TrustService"].full_name


class TrustServicer(trust_pb2_grpc.TrustServiceServicer):
    def __init__(self, repo: TrustRepository, store, board: AttestationBoard, environment_of, *ca_pems: bytes,
                 submit: Callable[[str, bytes], Awaitable[SubmitResult]] | None = None,
                 presence: Presence | None = None, catch_up: CatchUp | None = None,
                 off_loop: OffLoop = asyncio.to_thread):
        """``submit``: how SubmitRelease keeps and publishes signatures (the hub's: ``Follower.submit_release``,
        its state writes off the loop); without it, ``repo.submit_release`` (a repository without a state).
        ``presence``: whether this process may serve its copy of the metadata (not just back from away);
        ``catch_up``: whether that copy has reached the timestamp the caller trusts (``skerry.hub.catchup``);
        ``off_loop``: where callers' calls that touch the state run (the hub's agent state threads: agents' calls,
        and CI signers' proposals)."""
        self._off_loop = off_loop
        self._repo = repo
        self._presence = presence
        self._catch_up = catch_up or CatchUp()
        self._submit = submit or self._submit_here
        self._store = store
        self._board = board
        self._environment_of = environment_of
        self._cas = [x509.load_pem_x509_certificate(pem) for pem in ca_pems]  # fleet CA, enrollment CA

    async def Fetch(self, request: trust_pb2.FetchRequest, context):
        if self._presence is not None:  # metadata older than what agents trust is refused as a rollback
            self._presence.check()
        await self._catch_up.metadata(self._repo, request.trusted_timestamp, request.path)  # never older metadata
        data = self._repo.held(request.path)  # InvalidInput for traversal, NotFound if never served
        if data is None:  # only the disk or the hub state has it: read off the loop (the database may be away)
            data = await self._off_loop(self._repo.fetch, request.path)
        step = trust.FETCH_CHUNK
        for i in range(0, max(len(data), 1), step):
            yield trust_pb2.FetchChunk(data=data[i : i + step], total_size=len(data) if i == 0 else 0)

    async def GetReleaseProposal(self, request, context):
        cluster = request.cluster
        pending = self._store.pending(cluster)
        if pending is None:
            raise NotFound(f"cluster {cluster!r} has no bundle awaiting release signatures")
        bundle, data, _ = pending
        env = self._environment_of(cluster)
        md = self._repo.release_proposal(env, cluster, data, bundle.revision)
        role = self._repo.proposal_role(env, cluster, data)
        existing = await self._off_loop(self._repo.pending, role)  # collected signatures: a state read
        sigs = len(existing.signatures) if existing is not None and existing.signed == md.signed else 0
        return trust_pb2.ReleaseProposal(
            cluster=cluster, environment=env, role=role, revision=bundle.revision, digest=sha256_digest(data),
            metadata=md.to_bytes(_SERIALIZER), signatures=sigs, threshold=self._repo.role_threshold(role),
        )

    async def _submit_here(self, role: str, data: bytes) -> SubmitResult:
        return self._repo.submit_release(role, data)

    async def SubmitRelease(self, request, context):
        result = await self._submit(request.role, bytes(request.metadata))
        log.info("release signatures submitted", by=str(identity()), role=result.role, version=result.version,
                 signatures=result.signatures, threshold=result.threshold, published=result.published)
        return trust_pb2.SubmitReleaseResponse(version=result.version, signatures=result.signatures,
                                               threshold=result.threshold, published=result.published)

    async def IssueNonce(self, request, context):
        nonce, counter = await self._off_loop(self._board.issue, request.cluster)  # a state write
        return trust_pb2.IssueNonceResponse(nonce=nonce, counter=counter)

    def _check_chain(self, pem: bytes) -> None:
        cert = x509.load_pem_x509_certificate(pem)
        for ca in self._cas:
            try:
                cert.verify_directly_issued_by(ca)
                return
            except Exception:  # noqa: BLE001, S112 - try the next CA
                continue
        raise VerificationError("report certificate is not issued by the fleet CA", reason="ForgedReport")

    async def SubmitSignedReport(self, request: trust_pb2.SignedReport, context):
        await self._off_loop(functools.partial(  # a state write (the nonce spent, the report kept)
            self._board.submit, bytes(request.report), bytes(request.signature), bytes(request.certificate),
            ca_check=self._check_chain, submitter=identity().name))
        return trust_pb2.SubmitSignedReportResponse(accepted=True)

    async def GetAttestation(self, request, context):
        attested = await self._off_loop(self._board.latest, request.cluster)  # a state read
        if attested is None:
            raise NotFound(f"cluster {request.cluster!r} has not sent a signed report")
        return trust_pb2.SignedReport(report=attested.data, signature=attested.signature,
                                      certificate=attested.certificate)


__all__ = ["SERVICE_NAME", "TrustServicer", "sha256_hex"]
