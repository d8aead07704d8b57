"""JSON documents from outside, and the JSON form of a loaded YAML tree: size, depth, NaN and
infinities, encoding and lone surrogates checked (see the package docstring)."""

from __future__ import annotations

import json
import math
from typing import Any

from skerry.core.documents.bounds import (
    DEFAULT_MAX_BYTES,
    MAX_DEPTH,
    BadDocument,
    check_size,
    clip,
    clip_repr,
    one_line,
)

# --- JSON -------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise BadDocument(f"{name} is not a JSON number", reason="NotJson")


def load_json(data: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """One JSON value: size, depth, NaN/infinity, encoding and lone surrogates checked."""
    check_size(data, max_bytes)
    try:
        doc = json.loads(data, parse_constant=_reject_constant)
    except BadDocument:
        raise
    except RecursionError:
        raise BadDocument(f"nested deeper than {MAX_DEPTH} levels", reason="TooDeep") from None
    except UnicodeDecodeError as e:
        raise BadDocument(f"not UTF-8 (byte {e.start})", reason="BadEncoding") from None
    except ValueError as e:
        raise BadDocument(f"invalid JSON: {one_line(str(e))}", reason="InvalidJSON") from None
    _check_tree(doc)
    return doc


def bad_text(s: str) -> bool:
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_tree(doc: Any) -> None:
    """Depth and lone surrogates of a parsed JSON value, without recursion."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise BadDocument(f"nested deeper than {MAX_DEPTH} levels", reason="TooDeep")
            for k, v in value.items():
                if bad_text(k):
                    raise BadDocument(f"key {clip_repr(k)} holds a lone surrogate", reason="BadEncoding")
                if isinstance(v, (dict, list)):
                    stack.append((v, depth + 1))
                elif isinstance(v, str) and bad_text(v):
                    raise BadDocument(f"{clip_repr(k)} holds a lone surrogate", reason="BadEncoding")
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise BadDocument(f"nested deeper than {MAX_DEPTH} levels", reason="TooDeep")
            for v in value:
                if isinstance(v, (dict, list)):
                    stack.append((v, depth + 1))
                elif isinstance(v, str) and bad_text(v):
                    raise BadDocument("a string holds a lone surrogate", reason="BadEncoding")
        elif isinstance(value, str) and bad_text(value):
            raise BadDocument("a string holds a lone surrogate", reason="BadEncoding")


# --- the JSON form of a loaded tree -----------------------------------------------------------


class NotJson(BadDocument):
    """The value cannot be represented in JSON; the message names where."""

    reason = "NotJson"


def to_json_value(value: Any, where: str = "") -> Any:
    """Return ``value`` as plain JSON types, or raise ``NotJson`` naming the offending field.

    Aliased nodes are copied here, which the alias budget bounds; integer and boolean keys are
    converted the way ``sigs.k8s.io/yaml`` does.
    """
    return _to_json(value, where, 0)


def _to_json(value: Any, where: str, depth: int) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        if bad_text(value):
            raise NotJson(f"{clip(where) or 'value'}: a lone surrogate is not text", reason="BadEncoding")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJson(f"{clip(where) or 'value'}: {value} is not representable in JSON")
        return value
    if depth >= MAX_DEPTH:
        raise NotJson(f"{clip(where) or 'value'}: nested deeper than {MAX_DEPTH} levels", reason="TooDeep")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, bool):
                skey = "true" if key else "false"
            elif isinstance(key, (int, str)):
                skey = str(key)
            elif isinstance(key, float) and math.isfinite(key):
                skey = repr(key)
            else:
                raise NotJson(f"{clip(where) or 'value'}: key {clip_repr(key)} is not a string")
            if skey in out:
                raise NotJson(f"{clip(where) or 'value'}: key {clip_repr(skey)} appears twice")
            out[skey] = _to_json(item, f"{where}.{skey}" if where else skey, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise NotJson(f"{clip(where) or 'value'}: a {type(value).__name__} value is not representable in JSON")
