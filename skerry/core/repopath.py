"""Paths inside the Git repository, as the fleet file and ``skerry.yaml`` name them.

One rule for every such path: relative to the repository root, ``/``
separators, no ``..`` component, nothing under ``.git``. The fleet file's
cluster and pipeline paths and the promotion config's overlays both take it;
each reports a refusal in its own file's words (``RepositoryPathError`` holds
only the problem, the caller adds file and field).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from skerry.core.documents import clip_repr

_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


class RepositoryPathError(ValueError):
    """Why a value is not a path inside the repository (file and field are the caller's)."""


def repository_path(value: Any) -> str:
    """The normalised form of ``value`` as a path relative to the repository root, or
    ``RepositoryPathError`` saying what is wrong with it."""
    if not isinstance(value, str) or not value.strip():
        raise RepositoryPathError("must be a non-empty path relative to the repository root")
    shown = clip_repr(value)
    if value.startswith(("/", "\\")) or _DRIVE.match(value):
        raise RepositoryPathError(f"{shown} is absolute; paths are relative to the repository root")
    if "\\" in value or "\x00" in value:
        raise RepositoryPathError(f"{shown} must use '/' separators")
    if ".." in value.split("/"):
        raise RepositoryPathError(f"{shown} escapes the repository ('..' is not allowed)")
    normal = posixpath.normpath(value)
    if normal.split("/")[0] == ".git":
        raise RepositoryPathError(f"{shown} points into .git")
    return normal
