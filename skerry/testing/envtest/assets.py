"""Finding, or building once, the control-plane binaries (kube-apiserver, etcd, kube-controller-manager).

The binaries come from ``$KUBEBUILDER_ASSETS`` or a per-user cache; a missing cache is built by
``build.sh`` next to this file (Debian's Kubernetes 1.20.2 sources, several minutes cold). The build
script is package data, so an installed Skerry can build its own control plane.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable

from skerry.testing.envtest.errors import EnvtestError

BUILD_SCRIPT = pathlib.Path(__file__).resolve().with_name("build.sh")
REQUIRED_BINARIES = ("kube-apiserver", "etcd")
ALL_BINARIES = ("kube-apiserver", "etcd", "kube-controller-manager")
# How much of a failed build's stderr the error carries (the whole log scrolled past on stderr already).
BUILD_ERROR_TAIL_LINES = 40
# The build's stderr is echoed live; this many recent lines are kept for the error.
_KEPT_LINES = 60
# Joining the stderr pump after the build exited: its pipe is closed, so this is only a safety bound.
_PUMP_JOIN_SECONDS = 5


def cache_bin_dir() -> pathlib.Path:
    """Where ``build.sh`` puts the binaries: ``$SKERRY_ENVTEST_CACHE/bin`` or the XDG cache."""
    root = os.environ.get("SKERRY_ENVTEST_CACHE")
    if root:
        return pathlib.Path(root) / "bin"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(xdg) / "skerry" / "envtest" / "bin"


def has_binaries(dir_: pathlib.Path, names: Iterable[str]) -> bool:
    return all((dir_ / n).is_file() and os.access(dir_ / n, os.X_OK) for n in names)


def require_binaries(dir_: pathlib.Path, *, controller_manager: bool) -> None:
    """Raise :class:`EnvtestError` unless ``dir_`` holds what a cluster with these components needs."""
    if not has_binaries(dir_, REQUIRED_BINARIES):
        raise EnvtestError(f"{dir_} lacks {', '.join(REQUIRED_BINARIES)}")
    if controller_manager and not has_binaries(dir_, ["kube-controller-manager"]):
        raise EnvtestError(f"{dir_} has no kube-controller-manager; pass controller_manager=False")


def assets_dir(build: bool = True) -> pathlib.Path:
    """Return the directory holding kube-apiserver, etcd (and kube-controller-manager).

    Looks at ``$KUBEBUILDER_ASSETS`` first, then the cache. With ``build=True``
    (default) a missing cache is built by ``build.sh`` (a cold build takes
    several minutes; its progress goes to stderr). With ``build=False`` only
    existing binaries are accepted. Raises :class:`EnvtestError` on failure.
    """
    if not build:
        env = os.environ.get("KUBEBUILDER_ASSETS")
        if env and has_binaries(pathlib.Path(env), REQUIRED_BINARIES):
            return pathlib.Path(env).resolve()
        cached = cache_bin_dir()
        if has_binaries(cached, ALL_BINARIES):
            return cached
        raise EnvtestError(
            f"envtest binaries not found (KUBEBUILDER_ASSETS={env!r}, cache {cached}); "
            f"build them with `python -m skerry.testing.envtest build` or `bash {BUILD_SCRIPT}`"
        )
    return _build()


def _build() -> pathlib.Path:
    """Run ``build.sh`` (it answers at once when the binaries exist) and return the directory it prints."""
    if not BUILD_SCRIPT.is_file():
        raise EnvtestError(f"build script missing: {BUILD_SCRIPT} (package data not installed?)")
    if shutil.which("bash") is None:
        raise EnvtestError("bash is required to run the envtest build script")

    tail: list[str] = []
    with subprocess.Popen(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    ) as proc:

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                tail.append(line.rstrip("\n"))
                del tail[:-_KEPT_LINES]
                sys.stderr.write(line)
                sys.stderr.flush()

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        assert proc.stdout is not None
        out = proc.stdout.read()
        rc = proc.wait()
        t.join(timeout=_PUMP_JOIN_SECONDS)
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    if rc != 0 or not lines:
        msg = "\n".join(tail[-BUILD_ERROR_TAIL_LINES:]) or "(no output)"
        raise EnvtestError(f"{BUILD_SCRIPT} failed (exit {rc}):\n{msg}")
    path = pathlib.Path(lines[-1])
    if not has_binaries(path, REQUIRED_BINARIES):
        raise EnvtestError(f"{BUILD_SCRIPT} printed {path}, which lacks {', '.join(REQUIRED_BINARIES)}")
    return path
