"""Stream holders: simulated agents that hold a real watch stream but run no TUF refresh (bench/fleet_ha.py).

A full simulated agent (``skerry.testing.simagents``) keeps python-tuf's trusted metadata for its
cluster: ~1.9 MB each after a refresh with tens of thousands of clusters in the hash bins, so 30,000
of them need ~57 GB, more than this machine has. The hub's side of an agent is its stream, not the
agent's verifier, so ``replicas --verifiers N`` runs N full verifiers (which prove verification and
its refusals) and makes every other simulated agent a stream holder. Each holder is, named plainly:

* a real mTLS identity of its own (its certificate signed by the hub's agent authority);
* the real agent's ``HubClient`` watch stream, its own TLS connection: every replica's address,
  one picked at random and another on failover, resuming after a reconnect with the position it
  holds (``last_version``/``last_digest``) and the blob it holds (bundle bytes not re-sent);
* a check of each delivered bundle against its event: the cluster is its own, the bytes hash to the
  event's ``digest``, the release counter is above the one it holds. A bundle failing one is counted
  under a named reason (``WrongCluster``, ``DigestMismatch``, ``NoBundleBytes``, ``Rollback``) and
  not taken as its position;
* no TUF refresh: it trusts the event's release counter and digest without the signed metadata.

Two savings of the simulation, named: identical bundle bytes are held once per process (the copy
each holder's ``HubClient`` keeps for resuming is swapped for the process's one copy of that digest,
the same bytes), and the process returns freed heap to the system every ``TRIM_SECONDS``
(``malloc_trim``): measured at 1,000 holders, 438 KiB per holder without either, 357 KiB after a trim.

Its process answers the same commands as ``skerry.testing.simagents`` (``report [FLOOR [SINCE]]``,
``positions``, ``quit``, through ``serve_commands``); a report adds the process's RSS now and before
its holders started (``rss_kib``, ``base_rss_kib``), from which the bench prints memory per holder.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pathlib
import random
import time
from collections.abc import Mapping, Sequence

from fleet import _malloc_trim, cluster_name, issue_identities
from fleet import _rss_kib as rss_kib

from skerry.agent.stream import HubClient
from skerry.core import logging as skerry_logging
from skerry.core.tls import TlsFiles
from skerry.testing import simagents

# How often a holder process hands freed heap back (the transient copies of a fan-out's bundles).
TRIM_SECONDS = 10.0
# Bundle digests whose bytes a process keeps one copy of (the newest; holders move on release by release).
SHARED_BLOBS = 4


class StreamHolders:
    """``names``' stream holders watching ``hub`` (one address or several, comma separated)."""

    def __init__(self, names: Sequence[str], files: Mapping[str, TlsFiles], hub: str, *, ramp: float = 0.0):
        self.names = list(names)
        self._files = files
        self._hub = hub
        self._ramp = ramp
        self.state: dict[str, tuple[int, str, float]] = {}  # name -> (release, digest, taken at)
        self.received: dict[str, float] = {}  # name -> when its newest event arrived
        self.refused: dict[str, int] = {}  # reason -> count
        self.base_rss_kib = rss_kib()
        self._blobs: dict[str, bytes] = {}  # digest -> the process's one copy of those bundle bytes
        self.clients: dict[str, HubClient] = {}
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._holder(name), name=f"holder-{name}") for name in self.names]

    def _position(self, name: str) -> tuple[int, str]:
        v = self.state.get(name)
        return (v[0], v[1]) if v else (0, "")

    async def _holder(self, name: str) -> None:
        await asyncio.sleep(random.uniform(0, self._ramp))  # agents come up over time, as clusters do
        client = self.clients[name] = HubClient(self._hub, self._files[name], name)
        async for resp in client.watch(position=lambda: self._position(name)):
            if resp.WhichOneof("event") == "bundle" and self.take(name, resp.bundle):
                client._blob = self._shared(resp.bundle.digest, client._blob)  # same bytes, one copy a process

    def _shared(self, digest: str, data: bytes) -> bytes:
        if digest not in self._blobs:
            while len(self._blobs) >= SHARED_BLOBS:
                del self._blobs[next(iter(self._blobs))]
            self._blobs[digest] = data
        return self._blobs[digest]

    def take(self, name: str, signed) -> bool:
        """Check one delivered bundle against its event; hold it as the position if it passes."""
        now = self.received[name] = time.time()
        held = self.state.get(name)
        if signed.cluster != name:
            reason = "WrongCluster"
        elif not signed.bundle:
            reason = "NoBundleBytes"
        elif "sha256:" + hashlib.sha256(signed.bundle).hexdigest() != signed.digest:
            reason = "DigestMismatch"
        elif held is not None and signed.version <= held[0]:
            reason = "Rollback"
        else:
            self.state[name] = (signed.version, signed.digest, now)
            return True
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return False

    def report(self, floor: int = 0, since: float = 0.0) -> dict:
        """The fields of ``SimulatedAgents.report`` (nothing verified in full), with the process's RSS."""
        have = [t for (v, _, t) in self.state.values() if v >= floor]
        lat = sorted((t - since) * 1000 for t in have) if floor and since else []
        return {
            "event": "report", "kind": "holders", "have": len(have), "max_recv": max(have, default=0),
            "got": sum(1 for t in self.received.values() if since and t >= since),
            "max_event": max(self.received.values(), default=0), "verify_cpu": 0.0, "cpu": sum(os.times()[:2]),
            "refused": dict(self.refused), "unavailable": 0, "regressions": [], "duplicates": [],
            "lat_ms": [lat[int(q * (len(lat) - 1))] for q in (0.5, 0.99, 1.0)] if lat else [],
            "rss_kib": rss_kib(), "base_rss_kib": self.base_rss_kib, **self.reconnects(),
        }

    def reconnects(self) -> dict:
        """Reconnects so far, and the holders' last interruption by kind (why streams dropped: a dead hub, a
        keepalive ping not acknowledged, an admission pushback, a connection retired at its age)."""
        kinds: dict[str, int] = {}
        for client in list(self.clients.values()):
            if client.last_error is not None:
                kind = interruption_kind(client.last_error)
                kinds[kind] = kinds.get(kind, 0) + 1
        return {"reconnects": sum(c.reconnects for c in list(self.clients.values())), "last_errors": kinds}

    def positions(self) -> dict:
        return {"event": "positions", "releases": {name: self._position(name)[0] for name in self.names}}


