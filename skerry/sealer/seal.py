"""Client-side sealing (``skerry seal``): a Secret manifest in, a Bitnami SealedSecret out.

Sealing needs only the sealer's public certificate, from a file or fetched
over mutual TLS, so it runs on any workstation or CI job. The output is the
``bitnami.com/v1alpha1`` SealedSecret that ``kubeseal`` would write: scope
annotations on the SealedSecret, one sealed value per ``data`` and
``stringData`` item (``stringData`` wins, as in Kubernetes) and a template
carrying the Secret's labels, annotations and type.

Values never reach an error message: parse errors report only positions,
and ``kubectl.kubernetes.io/last-applied-configuration`` (which holds the
whole Secret in clear) is dropped from the template, as upstream does.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from skerry.core import sealedsecret
from skerry.core.errors import InvalidInput, SealError
from skerry.sealer import crypto

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FORMATS = ("yaml", "json")
_ITEM_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


@dataclasses.dataclass(frozen=True)
class SealingCertificate:
    """The sealer's certificate as a client uses it."""

    pem: bytes
    key_id: str
    public_key: Any = dataclasses.field(repr=False)
    domain: str = ""


def parse_manifest(text: str, source: str) -> dict:
    """One YAML or JSON document that must be a Secret; errors name ``source`` but no content."""
    if text.lstrip().startswith("{"):
        # JSON proper first: YAML refuses some valid JSON (tabs as indentation).
        try:
            return _check_secret(json.loads(text), source)
        except json.JSONDecodeError:
            pass  # not JSON after all; let the YAML parser report it
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InvalidInput(
            f"{source}: not valid YAML or JSON ({e.problem or 'syntax error'}{where})"
        ) from None
    except yaml.YAMLError:
        raise InvalidInput(f"{source}: not valid YAML or JSON") from None
    if len(docs) != 1:
        raise InvalidInput(f"{source}: expected exactly one Secret, found {len(docs)} documents")
    return _check_secret(docs[0], source)


def _check_secret(doc: Any, source: str) -> dict:
    if not isinstance(doc, dict):
        raise InvalidInput(f"{source}: expected a Secret object, not a {type(doc).__name__}")
    if sealedsecret.is_sealed_secret(doc):
        raise InvalidInput(f"{source}: is already a SealedSecret")
    if doc.get("kind") != "Secret" or doc.get("apiVersion", "v1") != "v1":
        raise InvalidInput(
            f"{source}: expected apiVersion v1, kind Secret; got {doc.get('apiVersion')}/{doc.get('kind')}"
        )
    return doc


def secret_values(secret: Mapping, source: str = "input") -> dict[str, bytes]:
    """The plaintext per item: ``data`` decoded from base64, then ``stringData`` on top."""
    values: dict[str, bytes] = {}
    for field in ("data", "stringData"):
        section = secret.get(field) or {}
        if not isinstance(section, Mapping):
            raise InvalidInput(f"{source}: {field} must be a mapping of item name to value")
        for item, value in section.items():
            if not isinstance(item, str) or not _ITEM_RE.match(item):
                raise InvalidInput(
                    f"{source}: {field} item name {str(item)[:64]!r} is not a valid Secret key"
                )
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise InvalidInput(f"{source}: {field} item {item!r} must be a string (quote it in YAML)")
            if field == "data":
                try:
                    # Like Kubernetes (Go's decoder), line breaks inside the base64 are ignored.
                    values[item] = base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidInput(f"{source}: data item {item!r} is not valid base64") from None
            else:
                values[item] = value.encode("utf-8")
    if not values:
        raise InvalidInput(f"{source}: the Secret has no data or stringData to seal")
    return values


def load_certificate(pem: bytes, source: str, *, now: _dt.datetime | None = None) -> SealingCertificate:
    """Parse and check a sealing certificate (RSA >= 2048 bits, not expired)."""
    from cryptography import x509

    from skerry.sealer.keys import key_id_of

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SealError(f"{source}: not a PEM X.509 certificate") from None
    try:
        public_key = crypto.check_public_key(cert.public_key())
    except SealError as e:
        raise SealError(f"{source}: {e}") from None
    now = now or _dt.datetime.now(_dt.UTC)
    if now > cert.not_valid_after_utc:
        raise SealError(f"{source}: the sealing certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    return SealingCertificate(pem=pem, key_id=key_id_of(public_key), public_key=public_key)


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
    if scope_annotations:
        sealed_meta["annotations"] = scope_annotations
    return {
        "apiVersion": sealedsecret.API_VERSION,
        "kind": sealedsecret.KIND,
        "metadata": sealed_meta,
        "spec": {"encryptedData": encrypted, "template": template},
    }


def render(obj: Mapping, fmt: str = "yaml") -> str:
    if fmt == "json":
        return json.dumps(obj, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(dict(obj), sort_keys=False, default_flow_style=False, width=1 << 20)
    raise InvalidInput(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")


def fetch_certificate(
    address: str,
    tls_files,
    *,
    domain: str = "",
    server_name: str | None = None,
    timeout: float = 10.0,
) -> SealingCertificate:
    """Ask the sealer at ``address`` for its sealing certificate over mutual TLS."""
    import grpc

    from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
    from skerry.core.rpc import CHANNEL_OPTIONS, error_from_rpc
    from skerry.core.tls import channel_credentials

    peer = f"sealer {address}"
    options = list(CHANNEL_OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    with grpc.secure_channel(address, channel_credentials(tls_files), options=options) as channel:
        stub = sealer_pb2_grpc.SealerServiceStub(channel)
        try:
            resp = stub.GetCertificate(sealer_pb2.GetCertificateRequest(domain=domain), timeout=timeout)
        except grpc.RpcError as e:
            raise error_from_rpc(e, peer) from None
    cert = load_certificate(resp.certificate_pem, peer)
    if resp.key_id and resp.key_id != cert.key_id:
        raise SealError(f"{peer}: announced key id {resp.key_id} but the certificate's key is {cert.key_id}")
    return dataclasses.replace(cert, domain=resp.domain)
