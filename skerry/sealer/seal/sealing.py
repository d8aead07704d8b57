"""Sealing: a Secret becomes the SealedSecret ``kubeseal`` would write, and kubeseal's other sealing modes.

The output is the ``bitnami.com/v1alpha1`` SealedSecret: scope annotations on the SealedSecret, one sealed
value per ``data`` and ``stringData`` item (``stringData`` wins, as in Kubernetes) and a template carrying
the Secret's labels, annotations and type. ``kubectl.kubernetes.io/last-applied-configuration`` (which
holds the whole Secret in clear) is dropped from the template, as upstream does.

Skerry adds two annotations to the SealedSecret (not to its template, so they never reach the Secret):
``sealer.skerry.io/key-id`` (the sealing key's fingerprint, so the sealer tries that key first) and
``sealer.skerry.io/domain`` (the key domain, i.e. region, sealed for). ``seal_raw`` and ``merge_into``
are kubeseal's ``--raw`` and ``--merge-into``; ``re_encrypt`` asks the sealer to re-seal with its newest
key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc

from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
from skerry.core import sealedsecret
from skerry.core.client import secure_channel
from skerry.core.errors import InvalidInput, SealError
from skerry.core.rpc import error_from_rpc
from skerry.sealer import crypto
from skerry.sealer.seal.certificates import SealingCertificate
from skerry.sealer.seal.manifests import LAST_APPLIED, sealed_identity, secret_values


def seal_secret(
    secret: Mapping,
    certificate: SealingCertificate,
    *,
    scope: str | None = None,
    namespace: str | None = None,
    source: str = "input",
) -> dict:
    """Build the SealedSecret for ``secret``; ``scope`` defaults to the Secret's annotations, else strict."""
    meta = secret.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise InvalidInput(f"{source}: metadata must be a mapping")
    name = meta.get("name")
    if not name or not isinstance(name, str):
        raise InvalidInput(f"{source}: the Secret has no metadata.name")
    ns = meta.get("namespace")
    if namespace and ns and namespace != ns:
        raise InvalidInput(f"{source}: metadata.namespace is {ns!r} but --namespace says {namespace!r}")
    ns = ns or namespace or ""
    annotations = dict(meta.get("annotations") or {})
    labels = dict(meta.get("labels") or {})
    scope = scope or sealedsecret.scope_from_annotations(annotations)
    scope_annotations = sealedsecret.scope_annotations(scope)
    if scope != sealedsecret.CLUSTER_WIDE and not ns:
        raise InvalidInput(f"{source}: a {scope} SealedSecret needs metadata.namespace (or --namespace)")
    label = sealedsecret.encryption_label(ns, name, scope)
    values = secret_values(secret, source)
    encrypted = {
        item: crypto.seal_value(certificate.public_key, values[item], label) for item in sorted(values)
    }

    for key in (LAST_APPLIED, sealedsecret.ANNOTATION_NAMESPACE_WIDE, sealedsecret.ANNOTATION_CLUSTER_WIDE):
        annotations.pop(key, None)
    annotations.update(scope_annotations)
    template_meta: dict[str, Any] = {"name": name}
    if ns:
        template_meta["namespace"] = ns
    if labels:
        template_meta["labels"] = labels
    if annotations:
        template_meta["annotations"] = annotations
    template: dict[str, Any] = {"metadata": template_meta, "type": secret.get("type") or "Opaque"}
    if "immutable" in secret:
        template["immutable"] = bool(secret["immutable"])

    sealed_meta: dict[str, Any] = {"name": name}
    if ns:
        sealed_meta["namespace"] = ns
    sealed_meta["annotations"] = {**scope_annotations, **skerry_annotations(certificate)}
    return {
        "apiVersion": sealedsecret.API_VERSION,
        "kind": sealedsecret.KIND,
        "metadata": sealed_meta,
        "spec": {"encryptedData": encrypted, "template": template},
    }


def skerry_annotations(certificate: SealingCertificate) -> dict[str, str]:
    out = {sealedsecret.ANNOTATION_KEY_ID: certificate.key_id}
    if certificate.domain:
        out[sealedsecret.ANNOTATION_DOMAIN] = certificate.domain
    return out


def seal_raw(
    value: bytes, certificate: SealingCertificate, *, scope: str, namespace: str = "", name: str = ""
) -> str:
    """``kubeseal --raw``: one base64 sealed value for ``namespace``/``name`` in ``scope``."""
    if scope == sealedsecret.STRICT and (not namespace or not name):
        raise InvalidInput("--raw with strict scope needs --namespace and --name")
    if scope == sealedsecret.NAMESPACE_WIDE and not namespace:
        raise InvalidInput("--raw with namespace-wide scope needs --namespace")
    label = sealedsecret.encryption_label(namespace, name, scope)
    return crypto.seal_value(certificate.public_key, value, label)


def merge_into(sealed: dict, secret: Mapping, certificate: SealingCertificate, source: str = "input") -> dict:
    """``kubeseal --merge-into``: seal ``secret``'s items for ``sealed``'s place and scope, replacing same-named ones."""
    ns, name, scope, _, _ = sealed_identity(sealed, "the --merge-into file")
    values = secret_values(secret, source)
    label = sealedsecret.encryption_label(ns, name, scope)
    spec = sealed.setdefault("spec", {})
    encrypted = spec.setdefault("encryptedData", {})
    for item in sorted(values):
        encrypted[item] = crypto.seal_value(certificate.public_key, values[item], label)
    meta = sealed.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    annotations.update(skerry_annotations(certificate))
    meta["annotations"] = annotations
    return sealed


def re_encrypt(
    address: str,
    tls_files,
    sealed: dict,
    *,
    domain: str = "",
    server_name: str | None = None,
    timeout: float = 30.0,
    channel=None,
) -> dict:
    """Ask the sealer to re-seal ``sealed``'s items with its newest key (operators); returns the new object."""
    ns, name, scope, sealed_domain, encrypted = sealed_identity(sealed)
    annotations = (sealed.get("metadata") or {}).get("annotations") or {}
    request = sealer_pb2.ReEncryptRequest(
        namespace=ns,
        name=name,
        scope=scope,
        encrypted_data=encrypted,
        domain=sealed_domain or domain,
        key_hint=str(annotations.get(sealedsecret.ANNOTATION_KEY_ID) or ""),
    )
    own = channel is None
    channel = channel or secure_channel(address, tls_files, server_name=server_name)
    try:
        resp = sealer_pb2_grpc.SealerServiceStub(channel).ReEncrypt(request, timeout=timeout)
    except grpc.RpcError as e:
        err = error_from_rpc(e, f"sealer {address}")
        raise (SealError(str(err)) if type(err) is InvalidInput else err) from None
    finally:
        if own:
            channel.close()
    out = json.loads(json.dumps(sealed))
    out["spec"]["encryptedData"] = dict(sorted(resp.encrypted_data.items()))
    meta = out.setdefault("metadata", {})
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        sealedsecret.ANNOTATION_KEY_ID: resp.key_id,
        sealedsecret.ANNOTATION_DOMAIN: resp.domain,
    }
    return out
