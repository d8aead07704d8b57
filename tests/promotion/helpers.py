"""Helpers promotion tests share that are not fixtures: git as someone else runs it, and identities."""

from __future__ import annotations

import os
import pathlib
import subprocess

from skerry.core.tls import ROLE_AGENT, ROLE_OPERATOR, Identity

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Someone Else",
    "GIT_AUTHOR_EMAIL": "else@skerry.invalid",
    "GIT_COMMITTER_NAME": "Someone Else",
    "GIT_COMMITTER_EMAIL": "else@skerry.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(path: pathlib.Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(path), *args], check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    return out.stdout.strip()


def operator(name: str) -> Identity:
    return Identity(name=name, roles=frozenset({ROLE_OPERATOR}), fingerprint="0" * 64)


def agent(name: str) -> Identity:
    return Identity(name=name, roles=frozenset({ROLE_AGENT}), fingerprint="0" * 64)
