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


class AdminAccess:
    """The admin's ways into a running cluster: an SSL context, raw requests, kubectl, an environment.

    Split from the cluster's lifecycle: a subclass provides ``server``, ``ca_file``,
    ``admin_cert_file``, ``admin_key_file`` and ``kubeconfig``.
    """

    server: str
    ca_file: pathlib.Path
    admin_cert_file: pathlib.Path
    admin_key_file: pathlib.Path
    kubeconfig: pathlib.Path

    def ssl_context(
        self, cert_file: pathlib.Path | None = None, key_file: pathlib.Path | None = None
    ) -> ssl.SSLContext:
        """An SSLContext trusting the cluster CA, presenting the admin cert by default."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(cert_file or self.admin_cert_file), str(key_file or self.admin_key_file))
        return ctx

    def api_request(
        self,
        method: str,
        path: str,
        body: dict | bytes | None = None,
        *,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, str]:
        """A raw admin request; returns ``(status, body_text)`` (no raise on 4xx/5xx)."""
        return api_request(
            self.server + path, self.ssl_context(), method, body, content_type=content_type, timeout=timeout
        )

    def api_json(self, method: str, path: str, body: dict | None = None) -> dict:
        """Like :meth:`api_request` but raises EnvtestError unless 2xx; returns parsed JSON."""
        status, text = self.api_request(method, path, body)
        if not 200 <= status < 300:
            raise EnvtestError(f"{method} {path} -> {status}: {text[:500]}")
        return json.loads(text) if text else {}

    def kubectl(
        self,
        *args: str,
        kubeconfig: pathlib.Path | None = None,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess:
        """Run ``kubectl --kubeconfig <admin or given> ARGS``; returns the CompletedProcess
        (text mode). Raises EnvtestError on non-zero exit when ``check``."""
        return run_kubectl(kubeconfig or self.kubeconfig, args, check=check, input=input, timeout=timeout)

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG pointing at the admin kubeconfig."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

