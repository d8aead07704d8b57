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
