"""Rendered objects of a cluster's paths -> that cluster's ``Bundle`` (pure).

Rejects what would make a bundle ambiguous or unappliable: an object
without ``apiVersion``, ``kind`` or ``metadata.name``, the same object
(``skerry.core.bundle.object_id``: group, kind, namespace, name) rendered
twice, whether by two paths or by one, and bundles over the size and
object-count limits the agent enforces. Errors are ``RenderError`` naming
the path(s).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from skerry.core.bundle import MAX_BUNDLE_BYTES, MAX_OBJECTS, Bundle, object_id
from skerry.core.canonical import sha256_digest
from skerry.core.errors import RenderError


def _describe(obj: Mapping) -> str:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    ns = meta.get("namespace")
    name = meta.get("name")
    ident = f"{ns}/{name}" if ns else f"{name}"
    return f"{obj.get('kind') or '<no kind>'} {ident}"


def check_object(obj: Mapping, path: str, index: int) -> None:
    if not isinstance(obj, Mapping):
        raise RenderError(f"{path}: object #{index} is not a mapping")
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj.get(field):
            raise RenderError(f"{path}: object #{index} ({_describe(obj)}) lacks {field}")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta.get("name"):
        raise RenderError(f"{path}: object #{index} ({_describe(obj)}) lacks metadata.name")
    ns = meta.get("namespace")
    if ns is not None and not isinstance(ns, str):
        raise RenderError(f"{path}: object #{index} ({_describe(obj)}) has a non-string metadata.namespace")


def build_bundle(
    cluster: str,
    rendered: Mapping[str, Sequence[dict]],
    *,
    source_url: str,
    revision: str,
    engine: str,
    engine_version: str,
) -> Bundle:
    """``rendered`` maps each of the cluster's paths (in order) to its objects."""
    owner: dict[str, str] = {}
    objects: list[dict] = []
    for path, objs in rendered.items():
        for i, obj in enumerate(objs):
            check_object(obj, path, i)
            oid = object_id(obj)
            if oid in owner:
                where = f"twice by {path}" if owner[oid] == path else f"by both {owner[oid]} and {path}"
                raise RenderError(f"cluster {cluster}: {_describe(obj)} ({oid}) is rendered {where}")
            owner[oid] = path
            objects.append(obj)
    if len(objects) > MAX_OBJECTS:
        raise RenderError(f"cluster {cluster}: {len(objects)} objects, over the {MAX_OBJECTS} object limit")
    return Bundle(
        cluster=cluster,
        revision=revision,
        source_url=source_url,
        paths=tuple(rendered),
        engine=engine,
        engine_version=engine_version,
        objects=tuple(objects),
    )


def encode_bundle(bundle: Bundle) -> bytes:
    """The bundle's canonical bytes, or ``RenderError`` if they exceed what an agent accepts."""
    try:
        data = bundle.encode()
    except (TypeError, ValueError) as e:
        raise RenderError(f"cluster {bundle.cluster}: objects are not JSON: {e}") from e
    if len(data) > MAX_BUNDLE_BYTES:
        raise RenderError(
            f"cluster {bundle.cluster}: bundle is {len(data)} bytes, over the {MAX_BUNDLE_BYTES} byte limit "
            f"(paths {', '.join(bundle.paths)})"
        )
    return data


def content_digest(bundle: Bundle) -> str:
    """Digest of the bundle's desired state: everything but ``source.revision``.

    Two commits that render a cluster to the same objects (from the same paths, with the same
    engine) give the same content digest, so the cluster needs no new release.
    """
    return sha256_digest(dataclasses.replace(bundle, revision="").encode())
