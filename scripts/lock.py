"""Write deploy/constraints.txt: the exact versions the images are built from.

Why: pyproject.toml states ranges (what the code needs); an image must be reproducible, so
``deploy/Dockerfile`` installs with ``pip install -c constraints.txt``. This script walks the
declared dependencies of ``skerry[hub,agent,sealer]`` (and the pinned in-process kustomize, which
pyproject can only declare for Python >= 3.14) through the installed distributions' metadata and
pins each to the version installed here, i.e. the versions the test suite just ran against.

    python scripts/lock.py            # rewrite deploy/constraints.txt
    python scripts/lock.py --check    # exit 1 if it is not what the environment would write
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "deploy" / "constraints.txt"
EXTRAS = ("hub", "agent", "sealer")
# Installed by the hub image outside pip's resolver (--ignore-requires-python): see pyproject's hub extra.
ALSO = ("pykustomize",)
HEADER = """\
# Exact versions the images are built from (deploy/Dockerfile: pip install -c constraints.txt).
# Written by scripts/lock.py from the environment the tests ran in; pyproject.toml holds the ranges.
"""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> list[str]:
    """skerry's own requirements for EXTRAS, read from pyproject.toml (not a possibly stale install)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return list(project["dependencies"]) + [r for e in EXTRAS for r in extras[e]] + list(ALSO)


def closure() -> dict[str, str]:
    """Canonical name -> installed version for everything skerry[hub,agent,sealer] pulls in."""
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [
        req for req in map(Requirement, declared())
        if req.marker is None or _canonical(req.name) in ALSO or req.marker.evaluate({"extra": ""})
    ]
    while todo:
        req = todo.pop()  # markers were evaluated when it was added, with the extras that asked for it
        dist = metadata.distribution(req.name)
        key = _canonical(dist.metadata["Name"])
        if (key, frozenset(req.extras)) in seen:
            continue
        seen.add((key, frozenset(req.extras)))
        pins[key] = dist.version
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(sub)
    return pins


def render() -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(closure().items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    text = render()
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python scripts/lock.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
