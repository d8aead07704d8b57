"""A hub started on a damaged state database (``<state dir>/hub.db``, SQLite) exits, and says why in one line.

The real hub process is stopped cleanly (its WAL folded into ``hub.db``), the file is replaced by garbage,
by a truncated copy (empty, at a page boundary, mid-page) or has a page overwritten, and the hub is
started on it. Within 30 s it must exit with code 1 and exactly one ``error`` line naming ``hub.db`` and
the reason ``StateCorrupt`` (under 1 KiB, no traceback), leaving the file exactly as it found it: the
database holds spent tokens, release counters and the audit, so it is never replaced by a new one. With
the good file back the hub serves the releases it served before.

Reverted to check: two cases used to start and run on: the empty file (a new, empty state, every spent
token and counter forgotten; ``sqlite._empty`` made to return False brings it back) and the overwritten
page the start never reads (the ``PRAGMA quick_check`` at open removed: still serving after 30 s).
Without ``sqlite._reason``'s corrupt codes the other lines name no reason.
"""

from __future__ import annotations

import pathlib

import pytest

from skerry.core import tls
from skerry.testing.devstack import Stack, fleet_status

from .state_world import tracebacks

EXIT_SECONDS = 30
PAGE = 4096  # SQLite's default page size


def _garbage(good: bytes) -> bytes:
    return b"\x00\xff{not a database at all" * 64


def _empty(good: bytes) -> bytes:
    return b""


def _at_page(good: bytes) -> bytes:
    return good[: (len(good) // 2) // PAGE * PAGE]


def _mid_page(good: bytes) -> bytes:
    return good[: len(good) * 3 // 4 + 17]


def _page_overwritten(good: bytes) -> bytes:
    return good[: 2 * PAGE] + b"\xab" * PAGE + good[3 * PAGE:]


DAMAGE = {"garbage": _garbage, "empty": _empty, "truncated-at-a-page": _at_page,
          "truncated-mid-page": _mid_page, "page-overwritten": _page_overwritten}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("hubdb")
    s = Stack(work, work / "unused-kubeconfig")  # the hub alone: no API server, no agent
    s.seed_repo()
    s.start_hub()
    try:
        yield s
    finally:
        s.stop()


def releases(stack: Stack) -> dict[str, int]:
    ops = stack.identity("ops", tls.ROLE_OPERATOR)
    return {c["cluster"]: int(c.get("desired_version", 0)) for c in fleet_status(stack.hub_address, ops)}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_hub_on_a_damaged_state_database_exits_with_one_named_line_and_keeps_the_file(stack: Stack, damage):
    before = releases(stack)
    assert before and all(before.values()), before
    stack.hub.stop()
    db = stack.workdir / "hub-state" / "hub.db"
    assert not pathlib.Path(f"{db}-wal").exists() or pathlib.Path(f"{db}-wal").stat().st_size == 0
    good = db.read_bytes()
    bad = DAMAGE[damage](good)
    db.write_bytes(bad)
    seen = len(stack.hub.log_path.read_bytes())
    try:
        stack.hub.start()
        code = stack.hub.proc.wait(EXIT_SECONDS)
        log = stack.hub.log_path.read_bytes()[seen:].decode(errors="replace")
        assert code == 1, log
        errors = [line for line in log.splitlines() if ": error: " in line]
        assert len(errors) == 1, log
        assert str(db) in errors[0] and "StateCorrupt" in errors[0], errors[0]
        assert len(errors[0]) < 1024
        assert not tracebacks(log), log
        assert db.read_bytes() == bad, "the refusing hub changed its state database"
    finally:
        db.write_bytes(good)
        stack.start_hub()
    assert releases(stack) == before  # nothing lost: the same releases, served again
