"""Who holds the writer lease, with real ``skerry hub serve`` processes on one host and their default names.

A hub names itself (``--hub-id``) by default with its host name, process id and a random suffix: two
processes on one host are two holders, and neither takes the other's live lease. A hub that stops
cleanly (SIGTERM) gives its lease up, so the next one takes over at once instead of waiting out the
lease; after a crash (SIGKILL) the next waits at most the lease's lifetime. The lease is read from the
database itself, as an operator (or the next hub) sees it.
"""

from __future__ import annotations

import time

from skerry.hub.state import open_state
from skerry.testing.devstack import Service, Stack, wait_for
from skerry.testing.postgres import free_port

# Far above every wait below: a successor that took over within WITHIN did not wait the lease out.
LONG_TTL = "60s"
WITHIN = 20.0
SHORT_TTL = 2.0  # a crashed holder's lease, waited out
# How long two live hubs are watched for a takeover that must not happen (a standby polls every second).
WATCH = 3.0


def lease_of(state):
    lease = state.current_lease()
    return (lease.holder, lease.epoch) if lease is not None else None


def steady(state, expected, seconds: float) -> bool:
    """Whether the lease stays ``expected`` (holder, epoch) for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if lease_of(state) != expected:
            return False
        time.sleep(0.2)
    return True


def test_two_default_named_hubs_on_postgresql_one_writes_and_a_clean_stop_hands_over_at_once(
        tmp_path, postgres_dsn):
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(postgres_dsn)
    stack = Stack(tmp_path, None, interval=1.0)
    state = open_state("postgresql", state_dir=tmp_path, dsn=postgres_dsn)
    second = None
    try:
        stack.seed_repo()
        first = stack.start_hub(extra=("--state", "postgresql", "--state-dsn-file", str(dsn_file),
                                       "--lease-ttl", LONG_TTL))
        held = lease_of(state)
        assert held is not None
        args = list(first.args)
        args[args.index("--listen") + 1] = f"127.0.0.1:{free_port()}"
        args[args.index("--state-dir") + 1] = str(tmp_path / "hub-b-state")
        second = Service("hub-b", args, stack.workdir).start()
        second.ready(timeout=60)
        # the second stands by: the first keeps its lease (same holder, same epoch) while both run
        assert steady(state, held, WATCH), f"the lease moved from {held} to {lease_of(state)}"
        first.stop()  # SIGTERM: the lease is given up on the way out
        taken = wait_for(lambda: (now := lease_of(state)) and now[0] != held[0] and now, WITHIN,
                         "the standby to take over", second)
        assert taken[1] == held[1] + 1
        assert second.alive()
    finally:
        if second is not None:
            second.stop()
        stack.stop()
        state.close()


def test_a_single_hub_on_sqlite_restarted_after_sigterm_writes_at_once_and_after_a_crash_within_the_lease(
        tmp_path):
    stack = Stack(tmp_path, None, interval=1.0)
    try:
        stack.seed_repo()
        stack.start_hub(extra=("--lease-ttl", LONG_TTL))  # the default state: SQLite under the state dir
        state = open_state("", state_dir=tmp_path / "hub-state")
        try:
            first = lease_of(state)
            stack.hub.stop()  # SIGTERM
            stack.start_hub(extra=("--lease-ttl", f"{SHORT_TTL:g}s"))
            # a new process (a new holder) that found the lease given up: the writer from its start
            second = lease_of(state)
            assert second is not None and second[0] != first[0] and second[1] == first[1] + 1
            stack.hub.kill()  # SIGKILL: nothing given up
            stack.start_hub(extra=("--lease-ttl", LONG_TTL))
            third = wait_for(lambda: (now := lease_of(state)) and now[0] != second[0] and now,
                             SHORT_TTL + WITHIN, "the restarted hub to take the crashed one's lease", stack.hub)
            assert third[1] == second[1] + 1
        finally:
            state.close()
    finally:
        stack.stop()
