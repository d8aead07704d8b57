"""A TCP proxy that injects network faults between two real parts (a client and the server it dials).

Point the client at :attr:`FaultProxy.address` instead of the server; the proxy forwards every
connection to ``upstream`` and, on command, misbehaves the way networks do (like toxiproxy, but
in-process and with nothing to install)::

    with FaultProxy(("127.0.0.1", hub_port)) as proxy:
        start_agent(hub=proxy.address)
        proxy.blackhole()           # the peer is silent: connect succeeds, nothing ever answers
        proxy.delay(2.0)            # 2 s of latency per direction, order kept
        proxy.cut()                 # close every connection now, and each new one at once
        proxy.passthrough()         # healthy again
        proxy.on_bytes(TO_CLIENT, 1_000_000, hub.kill)   # act in the middle of a transfer

Modes:

``pass``       bytes are forwarded as they arrive.
``blackhole``  connections are accepted and read, nothing is forwarded or answered, nothing is
               closed: the client sees neither an error nor a FIN, only silence (a partition, not a
               refused port). Every connection that lived through a blackhole stays black until its
               client closes it, also after the mode changes: bytes were lost, so the stream cannot
               go on (like a NAT entry dropped during the outage). New connections after it pass.
``delay``      every chunk read is forwarded ``seconds`` later, in each direction (throughput is
               kept, latency is added).
``cut``        every open connection is closed at once, and each new one right after it is accepted.

Bounded on purpose (it runs inside test processes next to the parts it tests): at most
``MAX_CONNECTIONS`` connections, ``MAX_QUEUED_CHUNKS`` chunks of ``CHUNK_BYTES`` waiting in a
direction (a full queue stops reading: backpressure), a delay of at most ``MAX_DELAY_SECONDS``, and
``CONNECT_TIMEOUT_SECONDS`` to reach the upstream. The proxy runs its own event loop in a daemon
thread, so blocking tests and asyncio tests can both drive it; every control call returns once the
loop has applied it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Callable

PASS = "pass"
BLACKHOLE = "blackhole"
DELAY = "delay"
CUT = "cut"
MODES = (PASS, BLACKHOLE, DELAY, CUT)
# Directions, for byte counts and ``on_bytes``.
TO_SERVER = "to_server"
TO_CLIENT = "to_client"

# One read; gRPC and TLS records are smaller, so a chunk rarely splits a message.
CHUNK_BYTES = 64 * 1024
# Chunks waiting per direction (4 MiB): a slow writer stops the reader instead of growing memory.
MAX_QUEUED_CHUNKS = 64
# More connections than any test opens through one proxy; beyond it a connection is closed at once.
MAX_CONNECTIONS = 256
# Latency beyond this is an outage: use ``blackhole``.
MAX_DELAY_SECONDS = 60.0
# Dialling the upstream; a refused or silent upstream closes the client's connection.
CONNECT_TIMEOUT_SECONDS = 5.0
# A control call waits this long for the proxy's loop to apply it.
CONTROL_TIMEOUT_SECONDS = 10.0


class ProxyError(RuntimeError):
    pass


@dataclasses.dataclass
class Stats:
    """What went through (read by tests; updated by the proxy thread)."""

    accepted: int = 0
    refused: int = 0  # closed at once: over MAX_CONNECTIONS, ``cut`` mode, or upstream unreachable
    forwarded: dict[str, int] = dataclasses.field(default_factory=lambda: {TO_SERVER: 0, TO_CLIENT: 0})
    discarded: int = 0  # bytes read and dropped by a blackhole


@dataclasses.dataclass
class _Trip:
    direction: str
    remaining: int
    action: Callable[[], object]


class _Conn:
    def __init__(self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]):
        self.client_reader, self.client_writer = client
        self.server_writer: asyncio.StreamWriter | None = None
        self.black = False
        self.tasks: list[asyncio.Task] = []

    def close(self) -> None:
        for writer in (self.client_writer, self.server_writer):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


class FaultProxy:
    """A TCP proxy on ``listen`` (port 0: the kernel picks) in front of ``upstream`` ``(host, port)``."""

    def __init__(self, upstream: tuple[str, int], *, listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.upstream = upstream
        self._listen = listen
        self.mode = PASS
        self.delay_seconds = 0.0
        self.stats = Stats()
        self.port = 0
        self._conns: set[_Conn] = set()
        self._trip: _Trip | None = None
        self._fired = threading.Event()  # the armed action has run (and returned)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self._listen[0]}:{self.port}"

    def start(self) -> FaultProxy:
        loop = asyncio.new_event_loop()
        ready: list[BaseException | None] = []
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._accept, self._listen[0], self._listen[1])
                )
                self.port = self._server.sockets[0].getsockname()[1]
                ready.append(None)
            except BaseException as e:  # noqa: BLE001 - handed to the starting thread
                ready.append(e)
            started.set()
            if ready[0] is None:
                loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"faultproxy-{self.upstream[1]}", daemon=True)
        self._thread.start()
        if not started.wait(CONTROL_TIMEOUT_SECONDS) or ready[0] is not None:
            raise ProxyError(f"fault proxy for {self.upstream} did not start: {ready[0] if ready else 'timeout'}")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(ProxyError):
            self._control(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT_SECONDS)
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for conn in self._conns for t in conn.tasks if t is not asyncio.current_task()]
        for conn in list(self._conns):
            conn.close()
        self._conns.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=CONTROL_TIMEOUT_SECONDS / 2)

    # --- control (from any thread) --------------------------------------------------------------

    def passthrough(self) -> None:
        self.set_mode(PASS)

    def blackhole(self) -> None:
        self.set_mode(BLACKHOLE)

    def delay(self, seconds: float) -> None:
        self.set_mode(DELAY, seconds)

    def cut(self) -> None:
        self.set_mode(CUT)

    def set_mode(self, mode: str, seconds: float = 0.0) -> None:
        if mode not in MODES:
            raise ProxyError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if mode == DELAY and not 0 < seconds <= MAX_DELAY_SECONDS:
            raise ProxyError(f"delay must be in (0, {MAX_DELAY_SECONDS:g}] seconds, got {seconds}")

        async def apply() -> None:
            self.mode, self.delay_seconds = mode, (seconds if mode == DELAY else 0.0)
            for conn in list(self._conns):
                if mode == CUT:
                    self._drop(conn)
                elif mode == BLACKHOLE:
                    conn.black = True

        self._control(apply)

    def on_bytes(self, direction: str, after: int, action: Callable[[], object]) -> None:
        """Call ``action`` (in the proxy's thread, forwarding held) once ``after`` more bytes went ``direction``,
        then close the connection that carried them.

        Nothing is forwarded while ``action`` runs, and what the proxy had already read but not yet
        forwarded on that connection is dropped: killing the server from ``action`` leaves the client
        exactly the bytes counted so far (rounded up to a chunk), as if the server died right there.
        """
        if direction not in (TO_SERVER, TO_CLIENT):
            raise ProxyError(f"direction must be {TO_SERVER} or {TO_CLIENT}")

        async def arm() -> None:
            self._fired.clear()
            self._trip = _Trip(direction, after, action)

        self._control(arm)

    @property
    def tripped(self) -> bool:
        """Whether the last ``on_bytes`` action has run to its end."""
        return self._fired.is_set()

    def connections(self) -> int:
        return len(self._conns)

    def _control(self, fn) -> None:
        if self._loop is None:
            raise ProxyError("fault proxy not started")
        future = asyncio.run_coroutine_threadsafe(fn(), self._loop)
        try:
            future.result(CONTROL_TIMEOUT_SECONDS)
        except TimeoutError:
            raise ProxyError("fault proxy did not answer a control call") from None

    # --- the proxy (its own thread) -------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn((reader, writer))
        if self.mode == CUT or len(self._conns) >= MAX_CONNECTIONS:
            self.stats.refused += 1
            conn.close()
            return
        self.stats.accepted += 1
        self._conns.add(conn)
        if self.mode == BLACKHOLE:
            conn.black = True
            conn.tasks.append(asyncio.current_task())
            await self._pump(conn, reader, None, TO_SERVER)
            return
        try:
            server_reader, conn.server_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), CONNECT_TIMEOUT_SECONDS
            )
        except (OSError, TimeoutError):
            self.stats.refused += 1
            self._drop(conn)
            return
        conn.tasks = [
            asyncio.ensure_future(self._pump(conn, reader, conn.server_writer, TO_SERVER)),
            asyncio.ensure_future(self._pump(conn, server_reader, writer, TO_CLIENT)),
        ]

    async def _pump(self, conn: _Conn, src: asyncio.StreamReader, dst: asyncio.StreamWriter | None, direction: str):
        """Read ``src`` until EOF; forward to ``dst`` through a delay queue unless the connection is black."""
        queue: asyncio.Queue = asyncio.Queue(MAX_QUEUED_CHUNKS)
        sender = asyncio.ensure_future(self._send(conn, queue, dst, direction)) if dst is not None else None
        try:
            while True:
                try:
                    data = await src.read(CHUNK_BYTES)
                except (OSError, asyncio.IncompleteReadError):
                    data = b""
                if conn.black:
                    if not data and direction == TO_SERVER:
                        break  # the client left: nothing more to hide from it
                    self.stats.discarded += len(data)
                    if not data:
                        await asyncio.Event().wait()  # the server left: the client must not learn it
                    continue
                loop = asyncio.get_running_loop()
                await queue.put((loop.time() + self.delay_seconds, data))
                if not data:
                    await sender
                    break
        except asyncio.CancelledError:
            pass
        finally:
            if sender is not None and not sender.done():
                sender.cancel()
            self._drop(conn)

    async def _send(self, conn: _Conn, queue: asyncio.Queue, dst: asyncio.StreamWriter, direction: str):
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                return
            if conn.black:
                self.stats.discarded += len(data)
                continue
            try:
                dst.write(data)
                await dst.drain()
            except (OSError, RuntimeError):
                return
            self.stats.forwarded[direction] += len(data)
            trip = self._trip
            if trip is not None and trip.direction == direction:
                trip.remaining -= len(data)
                if trip.remaining <= 0:
                    self._trip = None
                    try:
                        trip.action()
                    finally:
                        self._fired.set()
                        self._drop(conn)
                    return

    def _drop(self, conn: _Conn) -> None:
        if conn in self._conns:
            self._conns.discard(conn)
        conn.close()
