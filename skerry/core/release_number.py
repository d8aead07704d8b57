"""Release numbers: the small per-cluster number people read and type (``r7``) beside the release counter.

Why a second number
-------------------
Every release of a cluster carries a *counter* (the director target's
``custom.release``) that the agent and the sealer refuse to see go down:
Uptane's rollback protection. Before the hub kept a state database it numbered
releases with unix milliseconds, so an agent may hold a counter like
1796415910010; the state therefore starts each cluster's counter above
``release_floor`` (the database clock in milliseconds when the schema was
made: ``skerry.hub.state.schema``), and counters stay 13-digit numbers nobody
can compare by eye.

The *number* is ``counter - release_floor``: 1 for a cluster's first release
in this hub state, then 2, 3... (the counter grows by one per release). It is
display only: the hub computes it in the release's own transaction
(``number_of``), signs it beside the counter in the director's target
(``custom.number``), keeps it in the cluster's ``bundle`` record and release
history, and the agent reports the number of what it applied. Agents keep
comparing the counter; a wrong or missing number changes what is shown,
never what is applied (``director_number`` bounds it, else ``0``: unknown,
and ``label`` falls back to the counter).

Why not start a fresh state's counters at 0 instead (small counters, no
second number): the floor is what keeps a hub whose state was lost, or that
replaced a pre-database hub, above every counter its agents already hold.
With counters from 0 such a hub would issue releases every agent refuses as
rollbacks until each agent's report raised its counter (a fleet-wide outage
that depends on reports reaching the writer, and on nobody having restored an
old backup). The floor costs nothing at run time; the number gives people
``r1, r2...`` on a fresh install and after an import from millisecond
counters alike. A hub whose state was made anew numbers from r1 again: the
counter still rises, so agents accept it.

Forms: ``label(number, counter)`` is ``r<number>``; with no number known (a
release made before numbers existed, a hub without a state database) it is
``r<counter>`` for a small counter and the instant a millisecond counter
names (``r2026-12-04T20:25:10.010``, to the millisecond so consecutive
releases never read the same). No command takes a release as input yet
(rollback takes a revision); one that does should read ``r7`` as number 7.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

PREFIX = "r"
# Counters at or above this are unix milliseconds (after 2001-09-09) from a hub before the state
# database: shown as the instant they name, not as 13 digits.
MILLISECOND_COUNTER = 10**12


def number_of(counter: int, floor: int) -> int:
    """The release number of ``counter`` in a state whose counters start above ``floor``; 0 if below it."""
    return counter - floor if counter > floor else 0


def plausible(number: object, counter: int) -> int:
    """``number`` if it can stand for ``counter``, else 0 (unknown).

    Display only, so bounded rather than refused: a positive integer no larger than the counter it
    stands for (``counter - floor`` with ``floor >= 0``).
    """
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number <= counter:
        return 0
    return number


def director_number(custom: object, counter: int) -> int:
    """The number the director signed beside ``counter`` (its target's ``custom``), or 0 if none or implausible."""
    return plausible(custom.get("number") if isinstance(custom, Mapping) else None, counter)


def hinted(signed: object) -> str:
    """The release a hub's watch hint names (``version``, ``number``: trusted for nothing), as people read it;
    ``?`` when there is no hint."""
    counter = getattr(signed, "version", 0) if signed is not None else 0
    if not isinstance(counter, int) or counter <= 0:
        return "?"
    return label(plausible(getattr(signed, "number", 0), counter), counter)


def label(number: int, counter: int = 0) -> str:
    """``r7``; with no number, the counter's readable form; ``-`` for no release at all."""
    if number > 0:
        return f"{PREFIX}{number}"
    if counter <= 0:
        return "-"
    if counter >= MILLISECOND_COUNTER:
        when = _dt.datetime.fromtimestamp(counter // 1000, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{PREFIX}{when}.{counter % 1000:03d}"
    return f"{PREFIX}{counter}"
