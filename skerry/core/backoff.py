"""Retry delays, once: capped exponential, full jitter and a spread pause.

Every retry loop in Skerry waits one of three ways:

* capped exponential (``base * factor**attempt``, never above ``cap``) when the
  wait itself is reported or a fight must slow down predictably (a reconcile
  retry, a status report, a drift correction);
* full jitter (uniform in ``[0, capped exponential)``, the AWS architecture
  blog's name) when many clients retry against one server and must not come
  back in step (the hub watch, certificate renewal);
* a fixed pause spread over ``[pause, 2 * pause)`` (``spread``) where every
  failure is retried alike (a watch thread re-opening its watch);
* ``reconnect_delay``: full jitter that also heeds what the server said (a
  refusal's pushback; the window it asked its clients to come back over, see
  ``skerry.core.pushback``), for the agent's hub watch.

Pure: the caller owns the attempt counter, the clock and the random source;
nothing here sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# The exponent is clamped here: beyond it the cap has long won, and ``2.0 ** 1024`` overflows a float.
MAX_EXPONENT = 64


def capped_exponential(attempt: int, *, base: float, cap: float, factor: float = 2.0) -> float:
    """``min(cap, base * factor**attempt)``: the wait before retry ``attempt`` (0-based)."""
    return min(cap, base * factor ** min(max(attempt, 0), MAX_EXPONENT))


def full_jitter(
    attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random, factor: float = 2.0
) -> float:
    """Uniform in ``[0, min(cap, base * factor**attempt))``; ``rng`` returns floats in ``[0, 1)``."""
    return rng() * capped_exponential(attempt, base=base, cap=cap, factor=factor)


def spread(pause: float, *, rng: Callable[[], float] = random.random) -> float:
    """Uniform in ``[pause, 2 * pause)``: never sooner than ``pause``, and not in step with others."""
    return pause * (1 + rng())


def reconnect_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    spread: float = 0.0,
    replicas: int = 1,
    pushback: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """The wait before reconnect ``attempt`` (0-based) to a server that may have said when to come back.

    ``pushback`` (the server refused and named a wait) is the answer: the server already spread its
    refusals, and asking sooner only earns another refusal. Otherwise full jitter over the wider of
    the capped exponential and the lost server's share of ``spread`` (the window its whole fleet would
    take at its admission rate): one of ``replicas`` held ~1/k of the fleet, and its clients go to the
    other k - 1, each admitting at its rate, so they arrive over ``spread / (k * (k - 1))`` instead of
    within ``base``. One address (a Service in front of the replicas): the whole window.
    """
    if pushback is not None:
        return pushback
    share = spread / (replicas * max(1, replicas - 1))
    return rng() * max(capped_exponential(attempt, base=base, cap=cap), share)
