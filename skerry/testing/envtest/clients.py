"""Admin clients of a local cluster that need no Kubernetes library: raw HTTPS requests and kubectl."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence

from skerry.testing.envtest.errors import EnvtestError


def api_request(
    url: str,
    context: ssl.SSLContext,
    method: str,
    body: dict | bytes | None = None,
    *,
    content_type: str = "application/json",
    timeout: float = 10.0,
) -> tuple[int, str]:
    """One request; returns ``(status, body_text)`` (no raise on 4xx/5xx)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    req.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(req, context=context, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def etcd_health(etcd_url: str, timeout: float) -> tuple[bool, str]:
    """etcd's own ``/health`` (plain HTTP on loopback): ``(healthy, body)``."""
    with urllib.request.urlopen(etcd_url + "/health", timeout=timeout) as r:
        body = r.read().decode()
        return ('"health":"true"' in body.replace(" ", "")), body


def run_kubectl(
    kubeconfig: pathlib.Path, args: Sequence[str], *, check: bool, input: str | None, timeout: float
) -> subprocess.CompletedProcess:
    """``kubectl --kubeconfig FILE ARGS`` with ``$KUBECONFIG`` removed, so only FILE counts."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise EnvtestError("kubectl not found on PATH")
    argv = [kubectl, f"--kubeconfig={kubeconfig}", *args]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise EnvtestError(f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r
