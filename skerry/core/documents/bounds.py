"""The bounds every outside document is read within, the refusal they raise, and bounded messages.

Shared by the YAML and the JSON readers of this package (see its docstring for why each bound is what
it is).
"""

from __future__ import annotations

import reprlib
from typing import Any

from skerry.core.errors import InvalidInput

#: Nesting limit for YAML and JSON. Kubernetes objects, CRD schemas included, stay well under 100
#: levels; PyYAML's composer spends two Python frames a level and later walks one, so 200 keeps every
#: walk far from Python's default recursion limit of 1000.
MAX_DEPTH = 200
#: Aliases may always add this many nodes (a small document may reuse an anchor freely) ...
ALIAS_NODES_FLOOR = 10_000
#: ... and otherwise at most as many as the document spells out (see the module docstring).
ALIAS_NODES_PER_NODE = 1
#: An error message quotes at most this many characters of a value ...
CLIP_CHARS = 200
#: ... and a whole message stays under this (the acceptance bound is 1 KiB).
MAX_MESSAGE_CHARS = 900
#: State files Skerry writes itself (counters, digests, token records) hold at most a few hundred KiB;
#: a bigger one was not written by Skerry and is refused before it is parsed.
MAX_STATE_FILE_BYTES = 4 * 1024 * 1024
#: Default size limit for a reader that states none: the gRPC message cap.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


class BadDocument(InvalidInput, ValueError):
    """Outside input that is not an acceptable YAML/JSON document; ``reason`` names the check.

    Also a ``ValueError``, as ``json.loads`` failures are, so a reader that caught those keeps working.
    """

    reason = "InvalidDocument"


# --- messages ---------------------------------------------------------------------------------


def clip(text: str, limit: int = CLIP_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxdict = _repr.maxlist = _repr.maxtuple = _repr.maxset = 6
_repr.maxstring = _repr.maxother = CLIP_CHARS // 2
_repr.maxlong = 40


def clip_repr(value: Any) -> str:
    """A bounded ``repr`` of ``value``: never walks or prints more than a few levels and items."""
    return clip(_repr.repr(value))


def one_line(text: str) -> str:
    return clip(" ".join(str(text).split()), MAX_MESSAGE_CHARS)


def check_size(data: str | bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise BadDocument(f"{len(data)} bytes, over the {max_bytes} byte limit", reason="TooLarge")
