"""Kustomize's own Go library, loaded in-process: ``pykustomize``'s shared library through ctypes.

Why: ``kubectl kustomize`` costs 110-120 ms per overlay on this class of
machine, almost all of it process start; the same Go code called in-process
costs a few milliseconds. It is the real engine (``sigs.k8s.io/kustomize/api``
compiled into ``libpykustomize.so``), not a re-implementation, so the output
is kustomize's (the tests compare it object for object with ``kubectl
kustomize`` on every feature the hub relies on).

The only module that uses ``pykustomize``. It calls the library's three C
functions (build to JSON, last error, free) through ctypes rather than the
package's cffi layer: that layer parses its C declarations with pycparser when
imported, ~0.3 s of every ``skerry render``, which is about a kubectl run. So the
package is found, not imported (``_find_library``: where its wheel puts the
library, ``pykustomize/_lib/<os>-<arch>/``). One build call returns the result
as JSON, so no YAML round trip. The library reports errors through one
process-wide "last error" slot, so builds are serialised by a lock: a build
never reads another build's error.

Options are kustomize's safe defaults and are recorded in ``OPTIONS`` (part
of every render cache key): load restrictor ``RootOnly``, no plugins, no
Helm, no managed-by label, kustomize's default ordering.

The version recorded in bundles is the kustomize API module version read
from the Go build information embedded in the shared library
(``dep sigs.k8s.io/kustomize/api vX.Y.Z``), plus the pykustomize version; it is
read when first asked for (the hub asks; ``skerry render DIR`` does not).

A Go call cannot be interrupted, so the hub runs the library in a child process
(``skerry.hub.render.worker``) with a per-render deadline: ``timeout`` given, builds go through the
worker; ``timeout=None`` (``skerry render`` on a workstation) calls the library here, without the
child's start-up. With remote bases refused before rendering (``closure``), the ``RootOnly`` restrictor
and plugins, Helm and exec functions off, a build reads only the files written for it and makes no
network calls; output size is checked after the build.

pykustomize's metadata says Python >= 3.14, but the wheel is a plain
ABI-mode package and works on 3.11: ``scripts/bootstrap.sh`` installs
it with ``pip install --ignore-requires-python`` (pyproject cannot express
that). When it is missing the hub falls back to the binary engine.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
import os
import pathlib
import re
import threading

from skerry.core import documents
from skerry.core.errors import ConfigError, RenderError
from skerry.hub.render.engine import DEFAULT_MAX_OUTPUT_BYTES, Engine, flatten_documents
from skerry.hub.render.worker import RenderWorker

PACKAGE = "pykustomize"
# The knobs, as pykustomize's BuildOptions JSON; part of every render cache key.
OPTIONS = {
    "load_restrictions": 0,  # RootOnly
    "reorder": "unspecified",
    "add_managedby_label": False,
    "enable_plugins": False,
    "enable_helm": False,
    "helm_command": "",
}
_OPTIONS_JSON = json.dumps(OPTIONS, sort_keys=True).encode()
_API_DEP = re.compile(rb"\tsigs\.k8s\.io/kustomize/api\t(v\d+\.\d+\.\d+[0-9A-Za-z.+-]*)\t")
# The Go build information sits in the library's data; reading the whole file once is cheap
# (~28 MB, at start-up only) and this bound stops a surprise from reading anything bigger.
MAX_LIBRARY_BYTES = 256 * 1024 * 1024
# The package's version is the ``Version:`` header of its installed METADATA (what importlib.metadata
# reads; that module costs ~45 ms of CPU to import, a fifth of a small `skerry render`). The headers come
# first and are short; the long description after them is not read.
MAX_METADATA_HEADER_BYTES = 64 * 1024
_OS_DIRS = {"Linux": "linux", "Darwin": "darwin"}
_LIBRARY_NAMES = {"Linux": "libpykustomize.so", "Darwin": "libpykustomize.dylib"}
_MACHINES = {"x86_64": "amd64", "aarch64": "arm64"}

_lock = threading.Lock()


def _package_dirs() -> list[pathlib.Path]:
    """Where the pykustomize package is installed, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    return [pathlib.Path(base) for base in spec.submodule_search_locations]


def _find_library() -> pathlib.Path | None:
    """The shared library in the installed pykustomize package (``_lib/<os>-<arch>/``)."""
    uname = os.uname() if hasattr(os, "uname") else None
    name = _LIBRARY_NAMES.get(uname.sysname) if uname else None
    if uname is None or name is None:
        return None
    machine = _MACHINES.get(uname.machine, uname.machine)
    for base in _package_dirs():
        path = base / "_lib" / f"{_OS_DIRS[uname.sysname]}-{machine}" / name
        if path.is_file():
            return path
    return None


