"""Kustomize's own Go library, loaded in-process through ``pykustomize`` (cffi).

Why: ``kubectl kustomize`` costs 110-120 ms per overlay on this class of
machine, almost all of it process start; the same Go code called through
cffi costs a few milliseconds. It is the real engine (``sigs.k8s.io/kustomize/api``
compiled into ``libpykustomize.so``), not a re-implementation, so the output
is kustomize's (the tests compare it object for object with ``kubectl
kustomize`` on every feature the hub relies on).

The only module that imports ``pykustomize``. Calls go through its small
synchronous cffi layer (``pykustomize._ffi``: one call per build, the result
as JSON, so no YAML round trip); the package's public API wraps the same
calls in ``asyncio.to_thread``, which the hub's worker threads do not need.
The library reports errors through one process-wide "last error" slot, so
builds are serialised by a lock: a build never reads another build's error.

Options are kustomize's safe defaults and are recorded in ``OPTIONS`` (part
of every render cache key): load restrictor ``RootOnly``, no plugins, no
Helm, no managed-by label, kustomize's default ordering.

The version recorded in bundles is the kustomize API module version read
from the Go build information embedded in the shared library
(``dep sigs.k8s.io/kustomize/api vX.Y.Z``), plus the pykustomize version.

What in-process cannot do: a Go call cannot be interrupted, so there is no
per-render timeout (the binary engine kills its process group). With remote
bases refused before rendering (``closure``), the ``RootOnly`` restrictor and
plugins, Helm and exec functions off, a build reads only the files written
for it and makes no network calls; output size is checked after the build.
Choose ``--engine binary`` where a hard deadline matters more than speed.

pykustomize's metadata says Python >= 3.14, but the wheel is a plain
cffi ABI-mode package and works on 3.11: ``scripts/bootstrap.sh`` installs
it with ``pip install --ignore-requires-python`` (pyproject cannot express
that). When it is missing the hub falls back to the binary engine.
"""

from __future__ import annotations

import json
import pathlib
import re
import threading

from skerry.core import documents
from skerry.core.errors import ConfigError, RenderError
from skerry.hub.render.engine import DEFAULT_MAX_OUTPUT_BYTES, Engine, _objects

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

_lock = threading.Lock()


def available() -> bool:
    # pykustomize is optional (a wheel for some platforms only): probed here, imported when an engine is made.
    try:
        import pykustomize  # noqa: F401
    except ImportError:
        return False
    return True


def _library_version(lib_path: str | None) -> str:
    if not lib_path:
        return "unknown"
    try:
        path = pathlib.Path(lib_path)
        if path.stat().st_size > MAX_LIBRARY_BYTES:
            return "unknown"
        m = _API_DEP.search(path.read_bytes())
    except OSError:
        return "unknown"
    return m.group(1).decode() if m else "unknown"


class InProcessKustomizeEngine(Engine):
    """Kustomize's Go library in this process."""

    def __init__(self, *, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES):
        try:
            import pykustomize
            from pykustomize import _ffi
        except ImportError as e:
            raise ConfigError(f"{PACKAGE} is not installed: {e}") from e
        try:
            self._lib = _ffi.get_library()
        except pykustomize.KustomizeError as e:
            raise ConfigError(f"{PACKAGE}: cannot load its library: {e}") from e
        self._ffi = _ffi
        self._error = pykustomize.KustomizeError
        self.max_output_bytes = max_output_bytes
        api = _library_version(_ffi._find_library())
        self._version = f"api {api} (pykustomize {pykustomize.__version__}, in-process)"

    def __repr__(self) -> str:
        return f"InProcessKustomizeEngine({self._version!r})"

    @property
    def name(self) -> str:
        return "kustomize"

    @property
    def version(self) -> str:
        return self._version

    @property
    def options(self) -> str:
        return _OPTIONS_JSON.decode()

    def _build(self, directory: pathlib.Path, *, where: str, root: pathlib.Path | None) -> list[dict]:
        ffi = self._ffi.ffi
        out = ffi.new("char**")
        with _lock:
            status = self._lib.pykustomize_build_to_json(str(directory).encode(), _OPTIONS_JSON, out)
            if status != 0:
                err = self._lib.pykustomize_last_error()
                message = ffi.string(err).decode("utf-8", "replace") if err != ffi.NULL else "unknown error"
                if out[0] != ffi.NULL:
                    self._lib.pykustomize_free(out[0])
                raise RenderError(f"{where}: kustomize build failed: {_clean(message, directory, root)}")
            if out[0] == ffi.NULL:
                raise RenderError(f"{where}: kustomize returned nothing")
            try:
                raw = ffi.string(out[0])
            finally:
                self._lib.pykustomize_free(out[0])
        if len(raw) > self.max_output_bytes:
            raise RenderError(f"{where}: kustomize produced more than {self.max_output_bytes} bytes")
        try:
            doc = documents.load_json(raw, max_bytes=self.max_output_bytes)
            resources = doc["resources"]
            if not isinstance(resources, list):
                raise TypeError("resources is not a list")
        except (documents.BadDocument, ValueError, KeyError, TypeError) as e:
            raise RenderError(f"{where}: unexpected output from {PACKAGE}: {e}") from e
        # Same checks (List flattening, JSON values) as the binary engine's output gets.
        return _objects(resources, f"{where} (kustomize output)")


def _clean(message: str, directory: pathlib.Path, root: pathlib.Path | None) -> str:
    text = message.removeprefix("kustomize build failed: ")
    for base in filter(None, (root, directory)):
        for prefix in {str(pathlib.Path(base)), str(pathlib.Path(base).resolve())}:
            text = text.replace(prefix + "/", "").replace(prefix, ".")
    text = " ".join(text.split())
    return text if len(text) <= 600 else text[:597] + "..."
