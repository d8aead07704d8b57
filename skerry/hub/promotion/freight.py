"""Freight: what an app runs in an environment, read from and written to its kustomization.

The freight of an app in an environment is the ``images:`` list of the kustomization in its overlay
(name, newName, newTag, digest), plus what the hub knows from outside Git: the config revision, the
bundle digest each cluster was given and what each cluster reports. Reading and writing the YAML
uses ruamel.yaml's round-trip mode so a promotion commit changes only the values it must: comments,
key order, quoting and indentation of everything else stay byte for byte (the hub never re-dumps a
file with PyYAML).

Pure: text in, text out.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from skerry.core import documents
from skerry.core.errors import InvalidInput
from skerry.hub.render.kustomization import MAX_KUSTOMIZATION_BYTES

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MAX_IMAGES = 1000  # one kustomization's images list; more is surely not hand-written freight
IMAGE_FIELDS = ("newName", "newTag", "digest")


@dataclasses.dataclass(frozen=True, order=True)
class Image:
    """One ``images:`` entry: ``name`` is the image the manifests use, the rest what replaces it."""

    name: str
    new_name: str = ""
    new_tag: str = ""
    digest: str = ""

    @property
    def reference(self) -> str:
        ref = self.new_name or self.name
        if self.new_tag:
            ref += f":{self.new_tag}"
        if self.digest:
            ref += f"@{self.digest}"
        return ref


@dataclasses.dataclass(frozen=True)
class ImageChange:
    name: str
    before: str  # reference, "" if the target has no entry
    after: str


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long lines
    return y


def _load(text: bytes, where: str):
    try:  # the size, alias and depth budgets first: ruamel shares aliased nodes just as PyYAML does
        documents.load_yaml(text, max_bytes=MAX_KUSTOMIZATION_BYTES)
    except documents.BadDocument as e:
        raise InvalidInput(f"{documents.clip(where)}: {e}", reason=e.reason) from None
    try:
        doc = _yaml().load(text)
    except (YAMLError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{where}: not valid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where}: a kustomization must be a mapping")
    return doc


def _entries(doc, where: str) -> list:
    images = doc.get("images")
    if images is None:
        return []
    if not isinstance(images, list) or len(images) > MAX_IMAGES:
        raise InvalidInput(f"{where}: images must be a list of at most {MAX_IMAGES} entries")
    for i, entry in enumerate(images):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise InvalidInput(f"{where}: images[{i}] needs a name")
    return images


def read_images(text: bytes, where: str) -> tuple[Image, ...]:
    """The ``images:`` of a kustomization, sorted by name."""
    doc = _load(text, where)
    out = []
    for entry in _entries(doc, where):
        out.append(
            Image(
                name=str(entry["name"]),
                new_name=str(entry.get("newName") or ""),
                new_tag=str(entry.get("newTag") or ""),
                digest=str(entry.get("digest") or ""),
            )
        )
    return tuple(sorted(out))


def set_images(text: bytes, images: Iterable[Image], where: str) -> bytes:
    """``text`` with each image's entry set to ``images`` (added if missing), nothing else changed.

    Entries for other images are kept as they are; a field the new freight lacks is removed. A value
    that already has a field is replaced in place, token for token, at the position ruamel.yaml
    reports, so every other byte (comments, quoting, indentation) is untouched. Only when an entry
    or field must be added is the document re-emitted by ruamel.yaml, with the file's own
    indentation (guessed from it).
    """
    images = list(images)
    doc = _load(text, where)
    entries = _entries(doc, where)
    by_name = {e["name"]: e for e in entries}
    structural = any(
        image.name not in by_name
        or any(
            (key not in by_name[image.name]) != (not value)
            for key, value in (("newName", image.new_name), ("newTag", image.new_tag), ("digest", image.digest))
        )
        for image in images
    )
    if structural:
        out = _reemit(text, images, where)
    else:
        out = _splice(text, doc, by_name, images)
    got = {i.name: i for i in read_images(out, where)}
    for image in images:
        if got.get(image.name) != image:
            raise InvalidInput(f"{where}: could not set image {image.name} to {image.reference} (got {got.get(image.name)})")
    return out


def _splice(text: bytes, doc, by_name: dict, images: list[Image]) -> bytes:
    lines = text.decode().splitlines(keepends=True)
    edits = []  # (line, col, old token length, new token)
    for image in images:
        entry = by_name[image.name]
        for key, value in (("newName", image.new_name), ("newTag", image.new_tag), ("digest", image.digest)):
            if not value or str(entry.get(key)) == value:
                continue
            line, col = entry.lc.value(key)
            token = _token_length(lines[line], col)
            old = lines[line][col : col + token]
            quote = old[0] if old[:1] in ("'", '"') else ("" if _plain_ok(value) else '"')
            edits.append((line, col, token, f"{quote}{value}{quote}"))
    for line, col, length, new in sorted(edits, reverse=True):
        lines[line] = lines[line][:col] + new + lines[line][col + length :]
    return "".join(lines).encode()


def _plain_ok(value: str) -> bool:
    """True if ``value`` written unquoted reads back as the same string (``1.27`` would be a number)."""
    if not value or value[0] in "'\"&*!|>%@`{[#,-?:" or ": " in value or " #" in value or value != value.strip():
        return False
    # YAML 1.1 too, as kustomize reads it: "yes" or "0777" are not strings there.
    try:
        return YAML(typ="safe", pure=True).load(value) == value and documents.yaml11_scalar(value) == value
    except (YAMLError, documents.BadDocument):
        return False


def _token_length(line: str, col: int) -> int:
    """Length of the scalar token starting at ``col`` (quoted, or plain up to a comment/flow end)."""
    if line[col : col + 1] in ("'", '"'):
        q = line[col]
        i = col + 1
        while i < len(line):
            if line[i] == q:
                if q == "'" and line[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                return i + 1 - col
            if q == '"' and line[i] == "\\":
                i += 2
                continue
            i += 1
        return len(line) - col
    end = col
    while end < len(line) and line[end] not in "\r\n,}]" and line[end : end + 2] != " #":
        end += 1
    while end > col and line[end - 1] in " \t":
        end -= 1
    return end - col


def _reemit(text: bytes, images: list[Image], where: str) -> bytes:
    try:
        _, indent, block_seq_indent = load_yaml_guess_indent(text.decode())
    except (YAMLError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{where}: not valid YAML") from e
    y = _yaml()
    indent = indent or 2
    y.indent(mapping=indent, sequence=indent, offset=block_seq_indent or 0)
    doc = y.load(text)
    if doc.get("images") is None:
        doc["images"] = CommentedSeq()
    entries = doc["images"]
    by_name = {e["name"]: e for e in entries}
    for image in images:
        entry = by_name.get(image.name)
        if entry is None:
            entry = CommentedMap()
            entry["name"] = image.name
            entries.append(entry)
        for key, value in (("newName", image.new_name), ("newTag", image.new_tag), ("digest", image.digest)):
            if not value:
                entry.pop(key, None)
            elif str(entry.get(key)) != value:
                entry[key] = DoubleQuotedScalarString(value) if key == "newTag" else value
    buf = io.BytesIO()
    y.dump(doc, buf)
    return buf.getvalue()


def diff_images(source: Sequence[Image], target: Sequence[Image]) -> list[ImageChange]:
    """What promoting ``source`` into ``target`` changes, by image name."""
    before = {i.name: i for i in target}
    changes = []
    for image in sorted(source):
        old = before.get(image.name)
        if old is None or (old.new_name, old.new_tag, old.digest) != (image.new_name, image.new_tag, image.digest):
            changes.append(ImageChange(image.name, old.reference if old else "", image.reference))
    return changes


def freight_key(images: Sequence[Image]) -> str:
    """A stable text naming a set of images (what approvals are given for)."""
    return ",".join(f"{i.name}={i.reference}" for i in sorted(images))
