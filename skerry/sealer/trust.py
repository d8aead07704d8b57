"""Which SealedSecrets a cluster's hub-signed bundle contains: the sealer's one view of bundle trust.

The sealer unseals for an agent only SealedSecrets that appear in a bundle
the hub signed for that agent's own cluster (the cluster is the agent's mTLS
common name, never a request field). So an agent, even a compromised one,
cannot get plaintext for a namespace, name or scope its cluster was not
given, and a relocated or renamed strict-scope secret fails.

Two implementations: ``SignedBundleTrust`` here (the legacy single-key
envelope, ``--hub-keys``) and ``skerry.sealer.tuf.TufBundleTrust`` (TUF
director + release agreement, ``--trust-root``); the rest of the sealer sees
only ``BundleTrust`` and ``BundleSecrets``. The sealer remembers the highest release it verified per
cluster, so a captured older (still unexpired) bundle cannot be replayed to
unseal a secret the cluster has since lost.
"""

from __future__ import annotations

import dataclasses
import pathlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from skerry.core import sealedsecret
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import InvalidInput

# More SealedSecrets than this in one bundle is a mistake or an attack (each costs RSA work).
MAX_BUNDLE_SECRETS = 5000


@dataclasses.dataclass(frozen=True)
class BundleSecret:
    """One SealedSecret as the verified bundle states it."""

    namespace: str
    name: str
    scope: str
    domain: str  # "" when the SealedSecret names none
    key_hint: str
    encrypted_data: Mapping[str, str] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class BundleSecrets:
    cluster: str
    release: int
    secrets: tuple[BundleSecret, ...]


class BundleTrust(Protocol):
    def verify(self, metadata: bytes, bundle: bytes, *, cluster: str) -> BundleSecrets:
        """The SealedSecrets of a bundle signed for ``cluster``; raises ``VerificationError``."""
        ...


def secrets_of(objects: Sequence[Mapping[str, Any]]) -> tuple[BundleSecret, ...]:
    """Every SealedSecret among bundle objects, with its scope read from its own annotations."""
    out: list[BundleSecret] = []
    for obj in objects:
        if not sealedsecret.is_sealed_secret(obj):
            continue
        if len(out) >= MAX_BUNDLE_SECRETS:
            raise InvalidInput(f"the bundle has more than {MAX_BUNDLE_SECRETS} SealedSecrets")
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        spec = obj.get("spec") or {}
        encrypted = spec.get("encryptedData") or {}
        if not isinstance(annotations, Mapping) or not isinstance(encrypted, Mapping):
            encrypted, annotations = {}, {}
        out.append(
            BundleSecret(
                namespace=str(meta.get("namespace") or sealedsecret.DEFAULT_NAMESPACE),
                name=str(meta.get("name") or ""),
                scope=sealedsecret.scope_from_annotations(annotations),
                domain=str(annotations.get(sealedsecret.ANNOTATION_DOMAIN) or ""),
                key_hint=str(annotations.get(sealedsecret.ANNOTATION_KEY_ID) or ""),
                encrypted_data={str(k): v for k, v in encrypted.items() if isinstance(v, str)},
            )
        )
    return tuple(out)


class SignedBundleTrust:
    """``BundleTrust`` over the hub's signed envelope (today: TUF targets metadata, Ed25519)."""

    def __init__(self, trusted_keys: Mapping[str, Any], *, threshold: int = 1, clock: Clock | None = None):
        self._keys = dict(trusted_keys)
        self._threshold = threshold
        self._clock = clock or SystemClock()
        self._last: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_key_files(cls, paths: Sequence[pathlib.Path], **kwargs) -> SignedBundleTrust:
        from skerry.core.bundle import load_public_key

        keys = [load_public_key(p) for p in paths]
        return cls({k.keyid: k for k in keys}, **kwargs)

    def verify(self, metadata: bytes, bundle: bytes, *, cluster: str) -> BundleSecrets:
        from skerry.core.bundle import verify_signed_bundle

        with self._lock:
            last_release, last_digest = self._last.get(cluster, (0, ""))
        verified = verify_signed_bundle(
            metadata,
            bundle,
            cluster=cluster,
            trusted_keys=self._keys,
            threshold=self._threshold,
            last_release=last_release,
            last_digest=last_digest,
            now=self._clock.now(),
        )
        with self._lock:
            if verified.release >= self._last.get(cluster, (0, ""))[0]:
                self._last[cluster] = (verified.release, verified.digest)
        return BundleSecrets(cluster, verified.release, secrets_of(verified.bundle.objects))
