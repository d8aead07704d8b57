"""Rendering one directory into Kubernetes objects.

``Engine`` is the small interface the hub renders through (``render``,
``name``, ``version``); the bundle records ``name`` and ``version``. Every
engine treats a directory the same way:

* with a ``kustomization.yaml``, ``kustomization.yml`` or ``Kustomization``
  file it is a Kustomize build (``Engine._build``);
* without one it is plain YAML: every ``*.yaml``, ``*.yml`` and ``*.json``
  file directly in it (not in subdirectories), in sorted file-name order.

Documents are parsed with the bounded safe loader (``skerry.core.documents``): empty
documents are skipped, ``List`` kinds are flattened into their items, any
other non-mapping document is an error, and the objects are checked to be
JSON.

``KustomizeEngine`` runs the real tool: ``kustomize build DIR`` if
``kustomize`` is on PATH, else ``kubectl kustomize DIR``. It runs with
Kustomize's defaults, which are the safe ones: load restrictor ``RootOnly``,
no Helm, no exec or container KRM functions, no alpha plugins. It gets a
minimal environment, a timeout (the process group is killed) and a bound on
its output. Failures are ``RenderError`` naming the path and the first
line(s) of the tool's stderr.
"""

from __future__ import annotations

import abc
import json
import os
import pathlib
import re
import selectors
import shutil
import signal
import subprocess
import time
from typing import Any

from skerry.core import documents
from skerry.core.errors import ConfigError, RenderError

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
PLAIN_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_TIMEOUT = 120.0
# Rendered output above this cannot fit in a bundle (skerry.core.bundle.MAX_BUNDLE_BYTES) anyway.
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024
MAX_STDERR_BYTES = 64 * 1024
_VERSION = re.compile(r"v?\d+\.\d+\.\d+[0-9A-Za-z.+-]*")
# Variables the render tool may see; everything else of the hub's environment stays out.
_PASS_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR")


def is_kustomization(directory: pathlib.Path) -> bool:
    return any((directory / name).is_file() for name in KUSTOMIZATION_FILES)


def display_path(directory: pathlib.Path, root: pathlib.Path | None) -> str:
    """``directory`` relative to ``root`` (the repository), for messages."""
    if root is not None:
        try:
            rel = pathlib.Path(directory).resolve().relative_to(pathlib.Path(root).resolve())
            return rel.as_posix() or "."
        except ValueError:
            pass
    return str(directory)


class Engine(abc.ABC):
    """Renders a directory into a list of Kubernetes objects (plain JSON dicts)."""

    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES

    @property
    @abc.abstractmethod
    def name(self) -> str: ...

    @property
    @abc.abstractmethod
    def version(self) -> str: ...

    def render(self, directory: pathlib.Path, *, root: pathlib.Path | None = None) -> list[dict]:
        """Render ``directory``; ``root`` (the repository) makes messages name repository paths."""
        directory = pathlib.Path(directory)
        where = display_path(directory, root)
        if root is not None:
            try:
                directory.resolve().relative_to(pathlib.Path(root).resolve())
            except ValueError:
                raise RenderError(f"{where}: resolves outside the repository") from None
        if not directory.exists():
            raise RenderError(f"{where}: no such directory")
        if not directory.is_dir():
            raise RenderError(f"{where}: not a directory")
        if is_kustomization(directory):
            return self._build(directory, where=where, root=root)
        return render_plain(directory, where=where, max_bytes=self.max_output_bytes)

    @abc.abstractmethod
    def _build(self, directory: pathlib.Path, *, where: str, root: pathlib.Path | None) -> list[dict]:
        """Render a kustomization directory."""


# --- documents -----------------------------------------------------------------------------


def _flatten(doc: Any, where: str, out: list[dict], depth: int = 0) -> None:
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise RenderError(f"{documents.clip(where)}: a {type(doc).__name__} is not a Kubernetes object")
    kind = doc.get("kind")
    items = doc.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list) and depth < 8:
        for i, item in enumerate(items):
            _flatten(item, f"{where} {kind} item #{i}", out, depth + 1)
        return
    out.append(doc)


