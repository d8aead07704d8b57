"""The in-process kustomize engine in a child process, so that one render has a deadline.

A Go call through cffi cannot be interrupted: a hostile kustomization that makes kustomize block (a FIFO
among its resources) or loop would hold the hub's render thread, and with it every cluster's next
release, for ever. So the hub loads kustomize's library not in its own process but in one long-lived
child (``python -m skerry.hub.render.worker``) and sends it one build at a time. The parent waits up to
the render timeout; past it, the child's process group is killed (SIGKILL), the render is refused with
reason ``RenderTimeout``, and the next render starts a fresh child. A crash of the library (a Go panic
aborts the process) is the same: that render fails with ``RenderCrashed``, the hub carries on.

What it costs: the child starts once (Python and the library: 0.44 s measured) and each build adds a
round trip over two pipes and a copy of its JSON output. bench/render.py prints it; on 2 cores at load
10 a small overlay took 11.9 ms through the worker against 8.1 ms in-process (the wake-ups of two
processes on a busy machine are most of the difference). The child gets the render tool environment
(``engine._tool_env``), never the hub's secrets.

Frames on the child's stdin/stdout, all lengths big-endian:

    request   u32 length, UTF-8 directory path
    response  1 byte kind, u64 length, payload
              kind b"V": hello, payload the engine version (first frame, once the library loaded)
              kind b"O": build output, payload the library's JSON
              kind b"E": build or load error, payload the library's message (UTF-8)
"""

from __future__ import annotations

import os
import selectors
import struct
import subprocess
import sys
import threading
import time

from skerry.core.errors import ConfigError, RenderError
from skerry.hub.render.engine import _kill, _tool_env

# The child loads Python and the kustomize library: seconds on a loaded machine, never a minute.
START_TIMEOUT = 60.0
# Longest error message a child may send (kustomize's errors are a line or two).
MAX_ERROR_BYTES = 64 * 1024
_HEADER = struct.Struct(">cQ")
_REQUEST = struct.Struct(">I")
HELLO, OUTPUT, ERROR = b"V", b"O", b"E"


class RenderWorker:
    """The parent's handle on one child at a time; ``build`` is serialised (one request in flight)."""

    def __init__(self, *, timeout: float, max_output_bytes: int):
        self.timeout = timeout
        self.max_output_bytes = max_output_bytes
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.version = ""
        self.starts = 0
        with self._lock:
            self._start()

    def _start(self) -> None:
        env = _tool_env()
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "skerry.hub.render.worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            raise ConfigError(f"cannot start the render worker: {e.strerror}") from e
        self.starts += 1
        try:
            kind, payload = self._read(START_TIMEOUT, "start")
        except RenderError as e:
            self._stop()
            raise ConfigError(str(e)) from None
        if kind != HELLO:
            self._stop()
            raise ConfigError(f"in-process kustomize: {payload.decode('utf-8', 'replace')[:600]}")
        self.version = payload.decode()

    def build(self, directory: str, where: str) -> tuple[bool, bytes]:
        """``(True, JSON)`` or ``(False, the library's message)``; ``RenderError`` on timeout or crash."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            path = directory.encode()
            try:
                self._proc.stdin.write(_REQUEST.pack(len(path)) + path)
                self._proc.stdin.flush()
                kind, payload = self._read(self.timeout, where)
            except BrokenPipeError:
                self._stop()
                raise RenderError(f"{where}: the kustomize worker exited", reason="RenderCrashed") from None
            except RenderError:
                self._stop()
                raise
            if kind not in (OUTPUT, ERROR):
                self._stop()
                raise RenderError(f"{where}: the kustomize worker sent a bad frame", reason="RenderCrashed")
            return kind == OUTPUT, payload

    def _read(self, timeout: float, where: str) -> tuple[bytes, bytes]:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        header = self._read_exactly(fd, _HEADER.size, deadline, timeout, where)
        kind, length = _HEADER.unpack(header)
        limit = self.max_output_bytes if kind == OUTPUT else MAX_ERROR_BYTES
        if length > limit:
            raise RenderError(f"{where}: kustomize produced more than {limit} bytes", reason="TooLarge")
        return kind, self._read_exactly(fd, length, deadline, timeout, where)

    def _read_exactly(self, fd: int, n: int, deadline: float, timeout: float, where: str) -> bytes:
        buf = bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while len(buf) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise RenderError(f"{where}: kustomize did not finish within {timeout:g}s; stopped",
                                      reason="RenderTimeout")
                chunk = os.read(fd, min(n - len(buf), 1 << 20))
                if not chunk:
                    raise RenderError(f"{where}: the kustomize worker exited (crashed)", reason="RenderCrashed")
                buf.extend(chunk)
        return bytes(buf)

    def _stop(self) -> None:
        if self._proc is not None:
            _kill(self._proc)
            for stream in (self._proc.stdin, self._proc.stdout):
                try:
                    stream.close()  # type: ignore[union-attr]
                except OSError:
                    pass
            self._proc = None

    def close(self) -> None:
        with self._lock:
            self._stop()


def _serve(stdin, stdout) -> int:
    """The child: load the library, say hello, then build each directory asked for until stdin closes."""
    from skerry.hub.render.inprocess import KustomizeLibrary

    def send(kind: bytes, payload: bytes) -> None:
        stdout.write(_HEADER.pack(kind, len(payload)) + payload)
        stdout.flush()

    try:
        library = KustomizeLibrary()
    except ConfigError as e:
        send(ERROR, str(e).encode())
        return 1
    send(HELLO, library.version.encode())
    while True:
        head = stdin.read(_REQUEST.size)
        if len(head) < _REQUEST.size:
            return 0
        (length,) = _REQUEST.unpack(head)
        directory = stdin.read(length).decode()
        ok, payload = library.build_json(directory)
        send(OUTPUT if ok else ERROR, payload)


def main() -> int:
    # Frames go to a private copy of stdout; fd 1 itself goes to /dev/null, so nothing the library
    # prints can corrupt a frame.
    frames = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return _serve(sys.stdin.buffer, frames)


if __name__ == "__main__":
    sys.exit(main())
