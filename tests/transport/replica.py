"""A stand-in hub replica in its own process, for tests that SIGKILL one: run as a script.

A bare store and the real ``HubServicer`` behind the real ``GrpcServer`` (mutual TLS, the production
server options), without Git: it publishes, as one shared blob for its clusters, each bundle file
that appears in ``--blobs`` (in name order). Several of these given the same directory serve the
same bytes under the same digest, which is what an agent moving between replicas relies on; replicas
that share one hub state are the hub's own work, not this harness's. Each WatchBundles request is
appended to ``--requests`` as a JSON line (what the agent said it holds), and ``--ready`` receives
``{"port": N}`` once the server listens.

    PYTHONPATH=<repo>:<repo>/tests python tests/transport/replica.py --tls-ca F --tls-cert F --tls-key F \
        --trust-dir DIR --blobs DIR --requests FILE --ready FILE [--max-connection-age SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import pathlib

from skerry.core.bundle import Bundle
from skerry.core.files import atomic_write
from skerry.core.rpc import server_options
from skerry.core.tls import TlsFiles
from skerry.hub.bundles.store import HubStore
from skerry.hub.servicer import HubServicer
from transport.hubs import bare_server

CLUSTERS = ("oslo", "bergen")
POLL_SECONDS = 0.05  # how often the blob directory is looked at


class RecordingServicer(HubServicer):
    """The real servicer; every watch request is written down first."""

    def __init__(self, *args, requests: pathlib.Path, **kwargs):
        super().__init__(*args, **kwargs)
        self._requests = requests

    async def WatchBundles(self, request, context):
        line = {"cluster": request.cluster, "last_version": request.last_version,
                "last_digest": request.last_digest, "have_blob": request.have_blob}
        with open(self._requests, "a") as f:
            f.write(json.dumps(line) + "\n")
        async for message in super().WatchBundles(request, context):
            yield message


async def publish_new_blobs(store: HubStore, blobs: pathlib.Path) -> None:
    seen: set[str] = set()
    while True:
        for path in sorted(blobs.glob("*.json")):
            if path.name not in seen:
                seen.add(path.name)
                store.publish_shared(list(CLUSTERS), Bundle.decode(path.read_bytes()))
        await asyncio.sleep(POLL_SECONDS)


async def main(args: argparse.Namespace) -> None:
    store, _, server = bare_server(
        TlsFiles(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key),
        args.trust_dir,
        options=server_options(max_connection_age=args.max_connection_age),
        servicer_class=functools.partial(RecordingServicer, requests=args.requests),
    )
    publisher = asyncio.create_task(publish_new_blobs(store, args.blobs))
    port = await server.start()
    atomic_write(args.ready, json.dumps({"port": port}).encode())
    await server.wait()
    publisher.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for flag in ("--tls-ca", "--tls-cert", "--tls-key", "--trust-dir", "--blobs", "--requests", "--ready"):
        parser.add_argument(flag, type=pathlib.Path, required=True)
    parser.add_argument("--max-connection-age", type=float, default=0.0)
    asyncio.run(main(parser.parse_args()))
