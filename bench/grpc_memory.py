"""What one idle gRPC stream costs a grpc.aio server, and what each server knob buys (no Skerry code on the path).

    .venv/bin/python bench/grpc_memory.py [--streams 1000] [--only LABEL]

For each configuration a fresh server process opens, a client process makes
``--streams`` channels (one TCP+TLS connection each, ECDSA P-256 mutual TLS
as Skerry's agents use) and holds one server stream on each; the server
prints its RSS delta per stream (and after ``malloc_trim(0)``). One knob is
varied at a time against grpc defaults, plus splits that locate the cost:
plaintext, connections without a call, calls sharing one connection.

Measured on this machine (2 cores, grpc 1.85, 1000 streams): 87.8 KiB per TLS
stream; plaintext 38.7; a TLS connection without a call 64.3 (plaintext
15.5), so TLS adds ~49 KiB per connection and a call ~23 KiB (~5 of it
Python objects). Of the TLS part ~34 KiB is BoringSSL's BIO pair, whose
two 17 KiB buffers gRPC allocates per connection with sizes hard-coded to
the default (``tsi_ssl_*_handshaker_factory_create_handshaker(..., 0, 0)``),
and 16 KiB the frame protector (``grpc.tsi.max_frame_size``, the one TLS knob
that helps). The peer: the issue's figure of ~88 KiB for a bare gRPC+mTLS
connection, reproduced here.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from fleet import _rss_kib  # noqa: E402 - the same RSS reading as the fleet simulator (bench/ is on sys.path)

CONFIGS: list[tuple[str, list, dict]] = [
    ("grpc defaults", [], {}),
    ("plaintext (no TLS)", [], {"INSECURE": "1"}),
    ("TLS connections, no call", [], {"MODE": "conn"}),
    ("plaintext connections, no call", [], {"MODE": "conn", "INSECURE": "1"}),
    ("plaintext, all calls on one connection", [], {"MODE": "onech", "INSECURE": "1"}),
    ("grpc.tsi.max_frame_size=4096", [("grpc.tsi.max_frame_size", 4096)], {}),
    ("grpc.tsi.max_frame_size=1024", [("grpc.tsi.max_frame_size", 1024)], {}),
    ("tcp_read_chunk_size=4096", [("grpc.experimental.tcp_read_chunk_size", 4096)], {}),
    ("tcp read chunk 1024 (min 256, max 64 KiB)", [("grpc.experimental.tcp_read_chunk_size", 1024),
                                                   ("grpc.experimental.tcp_min_read_chunk_size", 256),
                                                   ("grpc.experimental.tcp_max_read_chunk_size", 65536)], {}),
    ("hpack tables 512/512", [("grpc.http2.hpack_table_size.decoder", 512),
                              ("grpc.http2.hpack_table_size.encoder", 512)], {}),
    ("grpc.http2.bdp_probe=0", [("grpc.http2.bdp_probe", 0)], {}),
    ("grpc.max_concurrent_streams=4", [("grpc.max_concurrent_streams", 4)], {}),
    ("grpc.http2.write_buffer_size=8192", [("grpc.http2.write_buffer_size", 8192)], {}),
    ("MALLOC_ARENA_MAX=2", [], {"MALLOC_ARENA_MAX": "2"}),
]


async def _server(n: int, options: list, d: pathlib.Path) -> None:
    import grpc

    creds = grpc.ssl_server_credentials([((d / "hub.key").read_bytes(), (d / "hub.crt").read_bytes())],
                                        root_certificates=(d / "ca.crt").read_bytes(), require_client_auth=True)
    count = 0
    forever = asyncio.Event()

    async def watch(request, context):
        nonlocal count
        count += 1
        yield b"hello"
        await forever.wait()

    handler = grpc.method_handlers_generic_handler("x.X", {"W": grpc.unary_stream_rpc_method_handler(watch)})
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=25_000)
    server.add_generic_rpc_handlers([handler])
    insecure = bool(os.environ.get("INSECURE"))
    port = server.add_insecure_port("127.0.0.1:0") if insecure else server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    await asyncio.sleep(0.5)
    base = _rss_kib()
    client = subprocess.Popen([sys.executable, __file__, "_client", str(port), str(n), str(d)])
    if os.environ.get("MODE") == "conn":
        await asyncio.sleep(max(10.0, n / 50))
    else:
        while count < n:
            await asyncio.sleep(0.2)
    await asyncio.sleep(2)
    full = _rss_kib()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    print(json.dumps({"per": (full - base) / n, "per_trim": (_rss_kib() - base) / n}), flush=True)
    client.kill()
    os._exit(0)


async def _client(port: int, n: int, d: pathlib.Path) -> None:
    import grpc

    from skerry.core.tls import TlsFiles, channel_credentials

    creds = channel_credentials(TlsFiles(d / "ca.crt", d / "a.crt", d / "a.key"))
    insecure, mode = bool(os.environ.get("INSECURE")), os.environ.get("MODE")
    options = [] if mode == "onech" else [("grpc.use_local_subchannel_pool", 1)]
    channels = []

    async def one() -> None:
        target = f"127.0.0.1:{port}"
        ch = grpc.aio.insecure_channel(target, options=options) if insecure else grpc.aio.secure_channel(
            target, creds, options=options)
        channels.append(ch)
        if mode == "conn":
            await ch.channel_ready()
            return
        async for _ in ch.unary_stream("/x.X/W")(b""):
            pass

    tasks = [asyncio.create_task(one()) for _ in range(n)]  # noqa: F841 - kept alive
    await asyncio.sleep(3600)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        asyncio.run(_client(int(sys.argv[2]), int(sys.argv[3]), pathlib.Path(sys.argv[4])))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        asyncio.run(_server(int(sys.argv[2]), [tuple(o) for o in json.loads(sys.argv[3])], pathlib.Path(sys.argv[4])))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--only", help="run only configurations whose label contains this")
    args = p.parse_args()
    from skerry.core.tls import ROLE_AGENT, ROLE_HUB, CertificateAuthority, write_keypair

    with tempfile.TemporaryDirectory(prefix="skerry-grpcmem-") as tmp:
        d = pathlib.Path(tmp)
        ca = CertificateAuthority.create("bench-ca")
        (d / "ca.crt").write_bytes(ca.cert_pem)
        write_keypair(d, "hub", ca.issue("hub", role=ROLE_HUB, server_names=("127.0.0.1",), client=False))
        write_keypair(d, "a", ca.issue("c00000", role=ROLE_AGENT))
        print(f"{'configuration':45} {'KiB/stream':>10} {'after trim':>10}  load")
        for label, options, env in CONFIGS:
            if args.only and args.only not in label:
                continue
            with open("/proc/loadavg") as f:
                load = " ".join(f.read().split()[:3])
            out = subprocess.run([sys.executable, __file__, "_server", str(args.streams), json.dumps(options), tmp],
                                 env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
            try:
                res = json.loads(out.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                print(f"{label:45} failed: {out.stderr[-300:]}")
                continue
            print(f"{label:45} {res['per']:10.1f} {res['per_trim']:10.1f}  {load}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
