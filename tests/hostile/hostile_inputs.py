"""The hostile inputs every reader of outside YAML/JSON must survive, and how to run one against a reader.

Shared by the reader table (test_readers.py) and the fuzz targets (tests/fuzz/).
"""

from __future__ import annotations

import dataclasses
import time
import tracemalloc
from collections.abc import Callable

MAX_MESSAGE = 1024
MAX_SECONDS = 2.0
MAX_GROWTH = 50 * 1024 * 1024


def alias_bomb(levels: int = 9) -> bytes:
    """"Billion laughs" in under 1 KiB: 9 levels of 9 aliases each, 9**9 leaves once expanded."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


def kind_bomb() -> bytes:
    """An alias bomb where a reader puts the value in its message (``kind``)."""
    return alias_bomb() + b"apiVersion: v1\nkind: *a8\nmetadata: {name: x}\n"


HOSTILE: dict[str, bytes] = {
    "alias-bomb": alias_bomb(),
    "alias-bomb-in-kind": kind_bomb(),
    "recursive-alias": b"a: &a [*a]\n",
    "deep-flow": b"[" * 50_000 + b"]" * 50_000,
    "deep-json-object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "nan-yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {v: .nan}\n",
    "nan-json": b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "x": NaN}',
    "lone-surrogate-yaml": b'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "\\ud800"}\n',
    "lone-surrogate-json": b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "\\ud800"}}',
    "surrogate-bytes": b"kind: \xed\xa0\x80\n",
    "latin-1": b"kind: Zo\xeb\n",
    "non-ascii": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: zoë-☃}\ndata: {v: 😀}\n".encode(),
    "huge-key": b"{" + b"k" * 300_000 + b": 1}\n",
}


@dataclasses.dataclass
class Outcome:
    error: BaseException | None
    seconds: float
    growth: int


def run(reader: Callable[[bytes], object], data: bytes) -> Outcome:
    """Run ``reader`` on ``data``: what it raised, the CPU time it took (wall time means little on a machine
    shared at load 20), its peak allocation (tracemalloc)."""
    start = time.process_time()
    error = _call(reader, data)
    seconds = time.process_time() - start
    tracemalloc.start()
    try:
        _call(reader, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return Outcome(error, seconds, peak)


def _call(reader: Callable[[bytes], object], data: bytes) -> BaseException | None:
    try:
        reader(data)
    except BaseException as e:  # noqa: BLE001 - the caller judges what was raised
        return e
    return None
