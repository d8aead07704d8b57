"""Fuzz targets: one per parser or endpoint that takes outside input, each with the errors it documents
and seeds taken from examples/ and the tests. Used by tests/fuzz/test_fuzz.py (a short fixed-seed pass
in CI) and bench/fuzz.py (millions of mutated inputs).

A target is a function of bytes. It may return or raise one of its ``allowed`` exceptions; anything else
is a crash. ``covers`` says which code a target runs per input: the reader the service runs on that
input, whole (never a weaker function standing in for it). What a reader needs besides the input (a
signing key, the agent CA, a token issuer, a Git listing of examples/fleet) is built once per process
(``functools.cache``), so an input costs only the reader's own work.

Why the YAML targets stop where they do: the fleet file, a plain-YAML file and a kustomization are
parsed and checked whole by the targets below; what the hub does next (kustomize or plain rendering,
schema validation, signing) reads the parsed objects, never the input's bytes, so a full render per
input would add only cost (the render has its own tests and bench/render.py). A kustomization has two
readers: the hub's render reads it for the closure (``kustomization``: fast), the promotion reads and
edits its ``images:`` with ruamel.yaml's round-trip parser (``kustomization images``: the same budgets
first, then ruamel.yaml, which is pure Python and about ten times slower per input).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import pathlib
import shutil
import subprocess
import tempfile
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
from skerry.core.errors import (
    ConfigError,
    InvalidInput,
    PermissionDenied,
    RenderError,
    SourceError,
    VerificationError,
)
from skerry.core.tls import AGENT_CA_NAME, CertificateAuthority
from skerry.hub.enrollment.authority import AgentAuthority
from skerry.hub.enrollment.tokens import TokenIssuer
from skerry.hub.fleet import parse_fleet
from skerry.hub.promotion.freight import read_images
from skerry.hub.render import closure as closures
from skerry.hub.render.engine import parse_documents
from skerry.hub.render.kustomization import MAX_KUSTOMIZATION_BYTES
from skerry.hub.source.objects import TreeEntry, TreeObjects
from skerry.hub.webhook import MAX_BODY_BYTES
from skerry.sealer import seal

ROOT = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    seeds: tuple[bytes, ...]
    covers: str = ""


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
def _authority() -> AgentAuthority:
    """The agent CA, in memory: built once per process (``load_or_create`` only adds reading it from disk)."""
    return AgentAuthority(CertificateAuthority.create(AGENT_CA_NAME, days=1))


def _csr(data: bytes) -> object:
    return _authority().sign_csr(data, "oslo-prod")


# The kustomization the hub reads for the render's closure is the prod overlay's of examples/fleet.
FLEET_EXAMPLE = ROOT / "examples" / "fleet"
OVERLAY = "overlays/prod"
_FUZZED_BLOB = "fuzzed-input"


@functools.cache
def _fleet_commit() -> tuple[dict[str, TreeEntry], dict[str, bytes]]:
    """examples/fleet committed to a real Git repository and listed as the hub lists a commit (once per
    process): its entries, with the prod overlay's kustomization standing for the fuzzed input, and its blobs."""
    with tempfile.TemporaryDirectory(prefix="skerry-fuzz-fleet-") as tmp:
        work = pathlib.Path(tmp) / "fleet"
        shutil.copytree(FLEET_EXAMPLE, work)
        git = ["git", "-C", str(work), "-c", "user.name=fuzz", "-c", "user.email=fuzz@example.invalid"]
        for args in (("init", "-q"), ("add", "-A"), ("commit", "-qm", "fleet")):
            subprocess.run([*git, *args], check=True, capture_output=True)
        commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout
        objects = TreeObjects(work / ".git", env={}, timeout=30.0, url=str(work),
                              error=lambda message, e: SourceError(message))
        entries = dict(objects.list_tree(commit.strip()))
    blobs = {e.oid: (FLEET_EXAMPLE / path).read_bytes() for path, e in entries.items() if e.type == "blob"}
    kfile = f"{OVERLAY}/kustomization.yaml"
    entries[kfile] = entries[kfile]._replace(oid=_FUZZED_BLOB)
    return entries, blobs


def _kustomization_closure(data: bytes) -> object:
    """What the hub's render does with a kustomization read from Git before any engine runs: parse it within
    the budgets (``IncrementalRenderer._parse_kustomizations``) and walk the paths it names
    (``closure.closure``), here as the prod overlay of examples/fleet building on its real base."""
    entries, _ = _fleet_commit()
    return closures.closure(OVERLAY, entries, lambda oid, path: _parse_kustomization(
        data if oid == _FUZZED_BLOB else oid, path))


