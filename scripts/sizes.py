"""Size limits for Skerry's own code: no module over 500 lines, no class over 300, no function over 80.

Past those sizes a module, type or function holds more than one job and a reader has to scroll to see
what it does (the project's style rule: split a type before ~300 lines, a module before ~500, a
function before ~80). ``scripts/test.sh`` runs this beside ruff; it prints the three largest of each
kind and exits 1 if anything not on ``ALLOWED`` is over its limit.

Sizes are physical lines from the first line of the ``def``/``class`` (decorators excluded) to its
last, as Python's ``ast`` reports them; a method counts as a function and also inside its class. The
generated gRPC code (``skerry/api/``) is not ours to size.

``ALLOWED`` lists what is over today and is being split on another branch; an entry is removed when
its split lands (the script names entries that are no longer over, so they can go).

    python scripts/sizes.py            # report; exit 1 on a new item over its limit
    python scripts/sizes.py --top 10   # show more of each kind
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import sys
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skerry"
GENERATED = (PACKAGE / "api",)

LIMITS = {"module": 500, "class": 300, "function": 80}

# Over a limit today, split on another branch; remove an entry when its split lands.
# Names: a module's path, or path::Qualified.name for a class or function.
ALLOWED: frozenset[str] = frozenset()  # nothing over today


def _sources() -> Iterator[pathlib.Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if not any(path.is_relative_to(g) for g in GENERATED):
            yield path


def _defs(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, str, int]]:
    """(kind, qualified name, lines) of every class and function, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = prefix + node.name
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            yield kind, name, node.end_lineno - node.lineno + 1  # type: ignore[operator]
            yield from _defs(node, name + ".")
        else:
            yield from _defs(node, prefix)


def measure() -> dict[str, list[tuple[int, str]]]:
    """Every module, class and function of the package with its size in lines, largest first."""
    sizes: dict[str, list[tuple[int, str]]] = {kind: [] for kind in LIMITS}
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        sizes["module"].append((len(text.splitlines()), rel))
        for kind, name, lines in _defs(ast.parse(text, filename=rel)):
            sizes[kind].append((lines, f"{rel}::{name}"))
    for items in sizes.values():
        items.sort(key=lambda item: (-item[0], item[1]))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=3, help="how many of each kind to print (default 3)")
    args = parser.parse_args(argv)
    sizes = measure()
    over: list[str] = []
    still_over: set[str] = set()
    for kind, limit in LIMITS.items():
        print(f"largest {'classes' if kind == 'class' else kind + 's'} (limit {limit}):")
        for lines, name in sizes[kind][: args.top]:
            print(f"  {lines:5d}  {name}")
        for lines, name in sizes[kind]:
            if lines <= limit:
                break
            if name in ALLOWED:
                still_over.add(name)
            else:
                over.append(f"{name}: {kind} of {lines} lines (limit {limit})")
    for name in sorted(ALLOWED - still_over):
        print(f"allowed but no longer over its limit (remove it from ALLOWED): {name}")
    for line in over:
        print(f"too large: {line}", file=sys.stderr)
    print(f"{len(over)} new item(s) over a limit; {len(still_over)} allowed while their split is under way")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
