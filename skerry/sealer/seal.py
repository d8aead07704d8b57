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

Skerry adds two annotations to the SealedSecret (not to its template, so
they never reach the Secret): ``sealer.skerry.io/key-id`` (the sealing key's
fingerprint, so the sealer tries that key first) and
``sealer.skerry.io/domain`` (the key domain, i.e. region, sealed for).
Also here: kubeseal's other modes as pure functions - ``seal_raw``,
``merge_into``, ``recovery_unseal`` - and the clients of the sealer's
certificate endpoints (gRPC and plain HTTP) and of ``ReEncrypt``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import json
import re
from collections.abc import Mapping
from pathlib import Path as _Path
from typing import Any

from skerry.core import documents, sealedsecret
from skerry.core.errors import InvalidInput, SealError
from skerry.sealer import crypto

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FORMATS = ("yaml", "json")
_ITEM_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
# A PEM certificate is a few KiB; refuse to read more from a URL.
MAX_CERT_BYTES = 64 * 1024
# Manifests and SealedSecret files: a Secret is at most 1 MiB; sealed, about 4/3 of that plus keys.
MAX_MANIFEST_BYTES = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class SealingCertificate:
    """The sealer's certificate as a client uses it."""

    pem: bytes
    key_id: str
    public_key: Any = dataclasses.field(repr=False)
    domain: str = ""


def parse_manifest(text: str | bytes, source: str) -> dict:
    """One YAML or JSON document that must be a Secret; errors name ``source`` but no content."""
    docs = [d for d in load_documents(text, source) if d is not None]
    if len(docs) != 1:
        raise InvalidInput(f"{source}: expected exactly one Secret, found {len(docs)} documents")
    return _check_secret(docs[0], source)


def load_documents(text: str | bytes, source: str) -> list:
    """The documents of a manifest (bounded: ``skerry.core.documents``), as plain JSON values.

    Loading to JSON values copies what YAML anchors share, so no anchor of the input (from an
    annotation, say) reaches a SealedSecret written back out.
    """
    try:
        return documents.load_yaml_or_json(text, max_bytes=MAX_MANIFEST_BYTES)
    except documents.BadDocument as e:
        raise InvalidInput(f"{documents.clip(source)}: {e}", reason=e.reason) from None


