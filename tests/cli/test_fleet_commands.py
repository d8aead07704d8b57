"""``skerry fetch`` makes the hub fetch Git now; ``skerry status --watch`` prints again when the fleet changed.

The hub polls once an hour here, so a new commit reaches it only through ``skerry fetch``.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys

import pytest

from skerry.core.tls import ROLE_OPERATOR
from skerry.testing.devstack import Stack, git

from .helpers import error_line, running_hub, skerry


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("fleet-commands"), interval=3600.0) as stack:
        yield stack


def flags(stack: Stack) -> list[str]:
    return ["--hub", stack.hub_address, *stack.tls_args(stack.identity("ops", ROLE_OPERATOR))]


def desired_revisions(stack: Stack) -> set[str]:
    out = skerry("status", "-o", "json", *flags(stack))
    assert out.returncode == 0, out.stderr
    return {c.get("desired_revision", "") for c in json.loads(out.stdout)["clusters"]}


class DocumentReader:
    """The JSON documents ``-o json`` prints one after another (indented: each ends with a line ``}``),
    read from the pipe's file descriptor as they come (no buffered reader to hide bytes from select)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.pending = b""

    def next(self, timeout: float) -> dict:
        selector = selectors.DefaultSelector()
        selector.register(self.fd, selectors.EVENT_READ)
        while b"\n}\n" not in self.pending:
            assert selector.select(timeout), f"no document within {timeout}s; so far: {self.pending!r}"
            chunk = os.read(self.fd, 65536)
            assert chunk, f"status --watch ended: {self.proc.stderr.read()}"
            self.pending += chunk
        doc, _, self.pending = self.pending.partition(b"\n}\n")
        return json.loads(doc + b"\n}")


def test_fetch_brings_a_new_commit_in_now_and_status_watch_prints_the_change(hub):
    first = git(hub.repo, "rev-parse", "HEAD")
    assert desired_revisions(hub) == {first}

    watch = subprocess.Popen(
        [sys.executable, "-m", "skerry", "status", "--watch", "--interval", "500ms", "-o", "json", *flags(hub)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    docs = DocumentReader(watch)
    try:
        before = docs.next(60)
        assert {c["desired_revision"] for c in before["clusters"]} == {first}
        (hub.repo / "overlays/dev/extra.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {k: v}\n")
        kust = hub.repo / "overlays/dev/kustomization.yaml"
        kust.write_text(kust.read_text().replace("  - namespace.yaml\n", "  - namespace.yaml\n  - extra.yaml\n"))
        second = hub.commit("dev: one more ConfigMap")

        fetched = skerry("fetch", "-o", "json", *flags(hub))
        assert fetched.returncode == 0, fetched.stderr
        reply = json.loads(fetched.stdout)
        assert reply["commit"] == second and reply["rendered"] is True
        assert reply["published"] == ["oslo-dev"]  # prod's inputs did not change

        after = docs.next(60)
        for _ in range(5):  # each change is printed as it is seen
            if {c["cluster"]: c for c in after["clusters"]}["oslo-dev"]["desired_revision"] == second:
                break
            after = docs.next(60)
        by_cluster = {c["cluster"]: c for c in after["clusters"]}
        assert by_cluster["oslo-dev"]["desired_revision"] == second
        assert by_cluster["oslo-prod"]["desired_revision"] == first  # prod's bundle did not change
        # releases read r1, r2 per cluster; the counters behind them stay in the document
        assert [by_cluster[c]["desired_release"] for c in ("oslo-dev", "oslo-prod")] == ["r2", "r1"]
        assert int(by_cluster["oslo-dev"]["desired_version"]) == int(
            {c["cluster"]: c for c in before["clusters"]}["oslo-dev"]["desired_version"]) + 1
        with pytest.raises(AssertionError, match="no document within"):
            docs.next(2.0)  # nothing changed since: nothing printed, though it asked four times
        assert watch.poll() is None  # --watch goes on until interrupted
    finally:
        watch.terminate()
        watch.communicate(timeout=10)
    again = skerry("fetch", *flags(hub))
    rows = [ln.split() for ln in again.stdout.splitlines()]
    assert rows[0][:3] == ["COMMIT", "RENDERED", "PUBLISHED"] and rows[1][:2] == [second[:12], "False"]
    table = skerry("status", *flags(hub))
    desired = {ln.split()[0]: ln.split()[1] for ln in table.stdout.splitlines()[1:]}
    assert desired == {"oslo-dev": "r2", "oslo-prod": "r1"}


def test_fetch_needs_an_operator_and_a_failed_fetch_exits_1_naming_it(hub):
    agent = hub.identity("oslo-dev", "skerry:agent")
    refused = skerry("fetch", "--hub", hub.hub_address, *hub.tls_args(agent))
    assert refused.returncode == 1 and "may not call Sync: it needs role skerry:operator" in error_line(refused)
    git(hub.repo, "checkout", "-q", "-b", "elsewhere")
    git(hub.repo, "branch", "-q", "-D", "main")  # the branch the hub follows is gone
    try:
        gone = skerry("fetch", "-o", "json", *flags(hub))
        assert gone.returncode == 1
        assert json.loads(gone.stdout)["source_error"]
    finally:
        git(hub.repo, "branch", "-q", "main")
        git(hub.repo, "checkout", "-q", "main")
