"""Simulated agents: many clusters' agents in one process, each speaking the real protocol to real hubs.

Shared by the fleet benchmarks (``bench/fleet.py``) and the hub-replica end-to-end test, so both
measure and check the same thing. Each simulated agent is what a real agent does up to applying:

* its own mTLS identity (one certificate per cluster, files ``<dir>/<cluster>.crt|.key``, made by
  the caller: the benchmark signs them with the hub's enrollment authority, a test with its CA);
* the real agent's ``HubClient`` watch stream (reconnect with jittered backoff, several hub
  addresses: failover to another replica, resume from the verified position, bundle bytes not
  re-sent);
* the real agent's ``TufVerifier`` (stock python-tuf refresh, hash bins, the Uptane agreement rule,
  the release counter, the streamed blob checked against the release target), its trusted metadata
  in its own directory.

Simplifications, named: an agent process fetches TUF metadata over one mTLS channel per hub
address (the first agent's certificate; metadata is fleet-public) instead of a channel per agent
and refresh, and runs its verifications one at a time on one thread.

With ``history`` the process also keeps what the end-to-end test asserts: per agent, every release
it verified must be above the one before (``regressions`` lists those that were not), and
fleet-wide each (cluster, content) must come in exactly one release (``duplicates``: content is
``content_digest``, the bundle without its Git revision). A fetch that fails because a hub is gone
(``Unavailable``) is retried, and counted apart from refusals (``VerificationError`` and other
errors, by reason).

An agent also reports, when told to (``send_status``), as the real agent's reporter does after a
reconcile: a status over its watch's hub (``HubClient.report``) and the same report signed with its
key against a hub nonce (``ReportSigner``), about the bundle it verified, Ready or not. Nothing is
applied, so Ready is what the caller says: the promotion tests make a cluster healthy or unhealthy.

``hold`` and ``release`` time the hub's sending apart from the agents' verification (bench/fleet.py
``--split``): while held, each agent notes a new event when it arrives (``received``; a report's
``got`` counts those since SINCE) and verifies it only once released, so on a shared machine the
hub's fan-out is not measured with thousands of verifications competing for its cores.

Run as ``python -m skerry.testing.simagents --hub A[,B...] --identities DIR ...``: it answers JSON
lines on stdout to commands on stdin (``report [FLOOR [SINCE]]``, ``positions``, ``hold``,
``release``, ``status CLUSTER ready|unready``, ``quit``); ``serve_commands`` takes extra commands
from a caller that runs it in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as _dt
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import grpc

from skerry.agent.attest import ReportSigner
from skerry.agent.reconcile.model import Condition, ReconcileResult
from skerry.agent.status import to_proto
from skerry.agent.stream import HubClient
from skerry.agent.trust import TufVerifier
from skerry.agent.tuf_fetch import GrpcFetcher
from skerry.core import logging as skerry_logging
from skerry.core.errors import SkerryError, Unavailable, VerificationError
from skerry.core.openfiles import raise_open_files
from skerry.core.rpc import keepalive_options
from skerry.core.tls import TlsFiles, channel_credentials
from skerry.hub.bundles.builder import content_digest

# A fetch that failed because its hub went away is tried again this often, this many times (the
# watch stream's reconnect then sends the bundle again anyway).
RETRY_SECONDS = 0.5
RETRIES = 20
# Entries of each list a report carries at most (a broken run must not flood the caller's pipe).
REPORT_LIMIT = 20


def raise_nofile() -> None:
    """Each agent holds a connection: lift the open-file limit to the hard limit."""
    raise_open_files()


def identity_files(directory: pathlib.Path, ca: pathlib.Path, name: str) -> TlsFiles:
    """Where a simulated agent's certificate and key are (``<dir>/<name>.crt|.key``)."""
    return TlsFiles(ca, directory / f"{name}.crt", directory / f"{name}.key")


class _SharedChannelFetcher(GrpcFetcher):
    def close(self) -> None:  # the process's channel to this hub outlives each refresh
        pass