def _package_version() -> str:
    """pykustomize's installed version: the ``Version:`` header of its ``*.dist-info/METADATA``."""
    for base in _package_dirs():
        for info in sorted(base.parent.glob(f"{PACKAGE}-*.dist-info")):
            try:
                with open(info / "METADATA", "rb") as f:
                    header = f.read(MAX_METADATA_HEADER_BYTES).decode("utf-8", "replace")
            except OSError:
                continue
            for line in header.splitlines():
                if not line:
                    break
                if line.startswith("Version:"):
                    return line.partition(":")[2].strip()
    return "unknown"


def available() -> bool:
    return _find_library() is not None


def _library_version(path: pathlib.Path) -> str:
    try:
        if path.stat().st_size > MAX_LIBRARY_BYTES:
            return "unknown"
        m = _API_DEP.search(path.read_bytes())
    except OSError:
        return "unknown"
    return m.group(1).decode() if m else "unknown"


class KustomizeLibrary:
    """pykustomize's shared library, loaded in this process: one build at a time, output as JSON."""

    def __init__(self):
        path = _find_library()
        if path is None:
            raise ConfigError(f"{PACKAGE} is not installed (or ships no library for this platform)")
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            raise ConfigError(f"{PACKAGE}: cannot load its library {path}: {e}") from e
        lib.pykustomize_build_to_json.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.pykustomize_build_to_json.restype = ctypes.c_int
        lib.pykustomize_last_error.argtypes = []
        lib.pykustomize_last_error.restype = ctypes.c_void_p  # the library's own buffer: never freed here
        lib.pykustomize_free.argtypes = [ctypes.c_void_p]
        lib.pykustomize_free.restype = None
        self._lib, self._path = lib, path

    @functools.cached_property
    def version(self) -> str:
        return f"api {_library_version(self._path)} (pykustomize {_package_version()}, in-process)"

    def build_json(self, directory: str) -> tuple[bool, bytes]:
        """``(True, the library's JSON)`` or ``(False, its error message)``."""
        out = ctypes.c_void_p()
        with _lock:
            status = self._lib.pykustomize_build_to_json(directory.encode(), _OPTIONS_JSON, ctypes.byref(out))
            if status != 0:
                err = self._lib.pykustomize_last_error()
                message = ctypes.string_at(err) if err else b"unknown error"
                if out.value:
                    self._lib.pykustomize_free(out)
                return False, message
            if not out.value:
                return False, b"kustomize returned nothing"
            try:
                return True, ctypes.string_at(out)
            finally:
                self._lib.pykustomize_free(out)


class InProcessKustomizeEngine(Engine):
    """Kustomize's Go library: in a worker process with a deadline per render, or (``timeout=None``) here."""

    def __init__(self, *, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, timeout: float | None = None):
        self.max_output_bytes = max_output_bytes
        if timeout is None:
            self._runner: KustomizeLibrary | RenderWorker = KustomizeLibrary()
        else:
            self._runner = RenderWorker(timeout=timeout, max_output_bytes=max_output_bytes)

    def __repr__(self) -> str:
        return f"InProcessKustomizeEngine({self.version!r})"

    @property
    def name(self) -> str:
        return "kustomize"

    @property
    def version(self) -> str:
        return self._runner.version

    @property
    def options(self) -> str:
        return _OPTIONS_JSON.decode()

    def close(self) -> None:
        """Stop the worker process, if there is one."""
        if isinstance(self._runner, RenderWorker):
            self._runner.close()

    def _build(self, directory: pathlib.Path, *, where: str, root: pathlib.Path | None) -> list[dict]:
        if isinstance(self._runner, RenderWorker):
            ok, raw = self._runner.build(str(pathlib.Path(directory).resolve()), where)
        else:
            ok, raw = self._runner.build_json(str(directory))
        if not ok:
            message = raw.decode("utf-8", "replace")
            raise RenderError(f"{where}: kustomize build failed: {_clean(message, directory, root)}")
        if len(raw) > self.max_output_bytes:
            raise RenderError(f"{where}: kustomize produced more than {self.max_output_bytes} bytes")
        try:
            doc = documents.load_json(raw, max_bytes=self.max_output_bytes)
            resources = doc["resources"]
            if not isinstance(resources, list):
                raise TypeError("resources is not a list")
        except (documents.BadDocument, ValueError, KeyError, TypeError) as e:
            raise RenderError(f"{where}: unexpected output from {PACKAGE}: {e}") from e
        # List flattening as the binary engine's output gets; the values are JSON already (load_json checked
        # them), so they are not walked and copied again (~15 ms of CPU on the benchmark's tree of CRDs).
        return flatten_documents(resources, f"{where} (kustomize output)")


def _clean(message: str, directory: pathlib.Path, root: pathlib.Path | None) -> str:
    text = message.removeprefix("kustomize build failed: ")
    for base in filter(None, (root, directory)):
        for prefix in {str(pathlib.Path(base)), str(pathlib.Path(base).resolve())}:
            text = text.replace(prefix + "/", "").replace(prefix, ".")
    text = " ".join(text.split())
    return text if len(text) <= 600 else text[:597] + "..."