# What an interruption's message says, by kind (first marker found; gRPC's wording, grpcio 1.7x-1.8x).
_INTERRUPTIONS = (("ping", "KeepalivePing"), ("keepalive", "KeepalivePing"), ("max connection age", "MaxAge"),
                  ("admitting new streams", "Pushback"), ("Connection refused", "HubDown"),
                  ("failed to connect", "HubDown"), ("Socket closed", "SocketClosed"), ("reset", "ConnectionReset"))


def interruption_kind(error) -> str:
    text = str(error)
    return next((kind for marker, kind in _INTERRUPTIONS if marker in text), error.reason)


async def holders_main(args) -> None:
    """One holder process: issue its holders' identities (first run only), hold their streams, answer commands."""
    d = pathlib.Path(args.dir)
    names = [cluster_name(i) for i in range(args.first, args.first + args.count)]
    adir = issue_identities(d, names)
    simagents.raise_nofile()
    skerry_logging.configure("error")
    files = {name: simagents.identity_files(adir, d / "pki" / "ca.crt", name) for name in names}
    holders = StreamHolders(names, files, args.hubs, ramp=args.ramp)
    holders.start()

    async def trimming() -> None:
        while True:
            await asyncio.sleep(TRIM_SECONDS)
            _malloc_trim()

    trimmer = asyncio.create_task(trimming())  # noqa: F841 - runs until the process ends

    def trim(_: str) -> dict:
        _malloc_trim()
        return holders.report()

    await simagents.serve_commands(holders, {"trim": trim})
    os._exit(0)  # the holders' channels need no orderly shutdown

