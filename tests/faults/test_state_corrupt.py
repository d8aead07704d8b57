"""Corrupt or wrong-shaped state files of every kind, met by the real service at start.

For each file a service keeps (the agent's trust state, TUF metadata, bundle cache and ready file;
the sealer's keys) the file is replaced
by garbage or by valid JSON of the wrong shape and the service is started on it. It either refuses
to start — one line naming the file and a named reason (``StateCorrupt``), no traceback, and the file
left exactly as it was for an operator to look at (what it guarded, e.g. the release counter, is
never silently reset) — or, for a file that is only a cache, says so in one warning naming the file
and carries on to the Ready state from the hub. Each case restores the good file afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

import pytest

from skerry.testing.devstack import Service, StackError, wait_for

from .helpers import error_lines
from .state_world import World, running_world, tracebacks

pytestmark = [pytest.mark.kube, pytest.mark.e2e]

GARBAGE = b"\x00\xff{not json at all"
WRONG_SHAPE = b'["a list where an object belongs"]\n'
WRONG_FIELDS = b'{"cluster": 7, "release": "many", "digest": null}\n'


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    service: str  # agent | hub | sealer
    path: str  # a glob under the stack's workdir, matching one file
    content: bytes
    refuses: bool  # True: the service must not start on it; False: it is a cache, rebuilt from the hub


CASES = [
    Case("agent-trust-state-garbage", "agent", "agents/*/trust-state.json", GARBAGE, True),
    Case("agent-trust-state-list", "agent", "agents/*/trust-state.json", WRONG_SHAPE, True),
    # reverted to check: ``TufVerifier._load``'s ``isinstance(doc.get("cluster"), str)`` check: "belongs
    # to cluster 7", no StateCorrupt
    Case("agent-trust-state-fields", "agent", "agents/*/trust-state.json", WRONG_FIELDS, True),
    # reverted to check: ``BundleCache._pointer`` made ``read_text()``: a traceback (UnicodeDecodeError)
    Case("agent-cache-pointer", "agent", "agents/*/bundle-cache/current", GARBAGE, False),
    Case("agent-cache-bundle", "agent", "agents/*/bundle-cache/bundle-*.json", WRONG_SHAPE, False),
    Case("sealer-key", "sealer", "sealer-keys/*/*.key", GARBAGE, True),
    Case("sealer-certificate", "sealer", "sealer-keys/*/*.crt", WRONG_SHAPE, True),
]


@pytest.fixture(scope="module")
def world(kubeconfig, tmp_path_factory):
    with running_world(kubeconfig, tmp_path_factory.mktemp("corrupt"), "fcs") as w:
        yield w


def only(world: World, pattern: str) -> pathlib.Path:
    found = [p for p in world.stack.workdir.glob(pattern) if p.is_file() and not p.name.startswith(".")]
    assert len(found) >= 1, f"no file {pattern}"
    return sorted(found)[0]


def start(world: World, service: str) -> Service:
    """Start ``service`` again on its state (same port); a refusing one is returned exited."""
    stack = world.stack
    if service == "agent":
        return world.start_agent()
    try:
        if service == "hub":
            stack.hub.stop()
            stack.start_hub()
        else:
            stack.sealer.stop()
            stack.start_sealer()
    except StackError:
        pass  # it exited: the test reads why
    return stack.hub if service == "hub" else stack.sealer


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_corrupt_state_file_is_one_named_line_and_loses_nothing(world: World, case: Case):
    world.wait_ready()
    before = world.snapshot()
    path = only(world, case.path)
    good = path.read_bytes()
    if case.service == "agent":
        world.agent.stop()
    path.write_bytes(case.content)
    log_path = {"agent": world.agent, "hub": world.stack.hub, "sealer": world.stack.sealer}[case.service].log_path
    seen = len(log_path.read_bytes())
    try:
        service = start(world, case.service)

        def new_log() -> str:
            return log_path.read_bytes()[seen:].decode(errors="replace")

        rel = str(path.relative_to(world.stack.workdir))
        if case.refuses:
            assert service.proc is not None
            code = service.proc.wait(30)
            log = new_log()
            assert code == 1, log
            errors = [line for line in log.splitlines() if ": error: " in line]
            assert len(errors) == 1, log
            assert path.stem in errors[0] and "StateCorrupt" in errors[0], errors[0]
            assert len(errors[0]) < 1024
            assert not tracebacks(log), log
            assert path.read_bytes() == case.content, f"{rel} was changed by the refusing {case.service}"
        else:
            # a cache: named in one warning; the agent carries on with the hub (and applies nothing less)
            lines = wait_for(lambda: error_lines(new_log(), path.name), 30,
                             f"the {case.service} to name the corrupt {rel}", service)
            assert all(len(json.dumps(r)) < 1024 for r in lines), [json.dumps(r)[:300] for r in lines]
            assert service.alive()
            # and it carries on: the next commit is applied
            level = str(len(new_log()))
            configmaps = world.stack.repo / world.overlay / "configmaps.yaml"
            configmaps.write_text(re.sub(r'level: "[^"]*"', f'level: "{level}"', configmaps.read_text()))
            world.commit(f"level {level}")
            world.wait_ready(release_above=before.release)
            assert not tracebacks(new_log()), new_log()
        now = world.snapshot()  # the refusing agent wrote no status: its counter is in the file kept as it was
        assert before.objects <= now.objects and before.inventory <= now.inventory and now.secret == before.secret
    finally:
        if case.refuses:  # a cache was rebuilt by the agent itself; the refused file is put back
            path.write_bytes(good)
        if case.service == "agent":
            if not world.agent.alive():
                world.start_agent()
        elif not (world.stack.hub if case.service == "hub" else world.stack.sealer).alive():
            start(world, case.service).ready(30)
        world.wait_ready()