class SimulatedAgents:
    """``names``' agents watching ``hub`` (one address or several, comma separated)."""

    def __init__(self, names: Sequence[str], files: Mapping[str, TlsFiles], hub: str, root: pathlib.Path,
                 environment: str, state_dir: pathlib.Path, *, ramp: float = 0.0,
                 channel_options: Sequence[tuple[str, object]] = (), history: bool = False):
        self.names = list(names)
        self._files = files
        self._hub = hub
        self._ramp = ramp
        self._channel_options = list(channel_options)
        self._history = history
        self._channels: dict[str, grpc.Channel] = {}
        self.clients: dict[str, HubClient] = {}
        self.state: dict[str, tuple[int, str, float]] = {}  # name -> (release, digest, verified at)
        self.verified: dict[str, tuple[str, int]] = {}  # name -> (revision, release number) of what it verified
        self._signers: dict[str, ReportSigner] = {}
        self.received: dict[str, float] = {}  # name -> when its newest event arrived (before verification)
        self.refused: dict[str, int] = {}  # reason -> count
        self.unavailable = 0  # fetches that failed because a hub was gone (retried)
        self.regressions: list[str] = []
        self.contents: dict[tuple[str, str], set[int]] = {}  # (cluster, content digest) -> releases
        self.verify_cpu = 0.0
        self.verifiers = {
            name: TufVerifier(name, environment, root, state_dir / name, self._fetcher_for(name)) for name in names
        }
        self._pool = concurrent.futures.ThreadPoolExecutor(1)  # one verification at a time per process
        self._tasks: list[asyncio.Task] = []
        self._released = asyncio.Event()  # cleared by ``hold``: events are noted, not verified
        self._released.set()

    def _fetcher_for(self, name: str) -> Callable[[], GrpcFetcher]:
        def fetcher() -> GrpcFetcher:
            client = self.clients.get(name)
            address = client.endpoints.current if client is not None else self._hub.split(",")[0]
            channel = self._channels.get(address)
            if channel is None:  # metadata is fleet-public: one channel per hub, the first agent's identity
                channel = self._channels[address] = grpc.secure_channel(
                    address, channel_credentials(self._files[self.names[0]]))
            return _SharedChannelFetcher(address, channel=channel)

        return fetcher

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._agent(name), name=f"sim-{name}") for name in self.names]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._channels.values():
            channel.close()
        for signer in self._signers.values():
            await signer.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def hold(self) -> None:
        """From now on note each new event as it arrives and verify it only after ``release``."""
        self._released.clear()

    def release(self) -> None:
        """Verify the events noted while held, and each new one as it comes."""
        self._released.set()

    def _position(self, name: str) -> tuple[int, str]:
        v = self.state.get(name)
        return (v[0], v[1]) if v else (0, "")

    async def _agent(self, name: str) -> None:
        await asyncio.sleep(random.uniform(0, self._ramp))  # agents come up over time, as clusters do
        client = self.clients[name] = HubClient(
            self._hub, self._files[name], name,
            channel_options=[("grpc.use_local_subchannel_pool", 1), *self._channel_options])
        loop = asyncio.get_running_loop()
        async for resp in client.watch(position=lambda: self._position(name)):
            if resp.WhichOneof("event") != "bundle":
                continue
            self.received[name] = time.time()
            await self._released.wait()
            for _ in range(RETRIES):
                if await loop.run_in_executor(self._pool, self._verify, name, resp.bundle):
                    break
                await asyncio.sleep(RETRY_SECONDS)

    def _verify(self, name: str, bundle) -> bool:
        """One verification; False if the hub could not be reached (try again)."""
        c0 = time.thread_time()
        try:
            v = self.verifiers[name].verify_message(bundle)
        except Unavailable:
            self.unavailable += 1
            return False
        except VerificationError as e:
            self.refused[e.reason] = self.refused.get(e.reason, 0) + 1
            return True
        except SkerryError as e:
            self.refused[type(e).__name__] = self.refused.get(type(e).__name__, 0) + 1
            return True
        finally:
            self.verify_cpu += time.thread_time() - c0
        if v is None:
            return True
        if self._history:
            previous = self.state.get(name)
            if previous is not None and v.release <= previous[0]:
                self.regressions.append(f"{name}: release {v.release} after {previous[0]}")
            self.contents.setdefault((name, content_digest(v.bundle)), set()).add(v.release)
        self.state[name] = (v.release, v.digest, time.time())
        self.verified[name] = (v.bundle.revision, v.number)
        return True

    async def send_status(self, name: str, ready: bool) -> dict:
        """Report ``name``'s verified bundle as applied, Ready or not: a status and the signed report, as the
        agent's reporter sends them. ``error`` in the answer if there is nothing verified yet or a hub
        refused or could not be reached (the caller asks again)."""
        client = self.clients.get(name)
        if client is None or name not in self.verified:
            return {"event": "status", "cluster": name, "error": "nothing verified yet"}
        release, digest = self._position(name)
        revision, number = self.verified[name]
        condition = (Condition("Ready", "True", "Healthy") if ready
                     else Condition("Ready", "False", "Unhealthy", "reported unhealthy by the simulation"))
        result = ReconcileResult(cluster=name, release=release, digest=digest, revision=revision,
                                 conditions=(condition,), number=number)
        observed = _dt.datetime.now(_dt.UTC)
        signer = self._signers.get(name)
        if signer is None:
            signer = self._signers[name] = ReportSigner(client.endpoints, self._files[name], channel=client.channel)
        try:
            await client.report(to_proto(result, observed=observed))
            await signer.send(result, int(observed.timestamp() * 1000))
        except SkerryError as e:
            return {"event": "status", "cluster": name, "error": f"{e.reason}: {e}"}
        return {"event": "status", "cluster": name, "release": release, "digest": digest, "ready": ready}

    def report(self, floor: int = 0, since: float = 0.0) -> dict:
        """How many hold a release >= ``floor``; latency from ``since``; how many got an event since
        ``since`` (verified or not); refusals; the history checks."""
        # list() copies in one C call: the verification thread may add entries meanwhile
        have = [(v, t) for (v, _, t) in list(self.state.values()) if v >= floor]
        lat = sorted((t - since) * 1000 for v, t in have) if floor and since else []
        duplicates = [f"{c}: {sorted(r)}" for (c, _), r in list(self.contents.items()) if len(r) > 1]
        return {
            "event": "report", "have": len(have), "max_recv": max((t for _, t in have), default=0),
            "got": sum(1 for t in list(self.received.values()) if since and t >= since),
            "max_event": max(list(self.received.values()), default=0), "verify_cpu": self.verify_cpu,
            "cpu": sum(os.times()[:2]), "refused": dict(self.refused), "unavailable": self.unavailable,
            "regressions": self.regressions[:REPORT_LIMIT], "duplicates": duplicates[:REPORT_LIMIT],
            "lat_ms": [lat[int(q * (len(lat) - 1))] for q in (0.5, 0.99, 1.0)] if lat else [],
        }

    def positions(self) -> dict:
        """Each agent's verified release (0 before its first)."""
        return {"event": "positions", "releases": {name: self._position(name)[0] for name in self.names}}