def _check_secret(doc: Any, source: str) -> dict:
    if not isinstance(doc, dict):
        raise InvalidInput(f"{source}: expected a Secret object, not a {type(doc).__name__}")
    if sealedsecret.is_sealed_secret(doc):
        raise InvalidInput(f"{source}: is already a SealedSecret")
    if doc.get("kind") != "Secret" or doc.get("apiVersion", "v1") != "v1":
        raise InvalidInput(
            f"{source}: expected apiVersion v1, kind Secret; got "
            f"{documents.clip_repr(doc.get('apiVersion'))}/{documents.clip_repr(doc.get('kind'))}"
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


def _cert_domain(cert) -> str:
    from cryptography.x509.oid import NameOID

    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    value = str(ous[0].value) if ous else ""
    return value if re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", value) else ""


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
    return SealingCertificate(
        pem=pem, key_id=key_id_of(public_key), public_key=public_key, domain=_cert_domain(cert)
    )


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


def parse_sealed(text: str, source: str) -> list[dict]:
    """Every SealedSecret document in ``text`` (YAML stream, JSON object or v1 List)."""
    docs = _parse_documents(text, source)
    out = [d for d in docs if isinstance(d, dict) and sealedsecret.is_sealed_secret(d)]
    if not out:
        raise InvalidInput(f"{source}: no {sealedsecret.API_VERSION} SealedSecret found")
    for doc in out:
        sealed_identity(doc, source)
    return out


def _parse_documents(text: str | bytes, source: str) -> list:
    flat: list = []
    for d in load_documents(text, source):
        if d is None:
            continue
        if isinstance(d, dict) and d.get("kind") == "List" and isinstance(d.get("items"), list):
            flat.extend(d["items"])
        else:
            flat.append(d)
    return flat


def sealed_identity(sealed: Mapping, source: str = "input") -> tuple[str, str, str, str, dict[str, str]]:
    """``(namespace, name, scope, domain, encryptedData)`` of a SealedSecret, checked."""
    meta = sealed.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise InvalidInput(f"{source}: the SealedSecret's metadata must be a mapping")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{source}: the SealedSecret has no metadata.name")
    ns = str(meta.get("namespace") or "")
    annotations = meta.get("annotations") or {}
    spec = sealed.get("spec") or {}
    if not isinstance(annotations, Mapping) or not isinstance(spec, Mapping):
        raise InvalidInput(f"{source}: {ns}/{name} metadata.annotations and spec must be mappings")
    scope = sealedsecret.scope_from_annotations(annotations)
    encrypted = spec.get("encryptedData") or {}
    if not isinstance(encrypted, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in encrypted.items()
    ):
        raise InvalidInput(f"{source}: {ns}/{name} spec.encryptedData must map item names to base64 strings")
    if scope != sealedsecret.CLUSTER_WIDE and not ns:
        raise InvalidInput(f"{source}: the {scope} SealedSecret {name} has no metadata.namespace")
    domain = str(annotations.get(sealedsecret.ANNOTATION_DOMAIN) or "")
    return ns, name, scope, domain, dict(encrypted)


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


def recovery_unseal(sealed: Mapping, private_keys: list, source: str = "input") -> dict:
    """``kubeseal --recovery-unseal``: the ``v1 Secret`` of a SealedSecret, opened offline with private keys."""
    ns, name, scope, _, encrypted = sealed_identity(sealed, source)
    if not private_keys:
        raise InvalidInput("--recovery-unseal needs at least one --recovery-private-key")
    label = sealedsecret.encryption_label(ns, name, scope)
    data: dict[str, str] = {}
    for item in sorted(encrypted):
        raw = crypto.decode_item(encrypted[item], item=item)
        for key in private_keys:
            try:
                data[item] = base64.b64encode(crypto.hybrid_decrypt(key, raw, label)).decode("ascii")
                break
            except SealError:
                continue
        else:
            raise SealError(f"{source}: item {item!r} of {ns}/{name}: {crypto.UNSEAL_FAILED}")
    template = (sealed.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    for field in ("labels", "annotations"):
        if tmeta.get(field):
            meta[field] = dict(tmeta[field])
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": str(template.get("type") or "Opaque"),
        "data": data,
    }
    if "immutable" in template:
        secret["immutable"] = bool(template["immutable"])
    return secret


def load_private_keys(paths: list, *, kek: bytes | None = None) -> list:
    """RSA private keys from PEM files, Skerry key directories (``<domain>/<id>.key``) or a key backup."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from skerry.sealer import keys as keymod

    out = []
    for path in paths:
        path = _Path(path)
        if path.is_dir():
            registry = keymod.KeyRegistry.from_directory(path, kek=kek)
            for domain_dir in sorted(p for p in path.iterdir() if p.is_dir()):
                try:
                    keymod.normalize_domain(domain_dir.name)
                except InvalidInput:
                    continue
                out.extend(k.private_key for k in registry.stored_keys(domain_dir.name))
            continue
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InvalidInput(f"cannot read private key {path}: {e.strerror}") from None
        if data.lstrip().startswith(b"{"):
            try:
                doc = json.loads(data)
            except ValueError:
                raise InvalidInput(f"{path}: not a PEM key or a key backup") from None
            tmp = keymod.KeyRegistry(keymod.MemoryBackend())
            restored = tmp.restore_document(doc, kek=kek)
            out.extend(k.private_key for d in restored for k in tmp.stored_keys(d))
            continue
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise InvalidInput(f"{path}: not an unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise InvalidInput(f"{path}: not an RSA private key")
        out.append(key)
    if not out:
        raise InvalidInput("no private keys found in the given --recovery-private-key paths")
    return out


def fetch_certificate_url(url: str, *, domain: str = "", ca_file=None, timeout: float = 10.0) -> SealingCertificate:
    """``--cert URL``: GET a PEM certificate over HTTP(S), e.g. the sealer's ``/v1/cert.pem``."""
    import ssl
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"--cert URL must be http:// or https://, not {url[:80]!r}")
    if domain:
        query = urllib.parse.parse_qsl(parts.query)
        query = [(k, v) for k, v in query if k != "domain"] + [("domain", domain)]
        url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None) if parts.scheme == "https" else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310 - scheme checked
            pem = resp.read(MAX_CERT_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise SealError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SealError(f"cannot fetch the certificate from {url}: {reason}") from None
    if len(pem) > MAX_CERT_BYTES:
        raise SealError(f"{url}: the certificate is over {MAX_CERT_BYTES} bytes")
    return load_certificate(pem, url)


def render(obj: Mapping, fmt: str = "yaml") -> str:
    if fmt == "json":
        return json.dumps(obj, indent=2) + "\n"
    if fmt == "yaml":
        return documents.dump_yaml(dict(obj), allow_unicode=False, width=1 << 20)
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


def render_many(objs: list[Mapping], fmt: str = "yaml") -> str:
    """One object as itself; several as a YAML stream or a JSON ``v1 List``."""
    if len(objs) == 1:
        return render(objs[0], fmt)
    if fmt == "json":
        return render({"apiVersion": "v1", "kind": "List", "items": list(objs)}, fmt)
    return "---\n".join(render(o, fmt) for o in objs)


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
    import grpc

    from skerry.api.v1 import sealer_pb2, sealer_pb2_grpc
    from skerry.core.rpc import error_from_rpc

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
    channel = channel or _channel(address, tls_files, server_name)
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


def _channel(address: str, tls_files, server_name: str | None):
    import grpc

    from skerry.core.rpc import CHANNEL_OPTIONS
    from skerry.core.tls import channel_credentials

    options = list(CHANNEL_OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(address, channel_credentials(tls_files), options=options)
