"""``-o table|wide|json|yaml`` for every read command, and aligned tables (kubectl's look).

Why one module: the same rows print four ways, and every read command must offer the same
four. ``emit(rows, fmt, columns=..., wide=...)`` takes plain dicts (a command turns its replies
into rows once); ``table`` shows ``columns`` upper-cased and aligned, ``wide`` adds ``wide``,
``json``/``yaml`` print the rows whole. A command with a richer machine form (a protobuf
message) passes ``document=`` for json/yaml instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence

FORMATS = ("table", "wide", "json", "yaml")


def add_output_flag(parser, default: str = "table") -> None:
    parser.add_argument("-o", "--output", choices=FORMATS, default=default,
                        help=f"output format: {', '.join(FORMATS)} (default {default})")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value) or "-"
    text = " ".join(str(value).split())
    return text or "-"


def table(rows: Iterable[Mapping], columns: Sequence[str]) -> str:
    """Columns upper-cased, padded to the widest cell, separated by three spaces (as kubectl)."""
    grid = [[c.upper() for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in grid) for i in range(len(columns))]
    return "".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
                   for row in grid)


def emit(rows: list[Mapping], fmt: str, *, columns: Sequence[str], wide: Sequence[str] = (),
         document=None) -> None:
    """Print ``rows`` (or ``document`` for json/yaml) in ``fmt`` to stdout."""
    if fmt in ("json", "yaml"):
        doc = document if document is not None else {"items": list(rows)}
        if fmt == "json":
            sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
        else:
            from skerry.core import documents

            sys.stdout.write(documents.dump_yaml(json.loads(json.dumps(doc, default=str)), sort_keys=False))
        return
    sys.stdout.write(table(rows, (*columns, *wide) if fmt == "wide" else columns))


def readable_release(version: int | str) -> str:
    """A release as people read it: ``r7``; a millisecond epoch counter as its UTC time ``r2026-12-04T21:05:10.417``.

    Display only: release counters are numbers that only grow; while the hub allocates them
    from the clock they are 13-digit milliseconds, which nobody can compare by eye.
    """
    import datetime as _dt

    try:
        n = int(version)
    except (TypeError, ValueError):
        return str(version) or "-"
    if n <= 0:
        return "-"
    if n >= 10**12:  # a millisecond epoch (after 2001-09-09): show the instant it names
        # to the millisecond: the hub state counts on by one from such a counter, and two releases
        # must never read the same
        when = _dt.datetime.fromtimestamp(n // 1000, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"r{when}.{n % 1000:03d}"
    return f"r{n}"
