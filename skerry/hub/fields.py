"""Field checks shared by the two readers of ``skerry.yaml``: the fleet (``fleet``) and its ``promotion:``
section (``promotion_policy``).

Why a module: both read the same file with the same rules for a mapping's keys and a repository path, and
every failure is one ``ConfigError`` line naming the file and the field. What came from the file reaches
the message clipped (``documents.clip``), so the line stays under 1 KiB whatever the file holds. One home
keeps the two sections' messages alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from skerry.core import documents
from skerry.core.errors import ConfigError
from skerry.core.repopath import RepositoryPathError, repository_path

FLEET_FILE = "skerry.yaml"


def type_name(value: Any) -> str:
    """What a YAML value is, as people say it (``a mapping``, ``a list``, ``nothing``, ``int`` ...)."""
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


@dataclasses.dataclass(frozen=True)
class Section:
    """The checks of one section of ``skerry.yaml`` (``""``: its top level); failures name ``<section>.<field>``."""

    name: str = ""

    def fail(self, field: str, problem: str, reason: str | None = None) -> ConfigError:
        where = ".".join(part for part in (self.name, documents.clip(field)) if part)
        problem = documents.clip(problem, documents.MAX_MESSAGE_CHARS // 2)
        return ConfigError(f"{FLEET_FILE}: {where}: {problem}" if where else f"{FLEET_FILE}: {problem}", reason=reason)

    def mapping(self, value: Any, field: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        """``value`` as a mapping with only ``allowed`` keys and every ``required`` one."""
        if not isinstance(value, dict):
            raise self.fail(field, f"must be a mapping, got {type_name(value)}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            names = ", ".join(map(documents.clip_repr, unknown))
            raise self.fail(field, f"unknown key(s) {names} (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                raise self.fail(field, f"{documents.clip_repr(key)} is required")
        return value

    def path(self, value: Any, field: str) -> str:
        """``value`` as a directory of the repository (``core.repopath``: relative, inside, not ``.git``)."""
        try:
            return repository_path(value)
        except RepositoryPathError as e:
            raise self.fail(field, str(e)) from None
