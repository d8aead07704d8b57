"""Run ``skerry`` as a user does: a real process, stdout/stderr captured, optional closed stdout."""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys

# A command line this long should never wait for a peer: bad input must fail fast.
COMMAND_TIMEOUT = 120
DOCUMENTED_FAILURES = {1, 2, 4, 130, 141}


def skerry(*args: str, env: dict | None = None, closed_stdout: bool = False, stdin=subprocess.DEVNULL,
           prelude: str = "", cwd=None) -> subprocess.CompletedProcess:
    """``python -m skerry ARGS``; ``prelude`` is Python run first (e.g. to hide an extra)."""
    argv = [sys.executable, "-c", f"{prelude}\nimport sys; from skerry.cli import main; sys.exit(main())", *args]
    full_env = {**os.environ, **(env or {})}
    if not closed_stdout:
        return subprocess.run(argv, capture_output=True, text=True, env=full_env, stdin=stdin,
                              timeout=COMMAND_TIMEOUT, cwd=cwd)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte, as after `| head -0`
    try:
        proc = subprocess.run(argv, stdout=write, stderr=subprocess.PIPE, text=True, env=full_env, stdin=stdin,
                              timeout=COMMAND_TIMEOUT, cwd=cwd)
    finally:
        os.close(write)
    return proc


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (asserts there is exactly one, and no traceback)."""
    err = proc.stderr
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"exit {proc.returncode}, stderr:\n{err}"
    return lines[0]


@contextlib.contextmanager
def running_hub(workdir: pathlib.Path, *, interval: float):
    """A hub process on the example fleet (``skerry.testing.devstack``), no agents, polling every ``interval``."""
    from skerry.testing.devstack import Stack

    stack = Stack(workdir, workdir / "no-kubeconfig", interval=interval)
    try:
        stack.seed_repo()
        stack.start_hub()
        yield stack
    finally:
        stack.stop()
