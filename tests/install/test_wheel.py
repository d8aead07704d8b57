"""The built wheel, installed into a fresh virtualenv with only its declared dependencies, renders.

A real build (setuptools, no isolation: the build backend of the test environment) of a copy of the
source tree, a real ``python -m venv`` without system site-packages, ``pip install 'skerry[hub]'``
at the versions of deploy/constraints.txt, then the pinned in-process engine installed the way the
hub image and bootstrap install it. Then ``skerry render`` on the example fleet, a directory and a
cluster's whole bundle from a Git repository, must print what the development install prints.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleet"
INSTALL_TIMEOUT = 900  # pip may have to unpack ~50 wheels on a loaded machine
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 300)  # the fixture builds and installs (~2.5 min here)


def run(*argv, **kw) -> subprocess.CompletedProcess:
    """Run without the development checkout on the path (no PYTHONPATH, no active virtualenv, not in it)."""
    kw.setdefault("timeout", INSTALL_TIMEOUT)
    kw.setdefault("cwd", tempfile.gettempdir())
    kw.setdefault("env", {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "tests", "bench", "__pycache__", "*.egg-info", "build", "dist"))
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("skerry-*.whl")
    env_dir = tmp / "venv"
    made = run(sys.executable, "-m", "venv", env_dir)
    assert made.returncode == 0, made.stderr
    pip = [env_dir / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-compile", "-c", ROOT / "deploy" / "constraints.txt"]
    installed = run(*pip, f"{wheel}[hub]")
    assert installed.returncode == 0, installed.stderr
    engine = run(*pip, "--ignore-requires-python", "pykustomize")
    assert engine.returncode == 0, engine.stderr
    return env_dir


def skerry(venv: pathlib.Path, *args, cwd=None) -> subprocess.CompletedProcess:
    return run(venv / "bin" / "skerry", *args, cwd=cwd or venv, timeout=300)


def test_the_wheel_carries_the_license_and_only_declared_dependencies(venv):
    show = run(venv / "bin" / "python", "-c",
               "import importlib.metadata as m, skerry; d = m.distribution('skerry');"
               "print(skerry.__file__); print(d.metadata['License-Expression']);"
               "print(any(str(f).endswith('LICENSE') for f in d.files))")
    assert show.returncode == 0, show.stderr
    path, license_, has_file = show.stdout.split()
    assert path.startswith(str(venv)) and license_ == "Apache-2.0" and has_file == "True"
    check = run(venv / "bin" / "python", "-m", "pip", "check")
    assert check.returncode == 0, check.stdout


def test_installed_skerry_renders_the_example_overlay_with_the_pinned_engine(venv):
    proc = skerry(venv, "render", FLEET / "overlays" / "prod", "--engine", "inprocess")
    assert proc.returncode == 0, proc.stderr
    here = subprocess.run([sys.executable, "-m", "skerry", "render", str(FLEET / "overlays" / "prod"),
                           "--engine", "inprocess"], capture_output=True, text=True, timeout=300)
    assert here.returncode == 0, here.stderr
    objects = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "Namespace"}
    assert proc.stdout == here.stdout


def test_installed_skerry_renders_a_clusters_bundle_from_git(venv, tmp_path):
    repo = tmp_path / "fleet"
    shutil.copytree(FLEET, repo)
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "fleet"]):
        assert run("git", "-C", repo, *argv).returncode == 0
    proc = skerry(venv, "render", "--repo", repo, "--cluster", "oslo-prod", "--engine", "inprocess")
    assert proc.returncode == 0, proc.stderr
    bundle = json.loads(proc.stdout)
    assert bundle["cluster"] == "oslo-prod" and bundle["objects"]
    assert "render" not in bundle  # the engine is provenance beside the bundle, not part of its identity
    here = subprocess.run([sys.executable, "-m", "skerry", "render", "--repo", str(repo), "--cluster", "oslo-prod",
                           "--engine", "inprocess"], capture_output=True, text=True, timeout=300)
    assert here.returncode == 0, here.stderr
    assert proc.stdout == here.stdout  # byte for byte the bundle the development install builds


def test_installed_skerry_carries_the_manifests_it_installs(venv):
    """``skerry install`` from a wheel applies the deploy/ it shipped with: the management overlay
    renders from the installed package alone, with the hub, the sealer and their settings."""
    proc = run(venv / "bin" / "python", "-c",
               "import json, skerry.install.manifests as m;"
               "o = m.Overlay(m.deploy_dir(None), m.MANAGEMENT, {m.HUB_SETTINGS: {'SKERRY_HUB_REPO': 'x'}});"
               "print(m.deploy_dir(None)); print(json.dumps(sorted((d['kind'], d['metadata']['name']) "
               "for d in o.render('inprocess'))))")
    assert proc.returncode == 0, proc.stderr
    where, objects = proc.stdout.splitlines()
    assert where.startswith(str(venv))
    kinds = {tuple(o) for o in json.loads(objects)}
    assert {("Deployment", "skerry-hub"), ("Deployment", "skerry-sealer"), ("Service", "skerry-hub")} <= kinds
    assert any(kind == "ConfigMap" and name.startswith("skerry-hub-") for kind, name in kinds)