def parse_documents(text: str | bytes, where: str) -> list[dict]:
    """Objects from a YAML (or JSON) stream; ``where`` names the source in errors."""
    try:
        docs = documents.load_yaml_all(text, max_bytes=DEFAULT_MAX_OUTPUT_BYTES, to_json=False)
    except documents.BadDocument as e:
        raise RenderError(f"{documents.clip(where)}: {e}", reason=e.reason) from None
    return _objects(docs, where)


def flatten_documents(docs: list[Any], where: str) -> list[dict]:
    """The objects of ``docs``: empty documents skipped, ``List`` kinds flattened into their items, any
    other non-mapping refused. The values are taken as they are: for a JSON document that ``load_json``
    checked (depth, NaN, encoding) nothing is left to convert (the in-process engine's output)."""
    out: list[dict] = []
    for i, doc in enumerate(docs):
        _flatten(doc, f"{where} document #{i}" if len(docs) > 1 else where, out)
    return out


def _objects(docs: list[Any], where: str) -> list[dict]:
    """``flatten_documents``, each object then made plain JSON (``to_json_value``: YAML gives more types)."""
    out = flatten_documents(docs, where)
    try:
        return [documents.to_json_value(obj, f"{where}: {documents.clip(obj.get('kind', 'object'), 60)}") for obj in out]
    except documents.BadDocument as e:
        raise RenderError(str(e), reason=e.reason) from None


def render_plain(
    directory: pathlib.Path, *, where: str, max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
) -> list[dict]:
    """Every ``*.yaml``/``*.yml``/``*.json`` file directly in ``directory``, sorted by name."""
    files = sorted(
        p for p in pathlib.Path(directory).iterdir() if p.is_file() and p.suffix.lower() in PLAIN_SUFFIXES
    )
    objects: list[dict] = []
    total = 0
    for path in files:
        fwhere = f"{where.rstrip('/')}/{path.name}" if where != "." else path.name
        try:
            data = path.read_bytes()
        except OSError as e:
            raise RenderError(f"{fwhere}: cannot read: {e.strerror}") from e
        total += len(data)
        if total > max_bytes:
            raise RenderError(f"{where}: plain YAML files exceed {max_bytes} bytes")
        if path.suffix.lower() == ".json":
            try:
                doc = documents.load_json(data, max_bytes=max_bytes)
            except documents.BadDocument as e:
                raise RenderError(f"{documents.clip(fwhere)}: {e}", reason=e.reason) from None
            docs = doc if isinstance(doc, list) else [doc]
            objects.extend(_objects(docs, fwhere))
        else:
            objects.extend(parse_documents(data, fwhere))
    return objects


# --- the kustomize tool ---------------------------------------------------------------------


class ToolFailed(Exception):
    def __init__(self, message: str, stderr: bytes = b""):
        super().__init__(message)
        self.stderr = stderr


def _tool_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def run_bounded(
    argv: list[str], *, cwd: pathlib.Path | None = None, timeout: float, max_stdout: int
) -> tuple[int, bytes, bytes]:
    """Run ``argv``; returns (exit status, stdout, stderr). Kills its process group on timeout or overflow."""
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_tool_env(),
            start_new_session=True,
        )
    except OSError as e:
        raise ToolFailed(f"cannot run {argv[0]}: {e.strerror}") from e
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    problem = None
    try:
        open_streams = 2
        while open_streams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problem = f"timed out after {timeout:g}s"
                break
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                buf: bytearray = key.data
                if buf is err:
                    if len(err) < MAX_STDERR_BYTES:
                        err.extend(chunk[: MAX_STDERR_BYTES - len(err)])
                else:
                    out.extend(chunk)
                    if len(out) > max_stdout:
                        problem = f"produced more than {max_stdout} bytes of output"
                        break
            if problem:
                break
        if problem:
            _kill(proc)
            raise ToolFailed(problem, bytes(err))
        try:
            status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise ToolFailed(f"timed out after {timeout:g}s", bytes(err)) from None
        return status, bytes(out), bytes(err)
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
        if proc.poll() is None:
            _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


# kubectl logs through klog: 'E1201 08:23:40.751731   31039 run.go:72] "command failed" err="..."'.
_KLOG = re.compile(r"^[EWIF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]]+\] (?P<msg>.*)$")
_KLOG_ERR = re.compile(r'^"command failed" err=(?P<err>".*")$')


