"""Client-side sealing (``skerry seal``): a Secret manifest in, a Bitnami SealedSecret out.

Split by verb, behind the names this module always had (``from skerry.sealer import seal``):

``manifests``     reading Secrets and SealedSecrets (bounded), writing YAML/JSON
``certificates``  the sealing certificate: parsed and checked, from a file, a URL or the sealer
``sealing``       Secret -> SealedSecret, ``--raw``, ``--merge-into``, re-encryption by the sealer
``recovery``      ``--recovery-unseal``: SealedSecrets opened offline with private keys
"""

from __future__ import annotations

from skerry.sealer.seal.certificates import (
    MAX_CERT_BYTES,
    SealingCertificate,
    fetch_certificate,
    fetch_certificate_url,
    load_certificate,
)
from skerry.sealer.seal.manifests import (
    FORMATS,
    LAST_APPLIED,
    MAX_MANIFEST_BYTES,
    load_documents,
    parse_documents,
    parse_manifest,
    parse_sealed,
    render,
    render_many,
    sealed_identity,
    secret_values,
)
from skerry.sealer.seal.recovery import load_private_keys, recovery_unseal
from skerry.sealer.seal.sealing import merge_into, re_encrypt, seal_raw, seal_secret, skerry_annotations

__all__ = [
    "FORMATS",
    "LAST_APPLIED",
    "MAX_CERT_BYTES",
    "MAX_MANIFEST_BYTES",
    "SealingCertificate",
    "fetch_certificate",
    "fetch_certificate_url",
    "load_certificate",
    "load_documents",
    "load_private_keys",
    "merge_into",
    "parse_documents",
    "parse_manifest",
    "parse_sealed",
    "re_encrypt",
    "recovery_unseal",
    "render",
    "render_many",
    "seal_raw",
    "seal_secret",
    "sealed_identity",
    "secret_values",
    "skerry_annotations",
]
