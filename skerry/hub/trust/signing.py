"""The CI side of a release: check the hub's proposal against an independent render, then sign.

A CI job holding one release key of an environment runs ``skerry keys sign``
per cluster. It signs only when (1) the bundle the hub proposes (fetched by
its release path, checked against the proposed length and SHA-256) holds
exactly what the job rendered itself from Git at the proposed commit — the
same objects, source URL, commit and paths, for this cluster or for no
cluster (a blob shared by clusters built from the same inputs) — and (2) the
proposed version of the release bin adds nothing but that bundle to the
version the hub currently serves (so a compromised hub cannot slip other
targets into the signed document). The render engine is not compared: it is
not part of a bundle's identity, so a job whose kustomize differs from the
hub's but renders the same objects signs; one that renders other objects is
refused naming the first object that differs. With a threshold of 2, two
such jobs (different runners, different keys) must agree before the hub can
publish it.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Targets

from skerry.api.v1 import trust_pb2, trust_pb2_grpc
from skerry.core import trust
from skerry.core.bundle import Bundle, object_id, object_sort_key
from skerry.core.canonical import canonical_json, sha256_digest, sha256_hex
from skerry.core.client import secure_channel
from skerry.core.errors import InvalidInput, Unavailable, VerificationError
from skerry.core.tls import TlsFiles
from skerry.hub.trust.repository import _SERIALIZER

RPC_TIMEOUT = 30.0


def _fetch(stub, path: str) -> bytes:
    return b"".join(c.data for c in stub.Fetch(trust_pb2.FetchRequest(path=path), timeout=RPC_TIMEOUT))


def same_content(ours: Bundle, proposed: Bundle, cluster: str) -> None:
    """Raise ``VerificationError`` (``DigestMismatch``) naming the first difference between our render
    and the hub's proposed bundle; the render engine is provenance and not compared."""
    if proposed.cluster not in ("", cluster):
        raise VerificationError(f"the hub proposes a bundle of cluster {proposed.cluster!r}", reason="WrongCluster")
    for field in ("source_url", "revision", "paths"):
        if getattr(ours, field) != getattr(proposed, field):
            raise VerificationError(f"our render has {field} {getattr(ours, field)!r}, the hub proposes "
                                    f"{getattr(proposed, field)!r}: not signing", reason="DigestMismatch")
    mine = sorted(ours.objects, key=object_sort_key)
    theirs = sorted(proposed.objects, key=object_sort_key)
    for a, b in zip(mine, theirs, strict=False):
        if object_id(a) != object_id(b):
            first = min(object_id(a), object_id(b))
            side = "only in our render" if first == object_id(a) else "only in the hub's proposal"
            raise VerificationError(f"object {first} is {side}: not signing", reason="DigestMismatch")
        if canonical_json(a) != canonical_json(b):
            raise VerificationError(f"object {object_id(a)} differs between our render and the hub's proposal: "
                                    "not signing", reason="DigestMismatch")
    if len(mine) != len(theirs):
        extra, side = (mine, "our render") if len(mine) > len(theirs) else (theirs, "the hub's proposal")
        raise VerificationError(f"object {object_id(extra[min(len(mine), len(theirs))])} is only in {side}: "
                                "not signing", reason="DigestMismatch")


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


def sign_release(address: str, tls_files: TlsFiles, cluster: str, render: Callable[[str], bytes],
                 signers: list[Signer]) -> trust_pb2.SubmitReleaseResponse:
    """``render(revision)``: the cluster's bundle bytes at the proposal's revision, rendered here
    (``skerry.hub.sync.render_bundle``), which must equal the bytes the hub proposes."""
    with secure_channel(address, tls_files) as channel:
        stub = trust_pb2_grpc.TrustServiceStub(channel)
        try:
            prop = stub.GetReleaseProposal(trust_pb2.GetReleaseProposalRequest(cluster=cluster), timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            raise Unavailable(f"no release proposal for {cluster}: {e.details()}") from e
        ours = Bundle.decode(render(prop.revision))
        path = trust.release_path(prop.environment, cluster, prop.digest.removeprefix("sha256:"))
        try:
            blob = _fetch(stub, f"targets/{path}")
        except grpc.RpcError as e:
            raise Unavailable(f"cannot fetch the proposed bundle {path}: {e.details()}") from e
        if sha256_digest(blob) != prop.digest:
            raise VerificationError(f"the hub served {path} with digest {sha256_digest(blob)}, not the proposed "
                                    f"{prop.digest}", reason="HashMismatch")
        try:
            proposed = Bundle.decode(blob)
        except InvalidInput as e:
            raise VerificationError(f"the proposed bundle is malformed: {e}", reason="MalformedBundle") from e
        same_content(ours, proposed, cluster)
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
        check_proposal(proposal, previous, prop.environment, cluster, blob)
        for signer in signers:
            proposal.sign(signer, append=True)
        try:
            return stub.SubmitRelease(
                trust_pb2.SubmitReleaseRequest(role=prop.role, metadata=proposal.to_bytes(_SERIALIZER)),
                timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            raise Unavailable(f"the hub refused the signatures: {e.details()}") from e
