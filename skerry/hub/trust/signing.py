"""The CI side of a release: check the hub's proposal against an independent render, then sign.

A CI job holding one release key of an environment runs ``skerry keys sign``
per cluster. It signs only when (1) the bundle it rendered itself from Git
at the proposed commit has exactly the proposed SHA-256 and length, and
(2) the proposed ``release-<env>`` version adds nothing but that bundle to
the version the hub currently serves (so a compromised hub cannot slip
other targets into the signed document). With a threshold of 2, two such
jobs (different runners, different keys) must agree before the hub can
publish it.
"""

from __future__ import annotations

import grpc
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Targets

from skerry.api.v1 import trust_pb2, trust_pb2_grpc
from skerry.core import trust
from skerry.core.canonical import sha256_digest, sha256_hex
from skerry.core.client import secure_channel
from skerry.core.errors import InvalidInput, Unavailable, VerificationError
from skerry.core.tls import TlsFiles
from skerry.hub.trust.repository import _SERIALIZER

RPC_TIMEOUT = 30.0


def _fetch(stub, path: str) -> bytes:
    return b"".join(c.data for c in stub.Fetch(trust_pb2.FetchRequest(path=path), timeout=RPC_TIMEOUT))


def check_proposal(proposal: Metadata, previous: Metadata | None, env: str, cluster: str, rendered: bytes) -> None:
    """Raise ``VerificationError`` unless ``proposal`` = ``previous`` + exactly our rendered bundle."""
    path = trust.release_path(env, cluster, sha256_hex(rendered))
    target = proposal.signed.targets.get(path)
    if target is None:
        raise VerificationError(f"the proposal does not contain our render {sha256_digest(rendered)} at {path}",
                                reason="DigestMismatch")
    target.verify_length_and_hashes(rendered)
    before = previous.signed.targets if previous is not None else {}
    for other, info in proposal.signed.targets.items():
        if other != path and (other not in before or before[other] != info):
            raise VerificationError(f"the proposal also adds {other}, which this job did not render",
                                    reason="ExtraneousTarget")
    want = (previous.signed.version if previous is not None else 0) + 1
    if proposal.signed.version != want:
        raise VerificationError(f"proposal version {proposal.signed.version}, expected {want}", reason="Rollback")


def sign_release(address: str, tls_files: TlsFiles, cluster: str, repo: str, branch: str,
                 signers: list[Signer]) -> trust_pb2.SubmitReleaseResponse:
    from skerry.hub.cli import _render_bundle

    with secure_channel(address, tls_files) as channel:
        stub = trust_pb2_grpc.TrustServiceStub(channel)
        try:
            prop = stub.GetReleaseProposal(trust_pb2.GetReleaseProposalRequest(cluster=cluster), timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            raise Unavailable(f"no release proposal for {cluster}: {e.details()}") from e
        rendered = _render_bundle(repo, cluster, branch, prop.revision, "json")
        if sha256_digest(rendered) != prop.digest:
            raise VerificationError(
                f"our render of {cluster} at {prop.revision} is {sha256_digest(rendered)}, the hub proposes "
                f"{prop.digest}: not signing", reason="DigestMismatch")
        try:
            proposal = Metadata[Targets].from_bytes(bytes(prop.metadata))
        except Exception as e:  # noqa: BLE001 - any parse failure
            raise InvalidInput(f"the hub's proposal is not TUF targets metadata: {e}") from e
        previous = None
        if proposal.signed.version > 1:
            try:
                previous = Metadata[Targets].from_bytes(
                    _fetch(stub, f"metadata/{proposal.signed.version - 1}.{prop.role}.json"))
            except grpc.RpcError as e:
                raise Unavailable(f"cannot fetch the current {prop.role}: {e.details()}") from e
        check_proposal(proposal, previous, prop.environment, cluster, rendered)
        for signer in signers:
            proposal.sign(signer, append=True)
        try:
            return stub.SubmitRelease(
                trust_pb2.SubmitReleaseRequest(role=prop.role, metadata=proposal.to_bytes(_SERIALIZER)),
                timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            raise Unavailable(f"the hub refused the signatures: {e.details()}") from e
