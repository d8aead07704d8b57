"""The one way a Skerry client opens a gRPC channel: mutual TLS, one option set, one error translation.

Every channel to a hub, sealer or enrollment endpoint carries ``core.rpc.CHANNEL_OPTIONS`` (message-size
limits matching the servers' and the keepalive that notices a dead peer behind NAT within a minute);
a channel built by hand tends to lose the keepalive. ``server_name`` overrides the name checked against
the server's certificate (an address by IP with a certificate for a DNS name). A failed call becomes a
Skerry error naming the peer through ``core.rpc.error_from_rpc``, the one client-side translation.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from skerry.core.rpc import CHANNEL_OPTIONS, merge_options
from skerry.core.tls import TlsFiles, channel_credentials


def channel_options(
    server_name: str | None = None, extra: Sequence[tuple[str, object]] = ()
) -> list[tuple[str, object]]:
    """The options of every client channel, plus the TLS name override when given, plus ``extra``."""
    options = merge_options(CHANNEL_OPTIONS, extra)
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
