"""When to come back: the hints a server gives clients that reconnect, as plain values (no gRPC import).

A hub replica that dies sends its agents to the others at once; each of them reconnecting in the
same second is a reconnect storm (thousands of TLS handshakes, keepalive acks starved, dropped
streams reconnecting again). Two hints travel as gRPC metadata, both in milliseconds:

* ``grpc-retry-pushback-ms`` (trailing, on a refusal): gRPC's standard pushback (gRFC A6): "try
  again after this long". A hub over its stream admission budget answers RESOURCE_EXHAUSTED with it
  (``skerry.hub.admission``); the agent waits that long before it asks again, on the same connection.
* ``skerry-reconnect-spread-ms`` (initial, when a stream opens): how long the whole fleet would take
  to come back to this hub at its admission rate (its fleet, or its open streams if more, over the
  rate). An agent that loses the stream takes its replica's share of it, spread over the other
  replicas, and waits a full-jitter delay over that (``skerry.core.backoff.reconnect_delay``), so ten
  thousand agents of one dead replica arrive over a window, not in one second.

One refusal is a hint too, by its reason (the ``skerry-reason`` trailer): ``ReplicaBehind``
(``BEHIND_REASON``) says this replica's copy of the hub state is older than what the client holds
(``skerry.hub.catchup``). That hub is not lost and the rest of its fleet stays on it: the client goes
to another replica within its own backoff, not over the spread.

Both are read from a peer, so both are bounded: a broken or hostile server cannot park an agent for
longer than ``MAX_PUSHBACK_SECONDS`` / ``MAX_SPREAD_SECONDS``; a value that is not a non-negative
integer is ignored (the client's own backoff applies).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

PUSHBACK_METADATA = "grpc-retry-pushback-ms"
# The reason of a refusal by a hub replica whose copy is behind what the client already holds.
BEHIND_REASON = "ReplicaBehind"
SPREAD_METADATA = "skerry-reconnect-spread-ms"
# Longest pushback a client honours: five minutes is longer than any admission queue a hub builds
# (skerry.hub.admission caps its pushback lower) and short enough that an agent told nonsense comes back.
MAX_PUSHBACK_SECONDS = 300.0
# Widest reconnect spread a client honours: a fleet of 90,000 agents at 100 new streams a second.
MAX_SPREAD_SECONDS = 900.0
# Digits a value may have (a millisecond count far above either cap): bounds what is parsed.
_MAX_DIGITS = 12


def entry(key: str, seconds: float) -> tuple[str, str]:
    """One metadata entry carrying ``seconds`` as whole milliseconds (rounded up: never sooner)."""
    return key, str(max(0, math.ceil(seconds * 1000)))


def read(metadata: Iterable[tuple[str, object]] | None, key: str, cap: float) -> float | None:
    """Seconds carried under ``key`` (at most ``cap``), or None if absent or not a non-negative integer."""
    for k, value in metadata or ():
        if k != key:
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        text = text.strip()
        if not text.isdigit() or len(text) > _MAX_DIGITS:
            return None
        return min(cap, int(text) / 1000)
    return None


def pushback(trailing: Iterable[tuple[str, object]] | None) -> float | None:
    """A refusal's pushback in seconds (``grpc-retry-pushback-ms``), capped; None when the server named none."""
    return read(trailing, PUSHBACK_METADATA, MAX_PUSHBACK_SECONDS)


def spread(initial: Iterable[tuple[str, object]] | None) -> float | None:
    """The reconnect window a stream's server advertised, in seconds, capped; None when it named none."""
    return read(initial, SPREAD_METADATA, MAX_SPREAD_SECONDS)
