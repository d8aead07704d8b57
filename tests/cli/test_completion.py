"""Shell completion, run by the real shell: source the script, ask for words, check the answer."""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

from .helpers import skerry


@pytest.fixture()
def bin_dir(tmp_path) -> pathlib.Path:
    """A ``skerry`` on PATH that runs this checkout (the completion scripts call ``skerry``)."""
    exe = tmp_path / "skerry"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m skerry "$@"\n')
    exe.chmod(0o755)
    return tmp_path


def bash_complete(bin_dir: pathlib.Path, *words: str) -> list[str]:
    """What bash offers for the command line ``words`` (the last one is being typed)."""
    script = (
        'source <(skerry completion bash)\n'
        f'COMP_WORDS=(skerry {" ".join(shlex.quote(w) for w in words)})\n'
        f'COMP_CWORD={len(words)}\n'
        '_skerry\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]


def test_bash_completes_commands_subcommands_flags_and_flag_values(bin_dir):
    assert bash_complete(bin_dir, "sta") == ["status"]
    assert {"hub", "agent", "sealer", "render", "promote", "completion"} <= set(bash_complete(bin_dir, ""))
    assert bash_complete(bin_dir, "hub", "") == ["seed", "serve"]
    assert "--tls-ca" in bash_complete(bin_dir, "status", "--tls")
    assert bash_complete(bin_dir, "completion", "") == ["bash", "fish", "zsh"]
    assert bash_complete(bin_dir, "render", "--engine", "in") == ["inprocess"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_gets_a_script_its_shell_accepts(shell):
    proc = skerry("completion", shell)
    assert proc.returncode == 0, proc.stderr
    assert "skerry __complete" in proc.stdout
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed here; the script is still printed")
    check = {"bash": ["-n"], "zsh": ["-n"], "fish": ["--no-execute"]}[shell]
    out = subprocess.run([binary, *check], input=proc.stdout, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_an_unknown_shell_is_a_usage_error():
    proc = skerry("completion", "tcsh")
    assert proc.returncode == 2 and "invalid choice: 'tcsh'" in proc.stderr