class CommandProcess:
    """A child process that answers each command line on its stdin with a JSON line on its stdout
    (``python -m skerry.testing.simagents``, the benchmarks' hub); its own session, so ``kill`` ends
    everything it started."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None):
        """``env``: the child's whole environment (default: this process's)."""
        self.p = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                  start_new_session=True, env=None if env is None else dict(env))

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def read(self) -> dict:
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"{' '.join(map(str, self.p.args[:3]))} exited with {self.p.wait()}")
        return json.loads(line)

    def ask(self, line: str) -> dict:
        self.send(line)
        return self.read()

    def kill(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()
        for pipe in (self.p.stdin, self.p.stdout):
            if pipe is not None:
                pipe.close()

    @property
    def pid(self) -> int:
        return self.p.pid


def _say(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def serve_commands(agents: SimulatedAgents,
                         extra: Mapping[str, Callable[[str], Awaitable[dict] | dict]] | None = None) -> None:
    """Answer JSON lines to commands on stdin until ``quit`` or its end (see the module docstring)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _say({"event": "started", "agents": len(agents.names)})
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd, _, arg = line.decode().strip().partition(" ")
        if cmd == "report":
            floor, _, since = (arg or "0").partition(" ")
            _say(agents.report(int(floor), float(since or 0)))
        elif cmd == "positions":
            _say(agents.positions())
        elif cmd == "status":
            name, _, ready = arg.partition(" ")
            _say(await agents.send_status(name, ready == "ready"))
        elif cmd in ("hold", "release"):
            (agents.hold if cmd == "hold" else agents.release)()
            _say({"event": cmd})
        elif extra and cmd in extra:
            answer = extra[cmd](arg)
            _say(await answer if asyncio.iscoroutine(answer) else answer)
        elif cmd == "quit":
            break


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m skerry.testing.simagents", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hub", required=True, help="HOST:PORT, or several separated by commas")
    p.add_argument("--identities", required=True, type=pathlib.Path, help="<cluster>.crt|.key of each agent")
    p.add_argument("--ca", required=True, type=pathlib.Path, help="the CA that signs the hubs")
    p.add_argument("--root", required=True, type=pathlib.Path, help="the TUF root.json to trust")
    p.add_argument("--environment", required=True)
    p.add_argument("--state", required=True, type=pathlib.Path, help="each agent's trusted metadata goes here")
    p.add_argument("--cluster", action="append", default=[], help="a cluster to simulate (repeatable)")
    p.add_argument("--ramp", type=float, default=0.0, help="agents start spread over this many seconds")
    p.add_argument("--history", action="store_true", help="keep the per-agent and fleet-wide checks")
    p.add_argument("--keepalive", type=float, default=0.0,
                   help="ping the hub this often (seconds, as the agent's --keepalive): notice a stopped hub sooner")
    return p


async def run(args, names: Sequence[str], *, channel_options: Sequence[tuple[str, object]] = (),
              extra: Mapping[str, Callable[[str], Awaitable[dict] | dict]] | None = None) -> None:
    """Simulate ``names`` as ``args`` (``parser()``) say, answering commands until told to quit."""
    raise_nofile()
    skerry_logging.configure("error")
    files = {name: identity_files(args.identities, args.ca, name) for name in names}
    if args.keepalive:
        channel_options = [*keepalive_options(args.keepalive), *channel_options]
    agents = SimulatedAgents(names, files, args.hub, args.root, args.environment, args.state, ramp=args.ramp,
                             channel_options=channel_options, history=args.history)
    agents.start()
    await serve_commands(agents, extra)
    os._exit(0)  # the agents' channels and threads need no orderly shutdown


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    asyncio.run(run(args, args.cluster))
    return 0


if __name__ == "__main__":
    sys.exit(main())
