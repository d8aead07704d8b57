"""The one way a Skerry client opens a gRPC channel: mutual TLS, one option set, one error translation.

Every channel to a hub, sealer or enrollment endpoint carries ``core.rpc.CHANNEL_OPTIONS`` (message-size
limits matching the servers' and the keepalive that notices a dead peer behind NAT within a minute);
a channel built by hand tends to lose the keepalive. ``server_name`` overrides the name checked against
the server's certificate (an address by IP with a certificate for a DNS name). A failed call becomes a
Skerry error naming the peer through ``core.rpc.error_from_rpc``, the one client-side translation.
``all_pages`` reads a paged RPC (``page_token`` in, ``next_page_token`` out) to its end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from skerry.core.errors import InvalidInput
from skerry.core.rpc import CHANNEL_OPTIONS
from skerry.core.tls import TlsFiles, channel_credentials


def channel_options(server_name: str | None = None) -> list[tuple[str, object]]:
    """The options of every client channel, plus the TLS name override when given."""
    options: list[tuple[str, object]] = list(CHANNEL_OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def secure_channel(address: str, tls_files: TlsFiles, *, server_name: str | None = None) -> grpc.Channel:
    """A blocking channel over mutual TLS with the client identity in ``tls_files``."""
    return grpc.secure_channel(address, channel_credentials(tls_files), options=channel_options(server_name))


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
