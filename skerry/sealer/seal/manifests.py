"""Reading and writing the manifests ``skerry seal`` handles: Secrets in, SealedSecrets in and out.

Input is bounded (``skerry.core.documents``: size, aliases, depth) and values never reach an error
message: parse errors report only positions and names. Output is YAML or JSON, several objects as a YAML
stream or a ``v1 List``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from skerry.core import documents, sealedsecret
from skerry.core.errors import InvalidInput

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FORMATS = ("yaml", "json")
_ITEM_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
# Manifests and SealedSecret files: a Secret is at most 1 MiB; sealed, about 4/3 of that plus keys.
MAX_MANIFEST_BYTES = 8 * 1024 * 1024


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


def parse_sealed(text: str, source: str) -> list[dict]:
    """Every SealedSecret document in ``text`` (YAML stream, JSON object or v1 List)."""
    docs = parse_documents(text, source)
    out = [d for d in docs if isinstance(d, dict) and sealedsecret.is_sealed_secret(d)]
    if not out:
        raise InvalidInput(f"{source}: no {sealedsecret.API_VERSION} SealedSecret found")
    for doc in out:
        sealed_identity(doc, source)
    return out


def parse_documents(text: str | bytes, source: str) -> list:
    """Every document of a manifest, the items of a ``v1 List`` flattened, empty documents dropped."""
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
        raise InvalidInput(f"{source}: {documents.clip(f'{ns}/{name}')} metadata.annotations and spec must be mappings")
    scope = sealedsecret.scope_from_annotations(annotations)
    encrypted = spec.get("encryptedData") or {}
    if not isinstance(encrypted, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in encrypted.items()
    ):
        raise InvalidInput(
            f"{source}: {documents.clip(f'{ns}/{name}')} spec.encryptedData must map item names to base64 strings"
        )
    if scope != sealedsecret.CLUSTER_WIDE and not ns:
        raise InvalidInput(f"{source}: the {scope} SealedSecret {documents.clip(name)} has no metadata.namespace")
    domain = str(annotations.get(sealedsecret.ANNOTATION_DOMAIN) or "")
    return ns, name, scope, domain, dict(encrypted)


def render(obj: Mapping, fmt: str = "yaml") -> str:
    if fmt == "json":
        return json.dumps(obj, indent=2) + "\n"
    if fmt == "yaml":
        return documents.dump_yaml(dict(obj), allow_unicode=False, width=1 << 20)
    raise InvalidInput(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")


def render_many(objs: list[Mapping], fmt: str = "yaml") -> str:
    """One object as itself; several as a YAML stream or a JSON ``v1 List``."""
    if len(objs) == 1:
        return render(objs[0], fmt)
    if fmt == "json":
        return render({"apiVersion": "v1", "kind": "List", "items": list(objs)}, fmt)
    return "---\n".join(render(o, fmt) for o in objs)
