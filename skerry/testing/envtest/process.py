"""Running the control-plane processes: spawning, waiting until they serve, stopping, and sweeping up.

Children die with their parent (Linux ``PR_SET_PDEATHSIG``); each process logs to its own file whose tail
goes into every error; temp dirs are claimed with the owner's pid so a later run can remove what a
SIGKILLed run left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from skerry.testing.envtest.errors import EnvtestError

_PR_SET_PDEATHSIG = 1
OWNER_FILE = ".skerry-envtest-owner"
SHM = "/dev/shm"
# Log lines (and at most this many bytes of log) quoted in an error about a process.
TAIL_LINES = 40
_TAIL_BYTES = 64 * 1024
# `etcd --help` answers in well under a second; a hung binary must not stall start-up.
_HELP_TIMEOUT_SECONDS = 20
# Between readiness probes.
_PROBE_INTERVAL_SECONDS = 0.1
# After SIGTERM a process gets `grace` seconds, then SIGKILL and this long to be reaped.
_KILL_WAIT_SECONDS = 5

Probe = Callable[[], tuple[bool, str]]


class PortClash(Exception):
    """A component exited because another process took its port between choosing and binding it."""


def _make_preexec():
    """preexec_fn: die with SIGKILL when the parent dies (Linux prctl)."""
    libc = None
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
        except OSError:  # pragma: no cover - no libc to load: children merely outlive a SIGKILLed parent
            libc = None
    parent = os.getpid()

    def preexec() -> None:
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # parent already gone before prctl took effect
                os._exit(1)

    return preexec


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports free right now (a race remains: see :class:`PortClash`)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def tail(path: pathlib.Path, lines: int = TAIL_LINES) -> str:
    try:
        data = path.read_bytes()[-_TAIL_BYTES:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


_HELP_TEXT: dict[str, str] = {}


def supports_flag(binary: pathlib.Path, flag: str) -> bool:
    """Whether ``binary --help`` mentions ``flag`` (asked once per binary)."""
    key = str(binary)
    if key not in _HELP_TEXT:
        try:
            r = subprocess.run([key, "--help"], capture_output=True, text=True, timeout=_HELP_TIMEOUT_SECONDS)
            _HELP_TEXT[key] = r.stdout + r.stderr
        except (OSError, subprocess.SubprocessError):
            _HELP_TEXT[key] = ""
    return flag in _HELP_TEXT[key]


def claim(dir_: pathlib.Path) -> None:
    """Mark a temp dir as ours, so a later run can sweep it if we die by SIGKILL."""
    with contextlib.suppress(OSError):
        (dir_ / OWNER_FILE).write_text(str(os.getpid()))


def claimed_tmpfs_dir(prefix: str) -> pathlib.Path | None:
    """A fresh claimed directory in /dev/shm (memory-backed, fast), or None when there is none to write."""
    if not (os.path.isdir(SHM) and os.access(SHM, os.W_OK)):
        return None
    path = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=SHM))
    claim(path)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(pattern_dir: str, prefix: str) -> None:
    """Remove temp dirs left by harness processes that died without cleaning up (kill -9)."""
    try:
        entries = list(pathlib.Path(pattern_dir).glob(prefix + "*"))
    except OSError:
        return
    for d in entries:
        try:
            pid = int((d / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours / not claimed: leave it
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


class Proc:
    """One child process with its log file."""

    def __init__(self, name: str, argv: list[str], log: pathlib.Path, env: dict[str, str], cwd: pathlib.Path):
        self.name = name
        self.argv = argv
        self.log = log
        with open(log, "ab") as fh:
            fh.write(("\n==== " + " ".join(argv) + "\n").encode())
        self._fh = open(log, "ab")  # noqa: SIM115 - held open for the child's lifetime, closed in stop()
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(cwd),
            preexec_fn=_make_preexec(),
            start_new_session=True,  # Ctrl-C goes to us; we stop children in order
            close_fds=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def exited_error(self, while_: str = "") -> EnvtestError:
        during = f" while waiting for {while_}" if while_ else ""
        return EnvtestError(
            f"{self.name} exited (code {self.popen.returncode}){during}; last log lines ({self.log}):\n"
            f"{tail(self.log)}"
        )

    def kill(self) -> None:
        """SIGKILL (a crash, no shutdown), then reap it."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        self.popen.wait(_KILL_WAIT_SECONDS)
        with contextlib.suppress(OSError):
            self._fh.close()

    def stop(self, grace: float = 10.0) -> None:
        p = self.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(_KILL_WAIT_SECONDS)
        with contextlib.suppress(OSError):
            self._fh.close()


def wait_until(what: str, deadline: float, probe: Probe, watched: Proc, procs: Sequence[Proc]) -> None:
    """Probe until it says ok; fail fast (with the log tail) when any of ``procs`` exits.

    A probe that raises means "not yet". Raises :class:`PortClash` when the dead process's log says its
    port was taken, else :class:`EnvtestError`; on timeout the error quotes ``watched``'s log.
    """
    last = ""
    while True:
        for p in procs:
            if not p.alive():
                if "address already in use" in tail(p.log):
                    raise PortClash()
                raise p.exited_error(what)
        try:
            ok, last = probe()
            if ok:
                return
        except Exception as e:  # noqa: BLE001 - anything means "not yet"
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise EnvtestError(
                f"timed out waiting for {what} (last probe: {last}); last log lines of "
                f"{watched.name} ({watched.log}):\n{tail(watched.log)}"
            )
        time.sleep(_PROBE_INTERVAL_SECONDS)
