"""The Bitnami SealedSecret vocabulary shared by the sealer and the agent.

Only names and the scope rule live here; the cryptography lives in
``skerry.sealer.crypto``. Scope is chosen by annotation, compared exactly
with the string ``"true"`` as Sealed Secrets does, and becomes the RSA-OAEP
label that binds a sealed value to where it may be unsealed:

    strict          label = b"<namespace>/<name>"
    namespace-wide  label = b"<namespace>"
    cluster-wide    label = b""
"""

from __future__ import annotations

from collections.abc import Mapping

from skerry.core.errors import InvalidInput

API_VERSION = "bitnami.com/v1alpha1"
KIND = "SealedSecret"
ANNOTATION_NAMESPACE_WIDE = "sealedsecrets.bitnami.com/namespace-wide"
ANNOTATION_CLUSTER_WIDE = "sealedsecrets.bitnami.com/cluster-wide"

# Skerry's additions, on the SealedSecret's own metadata (kubeseal and the upstream controller ignore them):
# the key id (SHA-256 of the sealing public key) so unseal tries that key first, and the key domain
# (region) the values are sealed for.
ANNOTATION_KEY_ID = "sealer.skerry.io/key-id"
ANNOTATION_DOMAIN = "sealer.skerry.io/domain"
# A SealedSecret without metadata.namespace lands where the agent defaults namespaced objects.
DEFAULT_NAMESPACE = "default"

STRICT = "strict"
NAMESPACE_WIDE = "namespace-wide"
CLUSTER_WIDE = "cluster-wide"
SCOPES = (STRICT, NAMESPACE_WIDE, CLUSTER_WIDE)


def scope_from_annotations(annotations: Mapping[str, str] | None) -> str:
    annotations = annotations or {}
    if annotations.get(ANNOTATION_CLUSTER_WIDE) == "true":
        return CLUSTER_WIDE
    if annotations.get(ANNOTATION_NAMESPACE_WIDE) == "true":
        return NAMESPACE_WIDE
    return STRICT


def scope_annotations(scope: str) -> dict[str, str]:
    if scope == CLUSTER_WIDE:
        return {ANNOTATION_CLUSTER_WIDE: "true"}
    if scope == NAMESPACE_WIDE:
        return {ANNOTATION_NAMESPACE_WIDE: "true"}
    if scope == STRICT:
        return {}
    raise InvalidInput(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")


def encryption_label(namespace: str, name: str, scope: str) -> bytes:
    if scope == STRICT:
        if not namespace or not name:
            raise InvalidInput("strict scope needs both namespace and name")
        return f"{namespace}/{name}".encode()
    if scope == NAMESPACE_WIDE:
        if not namespace:
            raise InvalidInput("namespace-wide scope needs a namespace")
        return namespace.encode()
    if scope == CLUSTER_WIDE:
        return b""
    raise InvalidInput(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")


def is_sealed_secret(obj: Mapping) -> bool:
    return obj.get("apiVersion") == API_VERSION and obj.get("kind") == KIND
