"""The Git remote hanging (a blackhole in front of a real ``git daemon``) and then down (the daemon killed).

The hub follows ``git://`` through a fault proxy. While the remote hangs, each fetch is given up after
``--git-timeout`` (``GIT_TIMEOUT``), the hub keeps serving the last good bundle (a fleet query answers at
once; an agent started from nothing gets and applies it) and says the fetch failed; while the remote is
down, fetches fail at once. When the remote is back the commit pushed meanwhile reaches the cluster
within ``RECOVERY_SECONDS``.

Checked against the fix: with ``timeout=cfg.git_timeout`` removed from ``GitSource(...)`` in
``skerry/hub/app.py`` (the fetch falls back to the 5-minute default) the first hung fetch is not given up
within ``HANG_DETECTED_SECONDS`` and the test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from skerry.core import tls
from skerry.testing.devstack import Stack, fleet_status, wait_for
from skerry.testing.faultproxy import FaultProxy

from .helpers import app_objects, inventory, live, trusted_release, write_fleet

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

CLUSTER = "fnet-gitremote"
NS = "fnet-gitremote"
GIT_TIMEOUT = 3.0
INTERVAL = 1.0
# A hung fetch is given up within the timeout, after at most one interval (and a busy machine's slack).
HANG_DETECTED_SECONDS = GIT_TIMEOUT + INTERVAL + 6.0
# A fleet query while the sync is stuck in a fetch.
QUERY_SECONDS = 2.0
# From the remote's return to the pushed commit applied: one interval, a fetch, a render, a transfer.
RECOVERY_SECONDS = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GitDaemon:
    """``git daemon`` serving the bare repositories under ``base`` on a loopback port (a real Git server)."""

    def __init__(self, base, port: int):
        self.base, self.port = base, port
        self.proc: subprocess.Popen | None = None

    def start(self) -> GitDaemon:
        self.proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", f"--port={self.port}",
             f"--base-path={self.base}", str(self.base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for(self._serves, 10, "git daemon to listen")
        return self

    def _serves(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # `git daemon` runs git-daemon as its child
            self.proc.wait(5)


def fetch_errors(metrics_port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    found = re.search(r'^skerry_hub_syncs_total\{result="fetch_error"\} ([0-9.e+]+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def test_git_remote_hanging_then_down_hub_serves_last_good_and_recovers(kubeconfig, tmp_path):
    stack = Stack(tmp_path, kubeconfig, interval=INTERVAL)
    daemon = proxy = None
    try:
        stack.seed_repo(write_fleet(tmp_path / "fleet", CLUSTER, app_objects(NS, "1")), bare=True)
        daemon = GitDaemon(stack.workdir, free_port()).start()
        proxy = FaultProxy(("127.0.0.1", daemon.port)).start()
        hub_args = dict(repo=f"git://{proxy.address}/remote.git",
                        extra=("--git-timeout", f"{GIT_TIMEOUT:g}s", "--metrics-listen", "127.0.0.1:0"))
        metrics = stack.start_hub(**hub_args).ready()["metrics_port"]
        agent = stack.start_agent(CLUSTER)
        first = stack.wait_applied(CLUSTER)
        recorded = inventory(stack, CLUSTER).keys()
        ops = stack.identity("faults", tls.ROLE_OPERATOR)

        # 1. The remote hangs: the commit pushed meanwhile cannot be fetched.
        proxy.blackhole()
        errors_before = fetch_errors(metrics)
        hung = time.monotonic()
        write_fleet(stack.repo, CLUSTER, app_objects(NS, "2"))
        head = stack.commit("v2 while the remote hangs")
        wait_for(lambda: fetch_errors(metrics) > errors_before, HANG_DETECTED_SECONDS, "a hung fetch to be given up",
                 stack.hub)
        assert time.monotonic() - hung < HANG_DETECTED_SECONDS

        # The hub still serves the last good bundle, promptly, to a running agent and to a new one.
        asked = time.monotonic()
        view = next(v for v in fleet_status(stack.hub_address, ops, timeout=QUERY_SECONDS) if v["cluster"] == CLUSTER)
        assert time.monotonic() - asked < QUERY_SECONDS
        assert view["desired_digest"] == first["applied_digest"]
        agent.stop()
        shutil.rmtree(stack.workdir / "agents" / CLUSTER)
        agent = stack.start_agent(CLUSTER)
        again = stack.wait_applied(CLUSTER, digest=first["applied_digest"])
        assert again["applied_release"] == first["applied_release"]
        assert live(stack, "configmap", NS, "app")["data"] == {"v": "1"}
        assert inventory(stack, CLUSTER).keys() == recorded

        # 2. The remote is down (its server killed): fetches fail at once, the bundle is still served.
        daemon.kill()
        proxy.passthrough()
        errors_before = fetch_errors(metrics)
        wait_for(lambda: fetch_errors(metrics) >= errors_before + 2, 2 * INTERVAL + 6.0, "fetches to fail fast",
                 stack.hub)
        assert agent.status()["applied_digest"] == first["applied_digest"]

        # 3. The remote is back: the pushed commit reaches the cluster.
        daemon.start()
        back = time.monotonic()
        newest = stack.wait_applied(CLUSTER, release_above=first["applied_release"], timeout=RECOVERY_SECONDS)
        assert time.monotonic() - back < RECOVERY_SECONDS
        assert newest["revision"] == head
        assert live(stack, "configmap", NS, "app")["data"] == {"v": "2"}
        assert inventory(stack, CLUSTER).keys() == recorded
        assert trusted_release(stack, CLUSTER) == newest["applied_release"] > first["applied_release"]
    finally:
        if proxy is not None:
            proxy.stop()
        if daemon is not None:
            daemon.kill()
        stack.stop()
