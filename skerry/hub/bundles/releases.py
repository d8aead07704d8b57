"""A cluster's release as the store serves it, and as the hub state keeps it (records of kind ``bundle``).

``SignedBundle`` is one directed release, ``SharedBlob`` bundle bytes many
clusters receive as they are, ``RenderFailure`` why a commit could not be built.
``bundle_record`` is what the state keeps of a release (release counter and
number, digest, content digest, revision...): enough for a restarted hub, a new writer
or a serving replica to serve it again without re-rendering or re-signing
(``RestoredBlobs.signed`` takes it back, with a shared blob's bytes from the
state so watch events carry them again).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable, Mapping

from skerry.core import release_number
from skerry.core.bundle import Bundle
from skerry.core.canonical import sha256_digest


@dataclasses.dataclass(frozen=True)
class SignedBundle:
    """One directed release of one cluster's bundle (the metadata lives in the trust repository)."""

    cluster: str
    release: int
    digest: str  # sha256 of the bundle bytes the director names
    content_digest: str  # the same ignoring source.revision: what "changed" compares
    bundle: bytes  # the bytes a watch event carries: a shared blob's, else none (the agent fetches them)
    revision: str
    paths: tuple[str, ...]
    objects: int
    expires: _dt.datetime  # horizon of the director metadata naming this release
    signed_at: _dt.datetime
    # Set when ``bundle`` is a blob shared by many clusters.
    shared: SharedBlob | None = None
    # The release number people read (``skerry.core.release_number``); 0 for a release made before numbers.
    number: int = 0

    @property
    def label(self) -> str:
        return release_number.label(self.number, self.release)


@dataclasses.dataclass(frozen=True, eq=False)
class SharedBlob:
    """Bundle bytes that many clusters receive as they are: encoded and hashed once, never copied.

    ``wire`` caches what the transport makes of the bytes (serialised chunk messages), built once
    per blob and sent by reference on every stream.
    """

    bundle: Bundle  # cluster == SHARED_CLUSTER
    data: bytes
    digest: str
    content_digest: str
    wire: dict = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass(frozen=True)
class RenderFailure:
    """Why a cluster's desired state at ``revision`` could not be built; its current bundle stays."""

    cluster: str
    revision: str
    message: str
    at: _dt.datetime


WatchEvent = SignedBundle | RenderFailure


# Record kind of a cluster's current release in the hub state (``HubState`` records, key: the cluster).
BUNDLE_RECORD = "bundle"
# Shared blobs restored from the state, kept by digest so clusters restored from one blob share it.
RESTORED_BLOBS = 8


def bundle_record(signed: SignedBundle) -> dict:
    """What the state keeps of a release: enough to serve it again without re-rendering or re-signing."""
    return {
        "release": signed.release, "number": signed.number, "digest": signed.digest,
        "content": signed.content_digest,
        "revision": signed.revision, "paths": list(signed.paths), "objects": signed.objects,
        "expires": signed.expires.isoformat(), "signed_at": signed.signed_at.isoformat(),
        "shared": signed.shared is not None,
    }


class RestoredBlobs:
    """Releases taken back from their records; shared blobs kept by digest (the newest ``RESTORED_BLOBS``)."""

    def __init__(self) -> None:
        self._blobs: dict[str, SharedBlob] = {}

    def signed(self, cluster: str, doc: Mapping, blob: Callable[[str], bytes | None] | None) -> SignedBundle:
        shared = self._shared(str(doc["digest"]), str(doc["content"]), blob) if doc.get("shared") else None
        return SignedBundle(
            cluster=cluster, release=int(doc["release"]), number=int(doc.get("number", 0)),
            digest=str(doc["digest"]), content_digest=str(doc["content"]),
            bundle=shared.data if shared is not None else b"", revision=str(doc["revision"]),
            paths=tuple(doc["paths"]), objects=int(doc["objects"]),
            expires=_dt.datetime.fromisoformat(doc["expires"]), signed_at=_dt.datetime.fromisoformat(doc["signed_at"]),
            shared=shared)

    def _shared(self, digest: str, content: str, blob: Callable[[str], bytes | None] | None) -> SharedBlob | None:
        """The blob's bytes from the state (checked against the digest), or None: the agent fetches them."""
        known = self._blobs.get(digest)
        if known is not None:
            return known
        data = blob(digest.removeprefix("sha256:")) if blob is not None else None
        if data is None or sha256_digest(data) != digest:
            return None
        shared = SharedBlob(bundle=Bundle.decode(data), data=data, digest=digest, content_digest=content)
        self._blobs[digest] = shared
        while len(self._blobs) > RESTORED_BLOBS:
            del self._blobs[next(iter(self._blobs))]
        return shared
