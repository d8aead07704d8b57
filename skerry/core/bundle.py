"""The desired-state bundle and its signed envelope: the contract between hub and agent.

(How a bundle is trusted in TUF mode — roles, file names, formats — is in ``skerry.core.trust``.)

A *bundle* is one cluster's complete desired state at one Git revision,
serialised as canonical JSON (``skerry.core.canonical``)::

    {"apiVersion": "skerry.io/v1alpha1", "kind": "Bundle",
     "cluster": "oslo-prod",
     "source": {"url": "...", "revision": "<commit sha>", "paths": ["overlays/prod"]},
     "objects": [ ...Kubernetes objects, sorted by object_sort_key... ]}

Its identity (the SHA-256 of these bytes) covers what is applied — objects,
source commit, cluster — and not the engine that rendered it: kustomize
in-process and ``kubectl kustomize`` give the same objects and so the same
bytes. The engine and its version are provenance, recorded beside the bundle
(the director's target, ``skerry.core.trust``), never inside it; documents of
earlier versions that carry ``"render"`` still decode.

Its *envelope* is a TUF targets metadata document (python-tuf's Metadata
API; standard TUF, signed with Ed25519) whose single target describes the
bundle bytes by length and SHA-256 at the path
``clusters/<cluster>/bundle-<sha256 hex>.json``, with custom fields
``{"cluster", "release", "revision"}``. The metadata ``version`` equals the
release counter, which never goes down for a cluster; ``expires`` bounds
how long a captured envelope stays acceptable (freeze attacks).

Verification order matters: size bounds, then signature threshold over the
canonical ``signed`` part, then expiry, cluster, rollback, and only then the
bundle bytes against the signed hash. Nothing is parsed from the bundle
before its hash matched.

Release statements (the Uptane shape, for content many clusters share)
-----------------------------------------------------------------------
When many clusters render to the same objects, the hub serves one *shared
blob* (the bundle document with ``"cluster": ""``, hashed once, the same
bytes for every cluster) and signs per cluster only a small *release
statement* binding that cluster to the blob. Byte format (canonical JSON,
``skerry.core.canonical``; ~400 bytes)::

    {"signatures": [{"keyid": "<hex keyid>", "sig": "<hex Ed25519 signature>"}],
     "signed": {"_type": "skerry.io/v1alpha1 ReleaseStatement",
                "blob": "sha256:<hex of the blob bytes>", "cluster": "<name>",
                "expires": "YYYY-MM-DDTHH:MM:SSZ", "length": <blob bytes>,
                "release": <counter>, "revision": "<commit>"}}

Each signature is over ``canonical_json(signed)`` with the hub's bundle
signing keys (the same keys and threshold as the TUF envelope). An agent
accepts a statement only if it names the agent's cluster; the blob must
match ``length`` and ``blob`` and name either no cluster or the same one.
``verify_signed_bundle`` takes either form (it looks at ``signed._type``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from securesystemslib.signer import CryptoSigner, Key, Signer, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import CanonicalJSONSerializer, JSONSerializer

from skerry.core import documents
from skerry.core.canonical import canonical_json, sha256_digest, sha256_hex
from skerry.core.errors import ConfigError, InvalidInput, VerificationError

API_VERSION = "skerry.io/v1alpha1"
KIND = "Bundle"

# Bounds on everything that arrives from outside (the "endless data" attack).
MAX_BUNDLE_BYTES = 12 * 1024 * 1024  # below the 16 MiB gRPC message limit
MAX_METADATA_BYTES = 64 * 1024  # one target and a few signatures fit in a few KiB
MAX_OBJECTS = 20_000


def object_sort_key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", "")))


def object_id(obj: Mapping[str, Any]) -> str:
    """``group/Kind/namespace/name`` — the identity of an object regardless of version."""
    api = str(obj.get("apiVersion", ""))
    group = api.rpartition("/")[0] if "/" in api else ""
    meta = obj.get("metadata") or {}
    return f"{group}/{obj.get('kind', '')}/{meta.get('namespace', '')}/{meta.get('name', '')}"


@dataclasses.dataclass(frozen=True)
class Bundle:
    cluster: str
    revision: str
    source_url: str
    paths: tuple[str, ...]
    engine: str
    engine_version: str
    objects: tuple[dict, ...]

    def document(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "cluster": self.cluster,
            "source": {"url": self.source_url, "revision": self.revision, "paths": list(self.paths)},
            "objects": sorted(self.objects, key=object_sort_key),
        }

    def encode(self) -> bytes:
        return canonical_json(self.document())

    @classmethod
    def decode(cls, data: bytes) -> Bundle:
        """Parse and structurally validate bundle bytes (which must already be hash-verified)."""
        if len(data) > MAX_BUNDLE_BYTES:
            raise InvalidInput(f"bundle is {len(data)} bytes, over the {MAX_BUNDLE_BYTES} byte limit")
        try:
            doc = documents.load_json(data, max_bytes=MAX_BUNDLE_BYTES)
        except documents.BadDocument as e:
            raise InvalidInput(f"bundle is not valid JSON: {e}", reason=e.reason) from e
        if not isinstance(doc, dict) or doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
            raise InvalidInput(f"not a {API_VERSION} {KIND} document")
        objects = doc.get("objects")
        source, render = doc.get("source") or {}, doc.get("render") or {}
        if not isinstance(objects, list) or len(objects) > MAX_OBJECTS:
            raise InvalidInput(f"bundle objects must be a list of at most {MAX_OBJECTS}")
        for i, obj in enumerate(objects):
            if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
                raise InvalidInput(f"bundle object #{i} lacks apiVersion/kind")
            if not isinstance(obj.get("metadata"), dict) or not obj["metadata"].get("name"):
                raise InvalidInput(f"bundle object #{i} ({obj.get('kind')}) lacks metadata.name")
        return cls(
            cluster=str(doc.get("cluster", "")),
            revision=str(source.get("revision", "")),
            source_url=str(source.get("url", "")),
            paths=tuple(str(p) for p in source.get("paths") or ()),
            engine=str(render.get("engine", "")),
            engine_version=str(render.get("version", "")),
            objects=tuple(objects),
        )


def target_path(cluster: str, bundle_bytes: bytes) -> str:
    return f"clusters/{cluster}/bundle-{sha256_hex(bundle_bytes)}.json"


# --- keys ---------------------------------------------------------------------------------


def generate_signing_key(path: pathlib.Path) -> CryptoSigner:
    """Create an Ed25519 key, private PEM at ``path`` (0600), public PEM at ``path.pub``."""
    import os

    from cryptography.hazmat.primitives import serialization

    signer = CryptoSigner.generate_ed25519()
    priv = signer.private_bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(priv)
    pub = serialization.load_pem_private_key(priv, None).public_key()
    pathlib.Path(f"{path}.pub").write_bytes(
        pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return signer


def load_signer(path: pathlib.Path) -> CryptoSigner:
    from cryptography.hazmat.primitives import serialization

    try:
        private = serialization.load_pem_private_key(pathlib.Path(path).read_bytes(), None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot load signing key {path}: {e}") from e
    return CryptoSigner(private)


def load_public_key(path: pathlib.Path) -> SSlibKey:
    from cryptography.hazmat.primitives import serialization

    try:
        public = serialization.load_pem_public_key(pathlib.Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot load trusted public key {path}: {e}") from e
    return SSlibKey.from_crypto(public)


# --- signing (hub) and verification (agent) -----------------------------------------------


def sign_bundle(
    bundle_bytes: bytes,
    *,
    cluster: str,
    release: int,
    revision: str,
    expires: _dt.datetime,
    signers: Sequence[Signer],
) -> bytes:
    """Wrap bundle bytes in signed TUF targets metadata; returns the metadata bytes."""
    target = TargetFile.from_data(target_path(cluster, bundle_bytes), bundle_bytes, ["sha256"])
    target.unrecognized_fields["custom"] = {"cluster": cluster, "release": release, "revision": revision}
    targets = Targets(version=release, expires=expires.replace(microsecond=0), targets={target.path: target})
    md = Metadata(targets)
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes(JSONSerializer(compact=True))


STATEMENT_TYPE = "skerry.io/v1alpha1 ReleaseStatement"
# Blobs shared by many clusters name no cluster: the signed statement does.
SHARED_CLUSTER = ""
# Signatures one statement may carry: a threshold of a few hub keys, never more.
MAX_STATEMENT_SIGNATURES = 16


def _rfc3339(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_statement(
    *,
    cluster: str,
    release: int,
    blob_digest: str,
    length: int,
    revision: str,
    expires: _dt.datetime,
    signers: Sequence[Signer],
) -> bytes:
    """A release statement binding ``cluster`` to the blob ``blob_digest`` (format: module docstring)."""
    signed = {
        "_type": STATEMENT_TYPE,
        "blob": blob_digest,
        "cluster": cluster,
        "expires": _rfc3339(expires),
        "length": length,
        "release": release,
        "revision": revision,
    }
    payload = canonical_json(signed)
    sigs = [{"keyid": sig.keyid, "sig": sig.signature} for sig in (s.sign(payload) for s in signers)]
    return canonical_json({"signatures": sigs, "signed": signed})


def _parse_statement(metadata: bytes) -> dict | None:
    """The statement document if ``metadata`` is one, None if it is (probably) TUF metadata."""
    try:
        doc = documents.load_json(metadata, max_bytes=MAX_BUNDLE_BYTES)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("signed"), dict) and doc["signed"].get("_type") == STATEMENT_TYPE:
        return doc
    return None


def envelope_expires(metadata: bytes) -> _dt.datetime:
    """``expires`` of a TUF envelope or a release statement (unverified: for reverify's expiry window)."""
    doc = _parse_statement(metadata)
    if doc is not None:
        return _parse_expires(doc["signed"].get("expires"))
    return Metadata[Targets].from_bytes(metadata).signed.expires


def _parse_expires(value: object) -> _dt.datetime:
    text = str(value)
    try:
        if len(text) != 20 or not text.endswith("Z"):
            raise ValueError(text)
        return _dt.datetime.fromisoformat(text)  # 3.11 reads the Z; ~50x faster than strptime
    except ValueError as e:
        raise VerificationError(f"statement expires {value!r} is not YYYY-MM-DDTHH:MM:SSZ", reason="MalformedMetadata") from e


@dataclasses.dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose envelope verified; the only form the agent applies."""

    bundle: Bundle
    release: int
    digest: str
    expires: _dt.datetime
    metadata: bytes
    raw: bytes




def check_forward(release: int, digest: str, last_release: int, last_digest: str) -> None:
    """Releases only move forward: an older one is ``Rollback``, the same one with other bytes ``MixAndMatch``."""
    if release < last_release:
        raise VerificationError(
            f"bundle release {release} is older than the applied release {last_release}", reason="Rollback"
        )
    if release == last_release and last_digest and digest != last_digest:
        raise VerificationError(f"release {release} already applied with another digest", reason="MixAndMatch")

def decode_signed(data: bytes, cluster: str, *, shared: bool = False) -> Bundle:
    """Parse bundle bytes whose hash a signature already covers; it must name ``cluster``.

    ``shared``: a shared blob (``SHARED_CLUSTER``) is accepted too. Raises ``VerificationError``
    (``MalformedBundle`` or ``WrongCluster``).
    """
    try:
        bundle = Bundle.decode(data)
    except InvalidInput as e:
        raise VerificationError(f"signed bundle is malformed: {e}", reason="MalformedBundle") from e
    if bundle.cluster != cluster and not (shared and bundle.cluster == SHARED_CLUSTER):
        raise VerificationError(f"bundle document names cluster {bundle.cluster!r}", reason="WrongCluster")
    return bundle

def verify_signed_bundle(
    metadata: bytes,
    bundle_bytes: bytes,
    *,
    cluster: str,
    trusted_keys: Mapping[str, Key],
    threshold: int = 1,
    last_release: int = 0,
    last_digest: str = "",
    now: _dt.datetime,
) -> VerifiedBundle:
    if len(metadata) > MAX_METADATA_BYTES:
        raise VerificationError(f"metadata is {len(metadata)} bytes, over {MAX_METADATA_BYTES}", reason="EndlessData")
    if len(bundle_bytes) > MAX_BUNDLE_BYTES:
        raise VerificationError(f"bundle is {len(bundle_bytes)} bytes, over {MAX_BUNDLE_BYTES}", reason="EndlessData")
    statement = _parse_statement(metadata)
    if statement is not None:
        return _verify_statement(
            statement, metadata, bundle_bytes, cluster=cluster, trusted_keys=trusted_keys, threshold=threshold,
            last_release=last_release, last_digest=last_digest, now=now,
        )
    try:
        md = Metadata[Targets].from_bytes(metadata)
    except (DeserializationError, ValueError, TypeError, KeyError) as e:
        raise VerificationError(f"metadata is not TUF targets metadata: {e}", reason="MalformedMetadata") from e

    signed_bytes = CanonicalJSONSerializer().serialize(md.signed)
    good: set[str] = set()
    for keyid, key in trusted_keys.items():
        sig = md.signatures.get(keyid)
        if sig is None:
            continue
        try:
            key.verify_signature(sig, signed_bytes)
        except (UnsignedMetadataError, Exception):  # noqa: BLE001 - any failure is a bad signature
            continue
        good.add(keyid)  # a key counts once, however often it signed
    if len(good) < threshold:
        raise VerificationError(
            f"bundle metadata has {len(good)} valid signature(s) from trusted keys, needs {threshold}",
            reason="BadSignature",
        )

    expires = md.signed.expires
    if now >= expires:
        raise VerificationError(f"bundle metadata expired at {expires.isoformat()}", reason="Expired")
    if len(md.signed.targets) != 1:
        raise VerificationError("bundle metadata must describe exactly one target", reason="MalformedMetadata")
    (target,) = md.signed.targets.values()
    custom = target.unrecognized_fields.get("custom") or {}
    if custom.get("cluster") != cluster or not target.path.startswith(f"clusters/{cluster}/"):
        raise VerificationError(
            f"bundle is for cluster {custom.get('cluster')!r}, this agent is {cluster!r}", reason="WrongCluster"
        )
    release = md.signed.version
    if custom.get("release") != release:
        raise VerificationError("release counter disagrees with metadata version", reason="MalformedMetadata")
    digest = sha256_digest(bundle_bytes)
    check_forward(release, digest, last_release, last_digest)
    try:
        target.verify_length_and_hashes(bundle_bytes)
    except Exception as e:  # noqa: BLE001 - tuf raises LengthOrHashMismatchError
        raise VerificationError(f"bundle bytes do not match the signed length/hash: {e}", reason="HashMismatch") from e
    bundle = decode_signed(bundle_bytes, cluster)
    return VerifiedBundle(bundle=bundle, release=release, digest=digest, expires=expires, metadata=metadata, raw=bundle_bytes)


def _verify_statement(
    doc: dict,
    metadata: bytes,
    blob: bytes,
    *,
    cluster: str,
    trusted_keys: Mapping[str, Key],
    threshold: int,
    last_release: int,
    last_digest: str,
    now: _dt.datetime,
) -> VerifiedBundle:
    """Same order as the TUF envelope: signatures, expiry, cluster, rollback, then the blob's hash."""
    from securesystemslib.signer import Signature

    signed, sigs = doc["signed"], doc.get("signatures")
    if not isinstance(sigs, list) or len(sigs) > MAX_STATEMENT_SIGNATURES:
        raise VerificationError(
            f"release statement needs a list of at most {MAX_STATEMENT_SIGNATURES} signatures", reason="MalformedMetadata"
        )
    payload = canonical_json(signed)
    good: set[str] = set()
    for entry in sigs:
        if not isinstance(entry, dict):
            continue
        keyid, sig = entry.get("keyid"), entry.get("sig")
        key = trusted_keys.get(keyid) if isinstance(keyid, str) else None
        if key is None or not isinstance(sig, str) or keyid in good:
            continue
        try:
            key.verify_signature(Signature(keyid, sig), payload)
        except Exception:  # noqa: BLE001 - any failure is a bad signature
            continue
        good.add(keyid)
    if len(good) < threshold:
        raise VerificationError(
            f"release statement has {len(good)} valid signature(s) from trusted keys, needs {threshold}",
            reason="BadSignature",
        )
    expires = _parse_expires(signed.get("expires"))
    if now >= expires:
        raise VerificationError(f"release statement expired at {expires.isoformat()}", reason="Expired")
    if signed.get("cluster") != cluster:
        raise VerificationError(
            f"release statement is for cluster {signed.get('cluster')!r}, this agent is {cluster!r}", reason="WrongCluster"
        )
    release, length, want = signed.get("release"), signed.get("length"), signed.get("blob")
    if not isinstance(release, int) or isinstance(release, bool) or release < 1:
        raise VerificationError(f"release statement has no valid release counter ({release!r})", reason="MalformedMetadata")
    if not isinstance(length, int) or not isinstance(want, str):
        raise VerificationError("release statement lacks the blob length or digest", reason="MalformedMetadata")
    digest = sha256_digest(blob)
    check_forward(release, digest, last_release, last_digest)
    if len(blob) != length or digest != want:
        raise VerificationError(
            f"bundle bytes ({len(blob)} bytes, {digest}) do not match the statement ({length} bytes, {want})",
            reason="HashMismatch",
        )
    bundle = decode_signed(blob, cluster, shared=True)
    bundle = dataclasses.replace(bundle, cluster=cluster)
    return VerifiedBundle(bundle=bundle, release=release, digest=digest, expires=expires, metadata=metadata, raw=blob)