def _clean_line(line: str) -> str:
    m = _KLOG.match(line)
    if not m:
        return line
    msg = m.group("msg")
    e = _KLOG_ERR.match(msg)
    if e:
        try:
            return "Error: " + json.loads(e.group("err"))
        except ValueError:
            return msg
    return msg


def stderr_summary(
    stderr: bytes, root: pathlib.Path | None = None, *, lines: int = 3, limit: int = 600
) -> str:
    """The first non-empty lines of a tool's stderr, with the scratch root removed from paths."""
    text = stderr.decode("utf-8", "replace")
    if root is not None:
        for prefix in {str(pathlib.Path(root)), str(pathlib.Path(root).resolve())}:
            text = text.replace(prefix + os.sep, "").replace(prefix, ".")
    kept = [_clean_line(ln.strip()) for ln in text.splitlines() if ln.strip()][:lines]
    summary = " | ".join(kept)
    return summary if len(summary) <= limit else summary[: limit - 3] + "..."


class KustomizeEngine(Engine):
    """The ``kustomize`` binary, or the Kustomize built into ``kubectl``."""

    def __init__(
        self,
        command: tuple[str, ...],
        *,
        name: str,
        version: str,
        timeout: float = DEFAULT_TIMEOUT,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ):
        self._command = tuple(command)
        self._name = name
        self._version = version
        self.timeout = timeout
        self.max_output_bytes = max_output_bytes

    def __repr__(self) -> str:
        return f"KustomizeEngine({' '.join(self._command)!r}, version={self._version!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @classmethod
    def detect(
        cls,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        path: str | None = None,
    ) -> KustomizeEngine:
        """``kustomize`` from PATH, else ``kubectl``; ``ConfigError`` if neither works."""
        kw = {"timeout": timeout, "max_output_bytes": max_output_bytes}
        kustomize = shutil.which("kustomize", path=path)
        if kustomize:
            out = _version_output([kustomize, "version"])
            m = _VERSION.search(out)
            if not m:
                raise ConfigError(f"cannot tell the version of {kustomize} from {out[:200]!r}")
            return cls((kustomize, "build"), name="kustomize", version=_v(m.group(0)), **kw)
        kubectl = shutil.which("kubectl", path=path)
        if kubectl:
            out = _version_output([kubectl, "version", "--client", "-o", "json"])
            try:
                info = json.loads(out)
                kversion = str(info["kustomizeVersion"])
                kubectl_version = str(info.get("clientVersion", {}).get("gitVersion", "unknown"))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise ConfigError(f"{kubectl} does not report a bundled Kustomize version") from e
            return cls(
                (kubectl, "kustomize"),
                name="kustomize",
                version=f"{_v(kversion)} (kubectl {kubectl_version})",
                **kw,
            )
        raise ConfigError("neither kustomize nor kubectl is on PATH; the hub needs one of them to render")

    def _build(self, directory: pathlib.Path, *, where: str, root: pathlib.Path | None) -> list[dict]:
        argv = [*self._command, str(directory)]
        try:
            status, out, err = run_bounded(
                argv, cwd=directory, timeout=self.timeout, max_stdout=self.max_output_bytes
            )
        except ToolFailed as e:
            detail = stderr_summary(e.stderr, root)
            raise RenderError(f"{where}: {self.name} {e}" + (f": {detail}" if detail else "")) from None
        if status != 0:
            detail = stderr_summary(err, root) or f"exit status {status}"
            raise RenderError(f"{where}: {self.name} build failed: {detail}")
        return parse_documents(out, f"{where} ({self.name} output)")


def _v(version: str) -> str:
    return version if version.startswith("v") else f"v{version}"


def _version_output(argv: list[str]) -> str:
    try:
        status, out, err = run_bounded(argv, timeout=30.0, max_stdout=1024 * 1024)
    except ToolFailed as e:
        raise ConfigError(f"{' '.join(argv)}: {e}") from None
    if status != 0:
        raise ConfigError(f"{' '.join(argv)} failed: {stderr_summary(err) or f'exit status {status}'}")
    return out.decode("utf-8", "replace")
