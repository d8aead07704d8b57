"""The desired-state bundle: the contract between hub and agent.

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

When many clusters render to the same objects, one *shared blob* serves them
all: the same document with ``"cluster": ""`` (``SHARED_CLUSTER``), encoded
and hashed once; each cluster's director entry names it.

Its bytes are a TUF target: the director and the environment's release role
name them by length and SHA-256 (``skerry.core.trust``), and nothing is
parsed from them before that hash matched (``decode_signed``). A verified
bundle is a ``VerifiedBundle``, the only form the agent applies.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Mapping
from typing import Any

from skerry.core import documents, release_number
from skerry.core.canonical import canonical_json
from skerry.core.errors import InvalidInput, VerificationError

API_VERSION = "skerry.io/v1alpha1"
KIND = "Bundle"

# Bounds on everything that arrives from outside (the "endless data" attack).
MAX_BUNDLE_BYTES = 12 * 1024 * 1024  # below the 16 MiB gRPC message limit
MAX_OBJECTS = 20_000
# Blobs shared by many clusters name no cluster: each cluster's director entry does.
SHARED_CLUSTER = ""


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
        if not isinstance(source, dict) or not isinstance(render, dict):
            raise InvalidInput("bundle source and render must be objects")
        if not isinstance(source.get("paths") or [], list):
            raise InvalidInput("bundle source.paths must be a list")
        for i, obj in enumerate(objects):
            if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
                raise InvalidInput(f"bundle object #{i} lacks apiVersion/kind")
            if not isinstance(obj.get("metadata"), dict) or not obj["metadata"].get("name"):
                raise InvalidInput(f"bundle object #{i} ({documents.clip_repr(obj.get('kind'))}) lacks metadata.name")
        return cls(
            cluster=str(doc.get("cluster", "")),
            revision=str(source.get("revision", "")),
            source_url=str(source.get("url", "")),
            paths=tuple(str(p) for p in source.get("paths") or ()),
            engine=str(render.get("engine", "")),
            engine_version=str(render.get("version", "")),
            objects=tuple(objects),
        )


@dataclasses.dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose TUF metadata verified; the only form the agent applies."""

    bundle: Bundle
    release: int
    digest: str
    expires: _dt.datetime
    metadata: bytes
    raw: bytes
    number: int = 0  # the release number people read (``skerry.core.release_number``); 0: unknown

    @property
    def label(self) -> str:
        return release_number.label(self.number, self.release)


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
