"""One loader for every service's settings: field defaults, then ``PREFIX_<FIELD>`` variables, then flags.

A service's config is a frozen dataclass; this module reads it, so each service no longer writes its own
loop over the environment and its own string-to-type table. The variable for field ``keys_dir`` under
prefix ``SKERRY_SEALER_`` is ``SKERRY_SEALER_KEYS_DIR``; an empty variable counts as unset. Command-line
flags arrive as ``overrides`` (``None`` and empty sequences mean "not given") and win over the
environment. Values are converted by the field's annotation:

    str, str | None                  as given
    int, float (and | None)          a number, else ConfigError naming the variable
    bool                             1/true/yes/on or 0/false/no/off
    pathlib.Path (and | None)        a path
    tuple[str, ...]                  comma-separated, blanks dropped
    tuple[pathlib.Path, ...]         comma-separated paths

Anything else (a duration, a nested type) is the service's own ``convert`` hook's job. Validation stays
with each config class (``validate()``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from skerry.core.errors import ConfigError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

Convert = Callable[[str, object], object]


def env_name(prefix: str, field: str, names: Mapping[str, str] | None = None) -> str:
    """``prefix`` + the field's upper-cased name, or its entry in ``names`` (a shorter historical name)."""
    return prefix + (names or {}).get(field, field.upper())


def load(
    cls: type,
    prefix: str,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    *,
    convert: Mapping[str, Convert] | None = None,
    env_names: Mapping[str, str] | None = None,
) -> Any:
    """``cls`` from its defaults, ``prefix``-named variables in ``environ`` (default ``os.environ``), then
    ``overrides``. ``convert`` maps a field name to its own conversion; ``env_names`` gives a field a
    variable name other than its own. Unknown overrides are a TypeError (a programming error, not a
    user's)."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = set(overrides) - set(names)
    if unknown:
        raise TypeError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    raw: dict[str, object] = {}
    for name in names:
        value = environ.get(env_name(prefix, name, env_names))
        if value not in (None, ""):
            raw[name] = value
    raw.update({k: v for k, v in overrides.items() if v is not None and v != () and v != []})
    hints = _hints(cls)
    own = convert or {}
    values = {
        name: (
            own[name](name, value)
            if name in own
            else _convert(hints[name], value, env_name(prefix, name, env_names))
        )
        for name, value in raw.items()
    }
    return cls(**values)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(annotation: Any, value: object, where: str) -> object:
    kind = _strip_optional(annotation)
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        return tuple(_convert(item, str(v).strip(), where) for v in items if str(v).strip())
    if kind is bool:
        return _boolean(value, where)
    if kind in (int, float):
        try:
            return kind(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"{where} must be {what}, not {value!r}") from None
    if kind is pathlib.Path:
        return pathlib.Path(value)  # type: ignore[arg-type]
    if kind is str:
        return str(value)
    return value


def _strip_optional(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _boolean(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where} must be true or false, not {value!r}")