def _parse_kustomization(text_or_oid: bytes | str, path: str) -> object:
    if isinstance(text_or_oid, str):  # a file of the example: parsed once per blob, as the renderer caches it
        return _parsed_blob(text_or_oid, path)
    try:
        return documents.load_yaml(text_or_oid, max_bytes=MAX_KUSTOMIZATION_BYTES)
    except documents.BadDocument as e:
        raise RenderError(f"{documents.clip(path)}: {e}", reason=e.reason) from None


@functools.cache
def _parsed_blob(oid: str, path: str) -> object:
    return _parse_kustomization(_fleet_commit()[1][oid], path)


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


def target_named(name: str) -> Target:
    """One target, by name (bench/fuzz.py's workers build the one they run, once)."""
    return next(t for t in targets() if t.name == name)


def targets() -> list[Target]:
    yaml_seeds = _examples("*.yaml")
    kustomizations = (KUSTOMIZATION, *_examples("kustomization.yaml"))
    return [
        Target("fleet file", parse_fleet, (ConfigError,), _examples("skerry.yaml"),
               "hub.fleet.parse_fleet: budgets, YAML, every section of skerry.yaml checked"),
        Target("kustomization", _kustomization_closure, (RenderError,), kustomizations,
               "the render's read of a kustomization: budgets, YAML, closure walk over a real Git listing"),
        Target("kustomization images", lambda d: read_images(d, "k/kustomization.yaml"), (InvalidInput,),
               kustomizations, "promotion.freight.read_images: budgets, then ruamel.yaml round-trip, images:"),
        Target("plain-YAML render", lambda d: parse_documents(d, "plain"), (RenderError,), yaml_seeds,
               "render.engine.parse_documents: what render_plain runs on each file (stream, flatten, JSON)"),
        Target("bundle bytes", Bundle.decode, (InvalidInput,), (_bundle_seed(),),
               "core.bundle.Bundle.decode: a bundle as the agent receives it"),
        Target("TUF metadata", Metadata.from_bytes, (DeserializationError,), (Metadata(Root()).to_bytes(),),
               "tuf's Metadata.from_bytes, as the agent's updater reads every role"),
        Target("Secret manifest", lambda d: seal.parse_manifest(d, "stdin"), (InvalidInput,), (SECRET,),
               "seal.parse_manifest: skerry seal's input (YAML or JSON, one Secret)"),
        Target("SealedSecret manifest", lambda d: seal.parse_sealed(d, "sealed.yaml"), (InvalidInput,), (SEALED,),
               "seal.parse_sealed: SealedSecret files (stream, List, identity of each)"),
        Target("evidence", trust.decode_evidence, (InvalidInput,),
               (trust.encode_evidence({"root.json": Metadata(Root()).to_bytes()}),),
               "core.trust.decode_evidence: an agent's trust evidence"),
        Target("signed report", _signed_report, (VerificationError,), (_report_seed(),),
               "core.report.verify: certificate, ECDSA signature, JSON, canonical form (input signed first)"),
        Target("bootstrap token", _token, (PermissionDenied, InvalidInput), (_ISSUER.issue("oslo-prod")[0].encode(),),
               "enrollment TokenIssuer.check and the agent's token_cluster"),
        Target("CSR", _csr, (InvalidInput, PermissionDenied), (make_csr("oslo-prod")[0],),
               "AgentAuthority.sign_csr: CSR parse, key and name checks, certificate issued"),
        Target("webhook body", lambda d: documents.load_json(d, max_bytes=MAX_BODY_BYTES), (documents.BadDocument,),
               (b'{"ref": "refs/heads/main", "after": "' + b"0" * 40 + b'"}',),
               "the webhook's body parse (documents.load_json within MAX_BODY_BYTES)"),
        Target("inventory", Inventory.decode, (InventoryCorrupt,),
               (Inventory(cluster="oslo-prod", release=3, digest="sha256:" + "0" * 64).encode(),),
               "agent Inventory.decode: the inventory state read back"),
        Target("gRPC request messages", _grpc_requests, (DecodeError,),
               (hub_pb2.WatchBundlesRequest(cluster="oslo-prod", accepts_chunks=True).SerializeToString(),
                enrollment_pb2.EnrollRequest(token="skt1.a.b", csr_pem=b"x").SerializeToString(),
                base64.b64decode("CgRvc2xv")),
               "every *Request message of the five services, parsed from the same bytes"),
    ]
