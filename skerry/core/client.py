"""The one way a Skerry client opens a gRPC channel: mutual TLS, one option set, one error translation.

Every channel to a hub, sealer or enrollment endpoint carries ``core.rpc.CHANNEL_OPTIONS`` (message-size
limits matching the servers' and the keepalive that notices a dead peer behind NAT within a minute);
a channel built by hand tends to lose the keepalive. ``server_name`` overrides the name checked against
the server's certificate (an address by IP with a certificate for a DNS name). A failed call becomes a
Skerry error naming the peer through ``core.rpc.error_from_rpc``, the one client-side translation.

One name may stand for several servers (a headless Service, a DNS name with several addresses):
gRPC's default ``pick_first`` would then take the first address on every new channel, so a whole
fleet lands on one replica; ``SHUFFLE_ADDRESSES`` makes each new channel start from a random one.

``Endpoints`` is a client's choice among equivalent servers: the hub's replicas given as a list
(``a:7440,b:7440``), or one Service address whose backends the network picks. The first choice is
random, so a fleet spreads over the list; every reconnect chooses afresh at random among the others
(``failed``), never the one just left while another exists, and passes over one that failed in the last
``AVOID_SECONDS`` while one that did not is left (else the one that failed longest ago): a dead replica
refuses at once, and an agent sent back to it paid another lost-hub wait each time. Every path of one client that talks to
those servers (the agent's watch, reports, signed reports, TUF fetches, renewals) asks the same
``Endpoints``, so they follow one server at a time.

``all_pages`` reads a paged RPC (``page_token`` in, ``next_page_token`` out) to its end.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from skerry.core.errors import InvalidInput
from skerry.core.peers import parse_addresses
from skerry.core.rpc import CHANNEL_OPTIONS, merge_options
from skerry.core.tls import TlsFiles, channel_credentials

# How long a replica that failed (refused, unreachable, full) is passed over when the client chooses
# another: a dead one refuses each connect at once, and an agent sent back to it waits out another lost-hub
# window. bench/fleet_ha.py, 30,000 agents on 3 hubs, the writer SIGKILLed after a serving replica was
# restarted empty: choosing among "the others" sent agents leaving the full survivor back to the dead hub
# half the time; all streams were open again only 255 s after the kill. About the time Kubernetes takes to
# restart a pod, and the longest pushback a full replica gives (``hub.admission.FULL_PUSHBACK_SECONDS``);
# when every other address failed that recently, the one that failed longest ago is tried.
AVOID_SECONDS = 30.0


class Endpoints:
    """Which of several equivalent server addresses a client uses now (see the module docstring)."""

    def __init__(self, addresses: str | Iterable[str], *, what: str = "address",
                 rng: Callable[[], float] = random.random, clock: Callable[[], float] = time.monotonic):
        self.addresses = parse_addresses(addresses, what)
        self._rng = rng
        self._clock = clock
        self._failed_at: dict[str, float] = {}  # address -> when it last failed (``clock``)
        self.current = self._choose(self.addresses)
        self.switches = 0  # how many times ``failed`` moved to another address

    def _choose(self, candidates: tuple[str, ...]) -> str:
        now = self._clock()
        fresh = tuple(a for a in candidates if now - self._failed_at.get(a, -math.inf) >= AVOID_SECONDS)
        if not fresh:  # all failed lately: the one that failed longest ago
            return min(candidates, key=lambda a: self._failed_at[a])
        return fresh[min(int(self._rng() * len(fresh)), len(fresh) - 1)]

    def failed(self, address: str) -> str:
        """``address`` failed or was left: choose afresh among the others (if it is still the current one),
        passing over those that failed lately.

        Returns the address to use next. A path reporting a failure another path already moved away
        from changes nothing, so one dead server makes one switch, not one per path.
        """
        if address == self.current and len(self.addresses) > 1:
            self._failed_at[address] = self._clock()
            self.current = self._choose(tuple(a for a in self.addresses if a != address))
            self.switches += 1
        return self.current

    def __str__(self) -> str:
        return ",".join(self.addresses)


# pick_first over a shuffled address list (gRPC A62, grpcio >= 1.58): a name with several addresses
# spreads new channels over them; one address is unaffected.
SHUFFLE_ADDRESSES = (
    "grpc.service_config",
    json.dumps({"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": True}}]}),
)


def channel_options(
    server_name: str | None = None, extra: Sequence[tuple[str, object]] | None = ()
) -> list[tuple[str, object]]:
    """The options of every client channel, plus the TLS name override when given; ``extra`` replaces
    options of the same key (``core.rpc.merge_options``: gRPC itself would keep the first)."""
    options = merge_options(CHANNEL_OPTIONS, [SHUFFLE_ADDRESSES], extra)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def secure_channel(
    address: str,
    tls_files: TlsFiles,
    *,
    server_name: str | None = None,
    options: Sequence[tuple[str, object]] = (),
) -> grpc.Channel:
    """A blocking channel over mutual TLS with the client identity in ``tls_files`` (``options`` added)."""
    return grpc.secure_channel(
        address, channel_credentials(tls_files), options=channel_options(server_name, options)
    )


def aio_secure_channel(
    address: str, credentials: TlsFiles | grpc.ChannelCredentials, *, server_name: str | None = None
) -> grpc.aio.Channel:
    """An asyncio channel; ``credentials`` are TLS files, or credentials already built (CA-only enrollment)."""
    creds = channel_credentials(credentials) if isinstance(credentials, TlsFiles) else credentials
    return grpc.aio.secure_channel(address, creds, options=channel_options(server_name))


# Pages a client reads of one paged answer before it gives up on the server: a page is up to a message
# (~15 MiB), so this is far more than any fleet or bundle needs, and it stops a server looping forever.
MAX_PAGES = 10_000


def all_pages(call: Callable[..., Any], request: Any, items: str, **kwargs: Any) -> Any:
    """Call ``call(request, **kwargs)`` until ``next_page_token`` is empty; the first response is returned
    with the repeated field ``items`` of every page. Page tokens must advance (each is the last item's
    key, and items come in key order); a server whose tokens do not is refused rather than followed."""
    first = call(request, **kwargs)
    token = first.next_page_token
    for _ in range(MAX_PAGES):
        if not token:
            return first
        page_request = type(request)()
        page_request.CopyFrom(request)
        page_request.page_token = token
        page = call(page_request, **kwargs)
        getattr(first, items).extend(getattr(page, items))
        if page.next_page_token and page.next_page_token <= token:
            raise InvalidInput(f"the server's next page token {page.next_page_token[:80]!r} does not advance")
        token = first.next_page_token = page.next_page_token
    raise InvalidInput(f"the server's answer runs over {MAX_PAGES} pages")
