"""Fuzz targets: one per parser or endpoint that takes outside input, each with the errors it documents
and seeds taken from examples/ and the tests. Used by tests/fuzz/test_fuzz.py (a short fixed-seed pass
in CI) and bench/fuzz.py (millions of mutated inputs).

A target is a function of bytes. It may return or raise one of its ``allowed`` exceptions; anything else
is a crash.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import pathlib
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.message import DecodeError
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization import DeserializationError

from skerry.agent.enroll import make_csr, token_cluster
from skerry.agent.reconcile.inventory import Inventory, InventoryCorrupt
from skerry.api.v1 import enrollment_pb2, hub_pb2, promotion_pb2, sealer_pb2, trust_pb2
from skerry.core import documents, report, trust
from skerry.core.bundle import Bundle
from skerry.core.errors import ConfigError, InvalidInput, PermissionDenied, RenderError, VerificationError
from skerry.hub.enrollment.authority import AgentAuthority
from skerry.hub.enrollment.tokens import TokenIssuer
from skerry.hub.fleet import parse_fleet
from skerry.hub.promotion.freight import read_images
from skerry.hub.render.engine import parse_documents
from skerry.hub.webhook import MAX_BODY_BYTES
from skerry.sealer import seal

ROOT = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    seeds: tuple[bytes, ...]


def _examples(pattern: str) -> tuple[bytes, ...]:
    return tuple(p.read_bytes() for p in sorted((ROOT / "examples").rglob(pattern)))


@functools.cache
def _ec_identity() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oslo-prod")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


def _signed_report(data: bytes) -> object:
    key, cert = _ec_identity()
    return report.verify(data, key.sign(data, ec.ECDSA(hashes.SHA256())), cert)


_ISSUER = TokenIssuer(b"fuzz-token-key-0123456789abcdef!")


def _token(data: bytes) -> object:
    text = data.decode("utf-8", "replace")
    _ISSUER.check(text)
    return token_cluster(text)


@functools.cache
def _authority(tmp: str) -> AgentAuthority:
    return AgentAuthority.load_or_create(pathlib.Path(tmp))


def _csr(data: bytes) -> object:
    import tempfile

    return _authority(tempfile.gettempdir() + "/skerry-fuzz-ca").sign_csr(data, "oslo-prod")


def _grpc_requests(data: bytes) -> object:
    for module in (hub_pb2, enrollment_pb2, sealer_pb2, trust_pb2, promotion_pb2):
        for name in dir(module):
            if name.endswith("Request"):
                getattr(module, name).FromString(data)
    return None


def _bundle_seed() -> bytes:
    objs = ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "namespace": "n"},
             "data": {"v": "1"}},)
    return Bundle("oslo-prod", "0" * 40, "file:///f", ("apps/x",), "kustomize", "v5", objs).encode()


def _report_seed() -> bytes:
    return report.encode({"cluster": "oslo-prod", "nonce": "n" * 32, "counter": 1, "applied_digest": "sha256:" + "0" * 64,
                          "release": 7, "revision": "0" * 40, "ready": True, "health": "Healthy", "drift": 0,
                          "observed_unix_ms": 1})


SECRET = (b"apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\n"
          b"stringData: {password: hunter2}\ndata: {user: c2hvcA==}\n")
SEALED = (b"apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: db, namespace: shop}\n"
          b"spec:\n  encryptedData: {password: AgBy3i4OJSWK+PiTySYZZA==}\n  template: {metadata: {name: db}}\n")
KUSTOMIZATION = (b"resources: [../base]\nnamePrefix: prod-\nimages:\n  - name: web\n    newName: registry/web\n"
                 b"    newTag: '1.0'\n")


def targets() -> list[Target]:
    yaml_seeds = _examples("*.yaml")
    return [
        Target("fleet file", parse_fleet, (ConfigError,), _examples("skerry.yaml")),
        Target("kustomization", lambda d: read_images(d, "k/kustomization.yaml"), (InvalidInput,),
               (KUSTOMIZATION, *_examples("kustomization.yaml"))),
        Target("plain-YAML render", lambda d: parse_documents(d, "plain"), (RenderError,), yaml_seeds),
        Target("bundle bytes", Bundle.decode, (InvalidInput,), (_bundle_seed(),)),
        Target("TUF metadata", Metadata.from_bytes, (DeserializationError,),
               (Metadata(Root()).to_bytes(),)),
        Target("Secret manifest", lambda d: seal.parse_manifest(d, "stdin"), (InvalidInput,), (SECRET,)),
        Target("SealedSecret manifest", lambda d: seal.parse_sealed(d, "sealed.yaml"), (InvalidInput,), (SEALED,)),
        Target("evidence", trust.decode_evidence, (InvalidInput,),
               (trust.encode_evidence({"root.json": Metadata(Root()).to_bytes()}),)),
        Target("signed report", _signed_report, (VerificationError,), (_report_seed(),)),
        Target("bootstrap token", _token, (PermissionDenied, InvalidInput),
               (_ISSUER.issue("oslo-prod")[0].encode(),)),
        Target("CSR", _csr, (InvalidInput, PermissionDenied), (make_csr("oslo-prod")[0],)),
        Target("webhook body", lambda d: documents.load_json(d, max_bytes=MAX_BODY_BYTES), (documents.BadDocument,),
               (b'{"ref": "refs/heads/main", "after": "' + b"0" * 40 + b'"}',)),
        Target("inventory", Inventory.decode, (InventoryCorrupt,),
               (Inventory(cluster="oslo-prod", release=3, digest="sha256:" + "0" * 64).encode(),)),
        Target("gRPC request messages", _grpc_requests, (DecodeError,),
               (hub_pb2.WatchBundlesRequest(cluster="oslo-prod", accepts_chunks=True).SerializeToString(),
                enrollment_pb2.EnrollRequest(token="skt1.a.b", csr_pem=b"x").SerializeToString(),
                base64.b64decode("CgRvc2xv"))),
    ]
