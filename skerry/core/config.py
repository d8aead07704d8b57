"""One loader for every service's settings: field defaults, then ``PREFIX_<FIELD>`` variables, then flags.

A service's config is a frozen dataclass; this module reads it, so each service no longer writes its own
loop over the environment and its own string-to-type table. The variable for field ``keys_dir`` under
prefix ``SKERRY_SEALER_`` is ``SKERRY_SEALER_KEYS_DIR``; an empty variable counts as unset. Command-line
flags arrive as ``overrides`` (``None`` and empty sequences mean "not given") and win over the
environment. Values are converted by the field's annotation:

    str, str | None                  as given
    int, float (and | None)          a number, else ConfigError naming the field and its variable
    bool                             1/true/yes/on or 0/false/no/off
    pathlib.Path (and | None)        a path
    tuple[str, ...]                  comma-separated, blanks dropped
    tuple[pathlib.Path, ...]         comma-separated paths

Anything else (a duration, a nested type) is a field's own parser: declare the field with
``setting(..., parse=duration)`` (the parser gets the raw value and ``field (VARIABLE)`` for its message).
Validation stays with each config class (``validate()`` or ``__post_init__``); ``check_choices`` is the
part they share: a field declared with ``choices=`` holds one of them, however the config was made.

The same fields make the command line: ``add_flags`` gives every ``setting`` with help text a flag
``--field-name`` (or its own ``flag=``) whose help names its variable, and ``flag_values`` reads them back
as the ``overrides`` of ``load``. The flag's shape follows the field: a ``bool`` is a switch with its
negation (``--watch`` / ``--no-watch``), a ``tuple`` of strings or paths is repeatable (each value may
itself be comma-separated, like its variable), ``choices=`` are checked by the parser. A field declared
with ``flag=False`` is read from the environment only (a secret must not sit on a command line); a plain
``dataclasses.field`` with ``metadata={"setting": False}`` is not read at all (a value the class builds
from other fields).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import functools
import os
import pathlib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from skerry.core.duration import parse_duration
from skerry.core.errors import ConfigError
from skerry.core.peers import MAX_DRAIN_SECONDS, SIGTERM_DRAIN_SECONDS

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
LOG_LEVELS = ("debug", "info", "warning", "error")

Parse = Callable[[object, str], object]  # (raw value, "field (VARIABLE)" for messages) -> value


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",  # noqa: A002 - argparse's word
    metavar: str | None = None,
    flag: str | bool | None = None,
    parse: Parse | None = None,
    choices: tuple[str, ...] | None = None,
    default_factory: Any = dataclasses.MISSING,
    repr: bool = True,  # noqa: A002 - dataclasses' word
) -> Any:
    """A config field that knows its help text, its flag (``None``: ``--field-name``; ``False``: none, the
    environment only), the values its flag accepts and its parser."""
    metadata = {"help": help, "metavar": metavar, "flag": flag, "parse": parse, "choices": choices}
    return dataclasses.field(default=default, default_factory=default_factory, repr=repr, metadata=metadata)


def duration(value: object, where: str) -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m`` (or bare seconds)."""
    return parse_duration(value, where)


def timedelta(value: object, where: str) -> _dt.timedelta:
    return _dt.timedelta(seconds=parse_duration(value, where))


def lower(value: object, where: str) -> str:
    return str(value).lower()


def _loaded(field: dataclasses.Field) -> bool:
    return field.metadata.get("setting", True) is not False


def _flag(field: dataclasses.Field) -> str | None:
    flag = field.metadata.get("flag")
    if not field.metadata.get("help") or flag is False:
        return None
    return flag if isinstance(flag, str) else "--" + field.name.replace("_", "-")


