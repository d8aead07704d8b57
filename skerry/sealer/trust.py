"""Which SealedSecrets a cluster's released bundle contains: the sealer's one view of bundle trust.

The sealer unseals for an agent only SealedSecrets that appear in a bundle
released for that agent's own cluster (the cluster is the agent's mTLS
common name, never a request field). So an agent, even a compromised one,
cannot get plaintext for a namespace, name or scope its cluster was not
given, and a relocated or renamed strict-scope secret fails.

``skerry.sealer.tuf.TufBundleTrust`` (TUF director + release agreement,
``--trust-root``) decides what was released; the rest of the sealer sees
only ``BundleTrust`` and ``BundleSecrets``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from skerry.core import sealedsecret
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
