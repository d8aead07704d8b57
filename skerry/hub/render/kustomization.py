"""Kustomization files as Skerry reads them itself: their size bound, the fields that build on other
kustomizations, which references are remote bases, and refusing remote bases in a directory on disk.

A remote base (a URL, ``git@...``, ``github.com/...``, a ``?ref=``) is refused everywhere Skerry
renders: what it names can change without a commit, and fetching it is slow and reaches the network
from the renderer. The hub finds them while it walks a path's closure in Git (``closure``);
``skerry render DIR`` walks the files on disk here first (``refuse_remote_bases``), so that a local
render refuses what the hub would refuse.

Apart from ``closure`` (which pulls in the Git tree model and hashing) so that ``skerry render DIR``
imports only what it needs: it has to start about as fast as ``kubectl kustomize``.
"""

from __future__ import annotations

import pathlib
import re

from skerry.core import documents
from skerry.core.errors import RenderError
from skerry.hub.render.engine import KUSTOMIZATION_FILES

# Fields whose entries must be kustomizations (directories) or resource files.
BUILD_FIELDS = ("resources", "bases", "components")
# Bounds a walk: the kustomizations one render builds on.
MAX_KUSTOMIZATIONS = 2_000
# A kustomization file lists paths and small inline patches; kustomize's own largest examples are a
# few KiB. Anything bigger than this is not a kustomization anyone writes by hand.
MAX_KUSTOMIZATION_BYTES = 1024 * 1024
_REMOTE = re.compile(
    r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/|gitlab\.com/|bitbucket\.org/)|\?(?:ref|version|timeout)=|"
    r"\.git(?://|$)",
    re.IGNORECASE,
)


def is_remote(ref: str) -> bool:
    return bool(_REMOTE.search(ref))


def refuse_remote_bases(directory: pathlib.Path) -> None:
    """For ``skerry render DIR`` (files on disk, not Git): ``RenderError`` if any kustomization
    reachable through ``resources``/``bases``/``components`` names a remote base, as the hub would.

    Other problems (missing bases, bad YAML) are left to kustomize, whose message names them.
    """
    todo = [pathlib.Path(directory).resolve()]
    seen: set[pathlib.Path] = set()
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        if len(seen) > MAX_KUSTOMIZATIONS:
            raise RenderError(f"{directory}: builds on more than {MAX_KUSTOMIZATIONS} kustomizations")
        kfile = next((d / n for n in KUSTOMIZATION_FILES if (d / n).is_file()), None)
        if kfile is None:
            continue
        try:
            doc = documents.load_yaml(kfile.read_bytes(), max_bytes=MAX_KUSTOMIZATION_BYTES)
        except (documents.BadDocument, OSError):  # kustomize reports a broken file better, in its own words
            continue
        if not isinstance(doc, dict):
            continue
        for field in BUILD_FIELDS:
            refs = doc.get(field)
            for i, ref in enumerate(refs if isinstance(refs, list) else []):
                if not isinstance(ref, str):
                    continue
                if is_remote(ref):
                    raise RenderError(
                        f"{kfile}: {field}[{i}] {documents.clip_repr(ref)}: remote bases are refused (a URL is "
                        "mutable and slow to fetch); vendor it into the repository"
                    )
                target = d / ref
                if target.is_dir():
                    todo.append(target.resolve())