def add_flags(
    parser: argparse.ArgumentParser, cls: type, prefix: str, env_names: Mapping[str, str] | None = None
) -> None:
    """One flag per ``setting`` of ``cls`` that has help text; each help ends with its variable's name."""
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        flag = _flag(field)
        if flag is None:
            continue
        text = f"{field.metadata['help']} [{env_name(prefix, field.name, env_names)}]"
        kind = _strip_optional(hints[field.name])
        if kind is bool:  # a switch and its negation; not given: None, so the variable or default stands
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, help=text)
            continue
        repeat = typing.get_origin(kind) is tuple and field.metadata.get("parse") is None
        parser.add_argument(
            flag,
            dest=field.name,
            metavar=field.metadata.get("metavar"),
            choices=field.metadata.get("choices"),
            action="append" if repeat else "store",
            help=text,
        )


def flag_values(args: argparse.Namespace, cls: type) -> dict[str, object]:
    """The flags ``add_flags`` made, as ``load`` overrides (not given: ``None``)."""
    return {f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls) if _flag(f) is not None}


def env_name(prefix: str, field: str, names: Mapping[str, str] | None = None) -> str:
    """``prefix`` + the field's upper-cased name, or its entry in ``names`` (a shorter historical name)."""
    return prefix + (names or {}).get(field, field.upper())


def load(
    cls: type,
    prefix: str,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    *,
    env_names: Mapping[str, str] | None = None,
) -> Any:
    """``cls`` from its defaults, ``prefix``-named variables in ``environ`` (default ``os.environ``), then
    ``overrides``; a field's ``setting(parse=...)`` converts its value. ``env_names`` gives a field a
    variable name other than its own. Unknown overrides are a TypeError (a programming error, not a
    user's)."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(overrides) - set(fields)
    if unknown:
        raise TypeError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    raw: dict[str, object] = {}
    for name, field in fields.items():
        value = environ.get(env_name(prefix, name, env_names)) if _loaded(field) else None
        if value not in (None, ""):
            raw[name] = value
    given = {k: v for k, v in overrides.items() if v is not None and v != () and v != []}
    raw.update({k: v for k, v in given.items() if _loaded(fields[k])})
    hints = _hints(cls)
    values: dict[str, object] = {}
    for name, value in raw.items():
        where = f"{name} ({env_name(prefix, name, env_names)})"  # the field (the flag's name) and its variable
        parse = fields[name].metadata.get("parse")
        if parse is not None:
            values[name] = parse(value, where)
        else:
            values[name] = _convert(hints[name], value, where)
    for name, value in given.items():  # an unloaded field's override is the value itself
        if not _loaded(fields[name]):
            values[name] = value
    return cls(**values)


def log_level() -> Any:
    """The ``log_level`` field, declared alike by every service."""
    return setting(
        "info", metavar="LEVEL", parse=lower, choices=LOG_LEVELS, help="debug, info, warning or error (default info)"
    )


def drain() -> Any:
    """A server's ``drain`` field (hub, sealer): how long it answers NOT_SERVING after SIGTERM; ``check_drain``."""
    return setting(
        SIGTERM_DRAIN_SECONDS,
        metavar="DURATION",
        parse=duration,
        help=f"on SIGTERM, say NOT_SERVING this long before refusing calls (default {SIGTERM_DRAIN_SECONDS:g}s)",
    )


def check_drain(seconds: float) -> None:
    if not 0.0 <= seconds <= MAX_DRAIN_SECONDS:
        raise ConfigError(f"drain: must be between 0s and {MAX_DRAIN_SECONDS:g}s, got {seconds}")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """``ConfigError`` naming the field unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")


def check_choices(cfg: Any) -> None:
    """Every field of ``cfg`` declared with ``setting(choices=...)`` holds one of them (the flag parser checks
    only the command line; a variable or a config built in code arrives here unchecked)."""
    for field in dataclasses.fields(cfg):
        choices = field.metadata.get("choices")
        if choices:
            check_choice(field.name, getattr(cfg, field.name), choices)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(annotation: Any, value: object, where: str) -> object:
    kind = _strip_optional(annotation)
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        # a variable's "a,b", or a repeated flag's ["a", "b,c"]: every value may be comma-separated
        parts = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        items = [v for part in parts for v in (part.split(",") if isinstance(part, str) else [part])]
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
        return pathlib.Path(value).expanduser()  # type: ignore[arg-type]
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
