"""Hub replicas on one database: a 100,000-cluster state simulation, and hub processes with real agent streams.

    .venv/bin/python bench/fleet_ha.py state [--clusters 100000] [--replicas 3] [--report-seconds 60]
    .venv/bin/python bench/fleet_ha.py replicas [--agents 2000] [--hubs 3] [--workers 4] [--lease-ttl 15]
                                                [--verifiers 500] [--holders-per-process 5000]
                                                [--admission-rate 100] [--admission-burst 200]
                                                [--stop-after-serving-kill]

``state`` (SQLite and PostgreSQL side by side; render excluded) runs the writer's part of a
fleet-wide release through the code the hub's writer runs: ``HubStore.publish_shared`` with
``Releases`` (fenced writer transaction: a counter per cluster, a bundle record and a change-log
entry per cluster) and the trust repository storing its files in the state (``TrustFiles``: one
blob, 256 director bins, 256 release bins, snapshot and timestamp, in the same transaction). The
writer's lease is renewed from another thread, as ``Writer.hold`` does, while it publishes. Then
``--replicas`` serving processes, each with its own connection, store and trust repository,
follow the state (``ChangeFeed`` + ``Follower.apply``, the serving replica's code): their cold
start (reload of every record) and their catch-up after the next fleet-wide release, measured
from its commit. Agents' reports go through ``ReportJournal`` (``note`` + one ``flush`` per
``FLUSH_SECONDS``, as a hub does): first a burst of one report per cluster in one flush
(capacity), then 100,000 a minute for ``--report-seconds`` spread over the replicas (latency of
each flush, and whether the state kept up). PostgreSQL is a private server this bench starts
(``skerry.testing.postgres``) with ``fsync=on`` (SQLite commits with ``synchronous=FULL``):
durable commits on both.

``replicas`` starts ``--hubs`` hub processes on one PostgreSQL: each the hub's serving stack
(``HubServicer`` + ``TrustServicer`` + ``GrpcServer`` with mutual TLS, as in bench/fleet.py) on the
replica parts above (``Follower`` fed by LISTEN/NOTIFY and the change log; ``Writer`` + ``Duties``
competing for the lease). Only Git and rendering are left out: the writer publishes a shared bundle
for every cluster as its sync loop would. The simulated agents are bench/fleet.py's (real
``HubClient`` streams, one mTLS identity and one ``TufVerifier`` each), given every replica's
address: each picks one at random and fails over to another. Printed: memory per stream per
replica, fan-out of one release to all agents across replicas, time until all agents are back
after a serving replica is SIGKILLed, writer takeover after the writer is SIGKILLed (bounded below
by the lease TTL) and the fan-out of the new writer's first release.

The hubs admit new streams as ``HubApp`` does (``skerry.hub.admission``; ``--admission-rate 0``: no gate and no
reconnect spread, the hub before issue #14's storm fix). After the serving replica is SIGKILLed the bench
prints open streams per hub, admission refusals and load every few seconds until all are back, then the
peak and lowest open streams, the refusals, the load peak and the stream holders' reconnects.

A full verifier holds ~1.9 MB of python-tuf metadata after a refresh, so 30,000 of them do not fit
this machine (23 GB). ``--verifiers N``: N agents are full verifiers (they prove verification and
its refusals on every release) and every other agent is a *stream holder* (bench/fleet_ha_holders.py):
its own mTLS identity and real ``HubClient`` stream, resuming with its position like the agent,
checking each delivered bundle's bytes against the event's digest and its counter against the one it
holds, but running no TUF refresh. The output names the split ("30,000 streams: 500 full verifiers +
29,500 stream holders") and prints the holders' client-side memory per holder.

What it found (2026-12-05, 100,000 clusters, machine shared, load 6-13): a fleet-wide release is one
fenced transaction, and the lease cannot be renewed while it runs (SQLite: the one write lock;
PostgreSQL: the fence's FOR SHARE row lock; in the hub the publish also holds the event loop), so a
publish longer than the lease TTL (15 s) is refused at commit, every time it is retried: the bench
prints a FINDING line and measures on with a longer TTL. PostgreSQL runs the publish one statement
per round trip (~4 per cluster): 400-630 s against SQLite's 43 s. The trust directory's hard links
ran out at ext4's 65,000 per file (fixed in ``skerry.hub.trust.storage``).

Since then a release's counters, records, change-log entries and agents' reports go 1,000 rows to a
statement and replicas read changed records the same way (``skerry.hub.state.sql_records``). Same
machine, 10,000 clusters, load 9-12, before -> after: PostgreSQL first release 26.0 -> 7.1 s, next
release 20.9 -> 9.3 s (1,435 -> 3,220 rows/s), replica catch-up 9.0 -> 3.8 s, report burst 2,837 ->
7,748/s, one flush of 100,000 reports a minute 1.1 s -> 0.10 s (p50); SQLite unchanged (next release
5.5 -> 5.1 s, catch-up 2.6 -> 2.1 s). 100,000 clusters after, load 11-14: SQLite first release 52 s,
next 104 s, catch-up 20-24 s; PostgreSQL first release 93 s (3,227 rows/s; before: 403-634 s at load
6-13). At that load the director pass (CPU between two statements of the release's transaction) ran
longer than the lease and than PostgreSQL's idle-in-transaction limit; it now asks ``Tx.alive`` per
cluster. Still open then (the FINDING line at load 12-35): 61 s without a statement at load 18-35, put
down to signing. Sampled (2026-12-05 10:18, 20,000 clusters, SQLite, load 2-4): the longest stretch was
7.8 s, 6.1 s of it the link pass (a hard link per new target file, before the first role is signed and
written); each signed role is written at once. The trust repository now beats the transaction's
heartbeat (``Tx.alive``) between units of its work (a cluster, a signature, a link, a removed file) and
the store and the record encoder between clusters; the longest stretch is the heartbeat's 1 s. 100,000
clusters, SQLite, lease 15 s, load 4-6: before, the first release was REFUSED after 70.3 s (FINDING);
after, it commits in 43.7 s, the next in 36.4 s, a replica catches up 7.0 s after the commit.
PostgreSQL at 100,000 was not run again.

30,000 streams (2026-12-05 08:10, ``replicas --agents 30000 --verifiers 500 --workers 2
--holders-per-process 5000 --lease-ttl 90 --ramp 300``; 3 hubs; machine shared, load 15-20 before
the run from other work): "30,000 streams: 500 full verifiers + 29,500 stream holders". The lease TTL
is 90 s because the 30,000-cluster publish on PostgreSQL takes 18-32 s and must fit it. First release
31.4 s; all 30,000 connected and holding their bundle in 300 s (bound by the ramp, 100 a second);
memory per stream per replica 85.3-88.6 KiB (each hub ~1.1 GiB RSS with ~10,000 streams); stream
holders 249.7 KiB each on the client side (29,500 in 6 processes, 7.6 GiB), so 30,000 fit with ~10 GB
left. Fan-out of one release to all 30,000: publish 18.5 s, all had it 221.6 s after publishing started
(holders 163.9 s, the 500 verifiers 221.6 s), nothing refused, load up to 57; keepalive pings not
acknowledged within 20 s dropped ~1,900 connections (GOAWAY ping_timeout), and those agents
reconnected. FINDING: SIGKILLing a serving replica sent its ~10,000 agents to the other two at once,
and the hubs collapsed under the reconnect storm. Open streams fell from 20,133 21 s after the kill to
8,230 after 176 s, at load 123: handshakes starved the ping acks, and each dropped stream added another
reconnect. The run was stopped there, so the time until all agents are back, the writer takeover and
the new writer's fan-out were not measured at 30,000. A first try with a 60 s ramp (500 connects a
second) collapsed the same way at the initial connect (300 of 30,000 after 31 s, load 99). At 2,000
(200 verifiers + 1,800 holders, load 12-18) all is measured: 84-94 KiB per stream per replica, fan-out
21.2 s, serving replica SIGKILLed -> all back on the others 3.8 s later, writer SIGKILLed -> new writer
13.2 s later (TTL 15 s), streams back 5.0 s.

The reconnect storm (issue #14; 2026-12-05 10:40-11:30, ``--verifiers 100 --workers 1``, machine shared
with others' tests). Without admission (``--admission-rate 0``) the storm needs 30,000 here: at 12,000
agents the killed replica's 3,885 were back on the other two in 12.9 s (load peak 12.9), at 20,000 its
6,539 in 23.4 s (load peak 24.7), each agent reconnecting once. A fan-out to 30,000 (before the hubs'
keepalive was loosened, ``skerry.core.peers``) logged over 17,000 GOAWAY ping_timeout at load 97 (the
run was interrupted). 30,000 with admission and the spread advertised from each hub's open streams at
connect time: open streams fell from 21,053 to 18,711 in 96 s after the kill, load 100 (agents that
connected early held short windows and came back in one lump). 30,000 with the spread from the fleet
(this code; ``--skip-fanout``, ramp 240 s): the serving replica with 10,058 streams SIGKILLed -> all
30,000 open on the other two 62.0 s later, never below 19,946, 3,253 refused with a pushback, load peak
28.2; 13,271 reconnects in all (the moves and the pushbacks: no keepalive drop). The same run without
admission or spread (``--admission-rate 0``, ramp 200 s; the hubs' looser keepalive kept): 20,465 open
at the kill, 21,425 after 87 s, then falling to 14,500 at 200 s, load 133 — the storm, which the looser
keepalive alone does not prevent.

Everything at 30,000 with the code of the issue's close (2026-12-05 12:55-13:21, quiet machine, default
lease TTL 15 s, ``--verifiers 500 --workers 2 --holders-per-process 5000 --ramp 300``):
- 3 hubs: all connected in 300 s (the ramp), 83-89 KiB per stream per replica; fan-out of one release
  to all 30,000 in 55.8 s from the start of publishing (publish 9.0 s; before the keepalive and
  admission work: 221.6 s), nothing refused, no keepalive drop; serving replica (9,980 streams)
  SIGKILLed -> all 30,000 open on the other two 52.4 s later, never below 20,023, 1,667 pushbacks, load
  peak 18.7. FINDING: then the writer was SIGKILLed, sending its ~15,000 agents to a fresh empty replica
  and to the one holding ~15,000: that hub reached this machine's open-file limit (20,000 a process,
  hard; root cannot raise it), gRPC's listener logged "File descriptor limit reached" and the bench's
  own stats read failed with EMFILE. A hub accepted streams until it broke: hubs now cap their open
  streams below the file limit and refuse past it so agents go elsewhere (``skerry.hub.admission``).
- 3 hubs with the cap (13:53): the same figures to the serving kill (fan-out 57.4 s, back in 51.7 s, no
  pushback), then writer SIGKILLed -> new writer 7.4 s later, no descriptor error, but all 30,000 open again
  only 255.2 s after the kill at load 3.7: agents leaving the full survivor chose at random among the
  others and went back to the dead writer half the time, paying another lost-hub wait each time. With
  ``core.client.AVOID_SECONDS`` (14:09; a replica that failed in the last 30 s is passed over): fan-out
  58.5 s, serving replica (9,870) SIGKILLed -> back in 51.4 s, writer SIGKILLed -> new writer 13.8 s later,
  all 30,000 open again 189.5 s after the kill, the new writer's first release taken by all in 68.8 s,
  refused none; 35 connections dropped on keepalive (GOAWAY ping_timeout) during the serving kill. What is
  left of the 189.5 s is the admission rate: ~12,000 agents went to the one replica with room (the other
  was near its cap), which admits 100 new streams a second: 120 s, plus the 50 s lost-hub spread.
- 4 hubs (no replica past ~15,000 streams at any step): 85-88 KiB per stream; fan-out to 30,000 in
  61.1 s (publish 9.0 s; p50 per agent 39.2 s from the commit), nothing refused; serving replica (7,489
  streams) SIGKILLed -> all back on the other three 28.2 s later, 2,818 pushbacks, load peak 23.0;
  **writer SIGKILLed -> a new writer 8.7 s later** (lease TTL 15 s), all 30,000 streams open again
  77.4 s after the kill (its ~10,000 agents plus the restarted replica's rebalance); the new writer's
  first release published in 12.5 s and taken by all 30,000 in 68.7 s, refused none; no keepalive drop.
  15,000 streams a core, ~480x Rancher Fleet's 31 clusters a vCPU (agents' own CPU on the same cores).
- ``state --clusters 100000``, PostgreSQL and SQLite side by side (load 14 falling to 1): PostgreSQL
  first release 26.9 s (last session 93 s; the trust layer's heartbeat and batched rows), next 27.7 s
  (10,829 rows/s), replicas' cold start 2.6-2.8 s, catch-up 12.1-12.9 s after the commit, report burst
  23,125/s, 100,000 reports a minute flushed per replica per second in 26/583/995 ms (p50/p99/max);
  SQLite first release 19.3 s, next 20.8 s (14,431 rows/s), catch-up 4.8-5.4 s, burst 123,243/s, flush
  8/25/32 ms. Both commit inside the 15 s lease (renewed by the heartbeat during the publish). 100,000
  clusters on 2 cores: 50,000 a core, 1,600x Fleet.

Peer: Rancher Fleet documents 500 clusters per 16 vCPU (31 per vCPU); ratios are per core of
this machine (``uptime`` load printed beside each figure: the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import json
import os
import pathlib
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import fleet  # noqa: E402 - bench/fleet.py: simulated agents, bundle, process helpers
from fleet import ENV, FLEET_CLUSTERS_PER_VCPU, Proc, cluster_name, make_bundle, uptime  # noqa: E402

from skerry.hub.admission import ADMISSION_BURST, ADMISSION_RATE  # noqa: E402

DSN_ENV = "SKERRY_HUB_STATE_DSN"  # how hub and replica processes get the DSN (never on a command line)
CORES = os.cpu_count() or 1
# Agents' reports a minute the floor asks the state to take.
REPORTS_PER_MINUTE = 100_000


def say(**kw) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def quantiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    v = sorted(values)
    return " / ".join(f"{v[int(q * (len(v) - 1))] * 1000:.0f}" for q in (0.5, 0.99, 1.0)) + " ms (p50/p99/max)"


# --- the hub's state parts, as app.py wires them ----------------------------------------------


class Parts:
    """Writer, trust repository in the state and store: what one hub process holds (``HubApp._start_trust``)."""

    def __init__(self, state, trust_dir: pathlib.Path, holder: str, *, ttl: float, serve_only: bool = False):
        from skerry.hub.bundles.store import BUNDLE_RECORD, HubStore
        from skerry.hub.state.trust_files import TrustFiles
        from skerry.hub.trust.repository import TrustRepository
        from skerry.hub.writer import Releases, Writer

        self.state = state
        self.writer = Writer(state, holder, ttl=ttl)
        if not serve_only:
            self.writer.try_acquire()  # as a hub does before opening its trust repository
        self.files = TrustFiles(state, None if serve_only else self.writer)
        if serve_only:
            self.repo = TrustRepository(trust_dir, storage=self.files, online={})
        else:
            key = trust_dir / "offline" / f"release-{ENV}-1.key"
            self.repo = TrustRepository.open(trust_dir, release_keys=[(ENV, str(key))], storage=self.files)
        self.store = HubStore(director=self.repo, environment_of=lambda cluster: ENV,
                              releases=Releases(self.writer, journal=self.files))
        with state.read() as tx:
            released = tx.records(BUNDLE_RECORD)
        self.store.restore(released, self.files.blob)
        if self.writer.is_writer:
            self.repo.refresh()

    def follower(self):
        from skerry.hub.replica import Follower

        return Follower(self.state, self.store, self.repo, blob=self.files.blob, writer=self.writer)


def init_trust(directory: pathlib.Path) -> pathlib.Path:
    from skerry.hub.trust import admin

    admin.init(directory, {ENV: (1, 1)})
    return directory


def open_backend(backend: str, where: str):
    """``where``: the SQLite file, or (PostgreSQL) unused: the DSN is in ``$SKERRY_HUB_STATE_DSN``."""
    from skerry.hub.state import open_state

    if backend == "sqlite":
        return open_state(f"sqlite:///{where}", state_dir=pathlib.Path(where).parent)
    return open_state("postgresql", state_dir=pathlib.Path(tempfile.gettempdir()), dsn=os.environ[DSN_ENV])


def report_of(cluster: str, release: int, digest: str, now: _dt.datetime):
    """One agent's status report as the hub's status board keeps it (no per-object list: not stored)."""
    from skerry.hub.status import ClusterStatus, Condition

    return ClusterStatus(
        cluster=cluster, applied_version=release, applied_digest=digest, revision="bench", agent_version="bench",
        conditions=(Condition("Verified", "True", "Verified"), Condition("Applied", "True", "Applied", "4 objects"),
                    Condition("Ready", "True", "Healthy", "all objects healthy")),
        observed_unix_ms=int(now.timestamp() * 1000), received_at=now)


# --- part 1: the state simulation -------------------------------------------------------------


class LeaseKeeper:
    """Renews the writer lease from its own thread every TTL/3, as ``Writer.hold`` does beside a publish."""

    def __init__(self, writer):
        self.writer = writer
        self.lost: str | None = None
        self.failed: list[str] = []  # renewals the database refused (retried)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from skerry.hub.state import Fenced, StateUnavailable

        while not self._stop.wait(self.writer.ttl / 3):
            try:
                self.writer.renew()
            except Fenced as e:
                self.lost = str(e)
                return
            except StateUnavailable as e:  # retried, as Writer.hold does (e.g. a lock timeout)
                self.failed.append(str(e))

    def stop(self) -> None:
        self._stop.set()


def table_rows(state, table: str) -> int:
    with state.read() as tx:
        return int(tx._run(f"SELECT COUNT(*) FROM {table}", ())[0][0][0])  # bench-only look at row counts


def publish(parts: Parts, clusters: list[str], tag: str) -> dict:
    """One fleet-wide release through the writer's code; what it wrote and how long it took."""
    from skerry.hub.bundles.builder import content_digest
    from skerry.hub.state import Fenced

    bundle = make_bundle(100, tag)
    data, content = bundle.encode(), content_digest(bundle)  # the render's output: excluded
    before = {t: table_rows(parts.state, t) for t in ("trust_files", "blobs")}
    with parts.state.read() as tx:
        seq0 = tx.last_change()
    t0, c0 = time.time(), time.process_time()
    try:
        released = parts.store.publish_shared(clusters, bundle, encoded=data, content=content)
    except Fenced as e:
        return {"fenced": str(e), "seconds": time.time() - t0}
    t1 = time.time()
    with parts.state.read() as tx:
        seq1 = tx.last_change()
    files = {t: table_rows(parts.state, t) - before[t] for t in before}
    # per released cluster: its counter, its bundle record, its change-log entry (+ the sequence row)
    rows = 3 * len(released) + files["trust_files"] + files["blobs"]
    return {"released": len(released), "seconds": t1 - t0, "cpu": time.process_time() - c0, "rows": rows,
            "trust_files": files["trust_files"], "t_commit": t1, "seq0": seq0, "seq1": seq1}


def state_bench(args) -> int:
    from skerry.core import logging as skerry_logging
    from skerry.testing.postgres import PostgresServer

    skerry_logging.configure("warning")
    print(f"state simulation: {args.clusters} clusters, {args.replicas} serving replicas, {CORES} cores, {uptime()}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="skerry-fleet-ha-") as tmp:
        d = pathlib.Path(tmp)
        server = PostgresServer(d / "pg", settings={"fsync": "on", "max_connections": "100"}).start()
        try:
            os.environ[DSN_ENV] = server.create_database("bench")
            for backend in args.backends.split(","):
                print(f"\n== {backend} ==")
                results[backend] = state_backend(args, backend, d / backend)
        finally:
            server.stop()
    print("\n== side by side ==")
    for backend, r in results.items():
        print(f"{backend:>10}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
    per_core = args.clusters / CORES
    print(f"peer: Rancher Fleet sizes 500 clusters at 16 vCPU ({FLEET_CLUSTERS_PER_VCPU:.0f}/vCPU); this state "
          f"carried {args.clusters} clusters' releases and reports on {CORES} cores ({per_core:.0f}/core): "
          f"{per_core / FLEET_CLUSTERS_PER_VCPU:.0f}x, {uptime()}")
    return 0


def state_backend(args, backend: str, d: pathlib.Path) -> dict:
    from skerry.hub.reports import ReportJournal

    d.mkdir(parents=True)
    where = str(d / "hub.db")
    trust = init_trust(d / "trust")
    state = open_backend(backend, where)
    parts = Parts(state, trust, "bench-writer", ttl=args.lease_ttl)
    keeper = LeaseKeeper(parts.writer)
    clusters = [cluster_name(i) for i in range(args.clusters)]
    parts.store.declare(clusters)
    out: dict[str, str] = {}
    first = publish(parts, clusters, "v1")
    if "fenced" in first:
        ttl = max(600.0, 10 * first["seconds"])
        print(f"FINDING: first release REFUSED after {first['seconds']:.1f} s: {first['fenced']} -- a fleet-wide "
              f"publish longer than the writer lease TTL ({args.lease_ttl:.0f} s) can never commit (renewal "
              f"waits for the publishing transaction); measuring on with a lease TTL of {ttl:.0f} s")
        out["release within lease TTL"] = f"no (fenced after {first['seconds']:.0f} s)"
        keeper.stop()
        parts.writer.ttl = ttl
        parts.writer.try_acquire()
        keeper = LeaseKeeper(parts.writer)
        first = publish(parts, clusters, "v1")
    print(f"first release of {first['released']} clusters (new counters and records): {first['seconds']:.1f} s, "
          f"{first['rows']} rows ({first['rows'] / first['seconds']:.0f} rows/s; {first['trust_files']} TUF files), "
          f"writer CPU {first['cpu']:.1f} s, {uptime()}")
    out["first release"] = f"{first['seconds']:.1f} s"
    me = [sys.executable, str(pathlib.Path(__file__).resolve())]
    replicas = [Proc([*me, "_replica", "--backend", backend, "--where", where, "--dir", str(d / f"replica-{i}")])
                for i in range(args.replicas)]
    try:
        ready = [r.read() for r in replicas]
        print("replicas' cold start (reload every bundle record and the TUF files): "
              + ", ".join(f"{x['reload']:.1f} s" for x in ready) + f" for {ready[0]['clusters']} clusters, {uptime()}")
        second = publish(parts, clusters, "v2")
        if "fenced" in second:
            print(f"next release REFUSED after {second['seconds']:.1f} s: {second['fenced']}")
            return {**out, "next release": "fenced"}
        print(f"next fleet-wide release ({second['released']} clusters, counters and records updated): "
              f"{second['seconds']:.1f} s, {second['rows']} rows ({second['rows'] / second['seconds']:.0f} rows/s), "
              f"writer CPU {second['cpu']:.1f} s, {uptime()}")
        out["next release"] = f"{second['seconds']:.1f} s ({second['rows'] / second['seconds']:.0f} rows/s)"
        caught = [r.ask(f"when {second['seq1']}") for r in replicas]
        lag = [c["t"] - second["t_commit"] for c in caught]
        print(f"replicas caught up with the release ({second['seq1'] - second['seq0']} change-log entries) "
              + ", ".join(f"{x:.1f} s" for x in lag) + " after its commit (change-log reads "
              + ", ".join(f"{c['read']:.1f}" for c in caught) + " s; record reads + adopt "
              + ", ".join(f"{c['apply']:.1f}" for c in caught) + f" s), {uptime()}")
        out["replica catch-up"] = f"max {max(lag):.1f} s"
        journal = ReportJournal(state)
        now = _dt.datetime.now(_dt.UTC)
        for c in clusters:
            journal.note(report_of(c, 2, "sha256:bench", now), ("sha256:bench", now))
        t0 = time.time()
        stored = journal.flush()
        burst = time.time() - t0
        print(f"report burst: {stored} reports in one flush {burst:.1f} s ({stored / burst:.0f} reports/s; "
              f"the floor asks {REPORTS_PER_MINUTE / 60:.0f}/s), {uptime()}")
        out["report burst"] = f"{stored / burst:.0f}/s"
        share = -(-args.clusters // args.replicas)
        rate = REPORTS_PER_MINUTE / 60 / args.replicas
        for i, r in enumerate(replicas):
            r.send(f"reports {rate} {args.report_seconds} {i * share} {min(share, args.clusters - i * share)}")
        reps = [r.read() for r in replicas]
        noted = sum(x["noted"] for x in reps)
        stored = sum(x["stored"] for x in reps)
        backlog = sum(x["backlog"] for x in reps)
        flushes = [v for x in reps for v in x["flush"]]
        print(f"{REPORTS_PER_MINUTE} reports a minute for {args.report_seconds:.0f} s over {args.replicas} replicas: "
              f"{noted} noted, {stored} rows stored (a cluster's reports within one flush collapse to its newest); "
              f"left for the last flush {backlog}; one flush per replica per second: {quantiles(flushes)}, {uptime()}")
        out["100k reports/min"] = f"flush {quantiles(flushes)}"
    finally:
        for r in replicas:
            r.kill()
        keeper.stop()
        if keeper.lost:
            print(f"note: the writer lease was lost during the run: {keeper.lost}")
        if keeper.failed:
            print(f"note: {len(keeper.failed)} lease renewals failed during the run, e.g. {keeper.failed[0]}")
        state.close()
    return out


async def replica_main(args) -> None:
    """One serving replica: reload, then follow the change log; answers ``when SEQ`` and ``reports ...``."""
    from skerry.core import logging as skerry_logging
    from skerry.hub.reports import FLUSH_SECONDS, ReportJournal
    from skerry.hub.state.feed import ChangeFeed

    skerry_logging.configure("error")
    d = pathlib.Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    state = open_backend(args.backend, args.where)
    parts = Parts(state, d / "trust", f"replica-{os.getpid()}", ttl=15, serve_only=True)
    follower = parts.follower()
    feed = await asyncio.to_thread(ChangeFeed, state)
    t0 = time.time()
    await follower.reload()
    say(event="ready", reload=time.time() - t0, clusters=len(parts.store.clusters()))
    progress = {"seq": feed.seq, "t": time.time(), "read": 0.0, "apply": 0.0}
    moved = asyncio.Event()

    async def follow() -> None:
        while True:  # ChangeFeed.wait, in its two steps: the wake-up, then the change-log read
            await asyncio.to_thread(state.wait_for_changes, 1.0)
            r0 = time.time()
            changes = await asyncio.to_thread(feed.poll)
            r1 = time.time()
            await follower.apply(changes)
            if changes:
                progress.update(seq=feed.seq, t=time.time(), read=progress["read"] + r1 - r0,
                                apply=progress["apply"] + time.time() - r1)
                moved.set()

    task = asyncio.create_task(follow())  # noqa: F841 - runs until the process ends
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd, *rest = line.decode().split()
        if cmd == "when":
            while progress["seq"] < int(rest[0]):
                moved.clear()
                await moved.wait()
            say(event="caught", **progress)
            progress.update(read=0.0, apply=0.0)
        elif cmd == "reports":
            journal = ReportJournal(state)
            say(event="reports", **await sustained_reports(journal, float(rest[0]), float(rest[1]), int(rest[2]),
                                                           int(rest[3]), FLUSH_SECONDS))


async def sustained_reports(journal, rate: float, seconds: float, first: int, count: int, every: float) -> dict:
    """Note ``rate`` reports a second (clusters ``first``..) for ``seconds``; flush every ``every`` in a thread."""
    flushes: list[float] = []
    stored = noted = 0
    stop = threading.Event()

    def flusher() -> None:
        nonlocal stored
        while not stop.wait(every):
            t = time.time()
            stored += journal.flush()
            flushes.append(time.time() - t)

    thread = threading.Thread(target=flusher)
    thread.start()
    t0 = time.time()
    tick = 0.05
    while (elapsed := time.time() - t0) < seconds:
        due = int(elapsed * rate) - noted
        now = _dt.datetime.now(_dt.UTC)
        for _ in range(max(0, due)):
            cluster = cluster_name(first + noted % count)
            journal.note(report_of(cluster, 3, "sha256:bench", now), ("sha256:bench", now))
            noted += 1
        await asyncio.sleep(tick)
    stop.set()
    thread.join()
    backlog = len(journal._pending)  # bench-only: noted since the last flush (at most a second's worth)
    stored += journal.flush()
    return {"noted": noted, "stored": stored, "backlog": backlog, "flush": flushes}



def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("state", help="the 100,000-cluster state simulation (SQLite and PostgreSQL)")
    s.add_argument("--clusters", type=int, default=100_000)
    s.add_argument("--replicas", type=int, default=3, help="serving replica processes following the state")
    s.add_argument("--report-seconds", type=float, default=60.0, help="how long 100,000 reports a minute run")
    s.add_argument("--backends", default="sqlite,postgresql")
    s.add_argument("--lease-ttl", type=float, default=None,
                   help="writer lease TTL (default: the hub's, skerry.hub.writer.DEFAULT_LEASE_TTL)")
    r = sub.add_parser("replicas", help="hub processes on one PostgreSQL with simulated agent streams")
    r.add_argument("--agents", type=int, default=2000, help="simulated agents across all replicas (floor: 30,000)")
    r.add_argument("--hubs", type=int, default=3)
    r.add_argument("--workers", type=int, default=4, help="processes of full verifiers")
    r.add_argument("--verifiers", type=int, help="agents that run the full TufVerifier; the rest are stream "
                   "holders (bench/fleet_ha_holders.py; default: every agent a full verifier)")
    r.add_argument("--holders-per-process", type=int, default=5000,
                   help="stream holders per process (each holds a connection: under the open-file limit)")
    r.add_argument("--lease-ttl", type=float, default=None, help="writer lease TTL (default: the hub's)")
    r.add_argument("--timeout", type=float, default=1200.0)
    r.add_argument("--min-free-gib", type=float, default=2.0,
                   help="stop (with what was measured) when the machine's available memory falls below this")
    r.add_argument("--ramp", type=float, help="agents start spread over this many seconds (default N/500)")
    r.add_argument("--admission-rate", type=float, default=ADMISSION_RATE,
                   help="new streams a hub admits a second (skerry.hub.admission; 0: no gate, as before issue #14)")
    r.add_argument("--admission-burst", type=float, default=ADMISSION_BURST)
    r.add_argument("--skip-fanout", action="store_true", help="kill a serving replica right after the connect")
    r.add_argument("--stop-after-serving-kill", action="store_true",
                   help="end after the serving replica's agents are back (skip the writer kill)")
    rep = sub.add_parser("_replica")
    rep.add_argument("--backend", required=True)
    rep.add_argument("--where", required=True)
    rep.add_argument("--dir", required=True)
    ho = sub.add_parser("_holders")
    for flag in ("--dir", "--hubs", "--first", "--count", "--ramp"):
        ho.add_argument(flag, required=True, type={"--first": int, "--count": int, "--ramp": float}.get(flag, str))
    h = sub.add_parser("_hub")
    h.add_argument("--dir", required=True)
    h.add_argument("--trust", required=True)
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--clusters", type=int, required=True)
    h.add_argument("--hub-id", required=True)
    h.add_argument("--lease-ttl", type=float, required=True)
    h.add_argument("--admission-rate", type=float, required=True)
    h.add_argument("--admission-burst", type=float, required=True)
    args = p.parse_args()
    if getattr(args, "lease_ttl", 0) is None:
        from skerry.hub.writer import DEFAULT_LEASE_TTL

        args.lease_ttl = DEFAULT_LEASE_TTL
    fleet.raise_nofile()
    if args.role == "state":
        return state_bench(args)
    if args.role == "_replica":
        asyncio.run(replica_main(args))
        return 0
    if args.role == "_holders":
        from fleet_ha_holders import holders_main

        asyncio.run(holders_main(args))
        return 0
    from fleet_ha_hubs import hub_main, replicas_bench  # part 2 (a module of its own: size)

    if args.role == "_hub":
        asyncio.run(hub_main(args))
        return 0
    return replicas_bench(args)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
