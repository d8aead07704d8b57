"""bench/fleet_ha.py ``replicas``: hub processes on one PostgreSQL with simulated agent streams (see fleet_ha.py)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import sys
import tempfile
import time

import fleet
from fleet import FLEET_CLUSTERS_PER_VCPU, Proc, cluster_name, make_bundle, uptime
from fleet_ha import CORES, DSN_ENV, Parts, init_trust, open_backend, say

# A wait longer than this prints its progress (and the memory left) on the way.
PROGRESS_SECONDS = 20.0
# How often the wait after a replica kill prints open streams, refusals and load.
TIMELINE_SECONDS = 5.0


def load1() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def available_gib() -> float:
    """The machine's memory available to new work (``MemAvailable``): the bench stops before it runs out."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return 0.0


async def hub_main(args) -> None:
    """One hub process on the shared PostgreSQL: serves agents; writes while it holds the lease."""
    from skerry.core import logging as skerry_logging
    from skerry.core.openfiles import raise_open_files
    from skerry.hub.admission import AdmissionGate
    from skerry.hub.enrollment.service import Enrollment
    from skerry.hub.writer import Duties

    skerry_logging.configure("warning")
    raise_open_files()  # as a hub process does (hub.app.run): the gate derives its cap on streams from the limit
    d = pathlib.Path(args.dir)
    state = await asyncio.to_thread(open_backend, "postgresql", "")
    parts = await asyncio.to_thread(Parts, state, pathlib.Path(args.trust), args.hub_id, ttl=args.lease_ttl)
    enrollment = Enrollment.open(d / "hub", state)
    follower = parts.follower()
    became: list[float] = []  # when this process became the writer (each term)

    async def start_duties() -> list[asyncio.Task]:
        if duties.terms > 1 or became:  # taking over: drop what a lost term signed, read the state as it is
            parts.repo.reset()
            await follower.reload()
        became.append(time.time())
        return []

    async def stop_duties() -> None:
        pass

    duties = Duties(parts.writer, start_duties, stop_duties)
    clusters = [cluster_name(i) for i in range(args.clusters)]

    server, servicer = fleet.hub_server(d, args.port, parts.store, parts.repo, enrollment)
    if args.admission_rate > 0:  # as HubApp wires it (0: no admission gate, no spread: the hub before issue #14's fix)
        servicer.admission = AdmissionGate(args.admission_rate, args.admission_burst)
    await server.start()
    tasks = [asyncio.create_task(follower.run()), asyncio.create_task(duties.run())]  # noqa: F841 - kept alive
    say(event="ready", rss_kib=fleet._rss_kib(), writer=parts.writer.is_writer)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd, _, arg = line.decode().strip().partition(" ")
        if cmd == "stats":
            lease = parts.writer.lease
            gate = servicer.admission
            say(event="stats", streams=len(servicer.streams), rss_kib=fleet._rss_kib(), cpu=sum(os.times()[:2]),
                admitted=gate.admitted if gate else 0, refused=gate.refused if gate else 0,
                full=gate.full if gate else 0,
                writer=lease is not None, epoch=lease.epoch if lease else 0, became=became[-1] if became else 0,
                caught_up=follower.caught_up)
        elif cmd == "publish":  # the writer's sync loop publishing one commit (render excluded)
            bundle = make_bundle(100, arg)
            t0 = time.time()
            try:
                parts.store.publish_shared(clusters, bundle)
            except Exception as e:  # noqa: BLE001 - reported to the orchestrator
                say(event="refused", error=f"{type(e).__name__}: {e}")
                continue
            floor = min(parts.store.current(c).release for c in clusters)
            say(event="published", t0=t0, t1=time.time(), release_floor=floor)
    await server.stop(0)


class Hubs:
    """The hub processes: start, ask, SIGKILL, restart on the same port."""

    def __init__(self, args, d: pathlib.Path, env_dsn: str):
        self.args, self.d = args, d
        self.ports = [fleet.free_port() for _ in range(args.hubs)]
        self.procs: list[Proc | None] = [None] * args.hubs
        self.env = {**os.environ, DSN_ENV: env_dsn}

    def start(self, i: int) -> dict:
        trust = self.d / f"trust-{i}"  # each replica its own copy of the trust directory (its keys)
        if not trust.exists():
            shutil.copytree(self.d / "hub" / "trust", trust)
        me = [sys.executable, str(pathlib.Path(__file__).resolve().parent / "fleet_ha.py")]
        argv = [*me, "_hub", "--dir", str(self.d), "--trust", str(trust), "--port", str(self.ports[i]),
                "--clusters", str(self.args.agents), "--hub-id", f"hub-{i}", "--lease-ttl", str(self.args.lease_ttl),
                "--admission-rate", str(self.args.admission_rate), "--admission-burst", str(self.args.admission_burst)]
        self.procs[i] = Proc(argv, env=self.env)
        return self.procs[i].read()

    def live(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.p.poll() is None]

    def stats(self) -> dict[int, dict]:
        return {i: self.procs[i].ask("stats") for i in self.live()}

    def writer(self) -> int | None:
        return next((i for i, s in self.stats().items() if s["writer"]), None)

    def kill(self, i: int) -> float:
        self.procs[i].kill()
        return time.time()

    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def stop(self) -> None:
        for i in self.live():
            self.procs[i].kill()


def replicas_bench(args) -> int:
    from skerry.core.tls import ROLE_HUB, CertificateAuthority, write_keypair
    from skerry.hub.enrollment.authority import AgentAuthority
    from skerry.testing.postgres import PostgresServer

    n = args.agents
    full = n if args.verifiers is None else min(args.verifiers, n)
    print(f"replicas: {args.hubs} hub processes on one PostgreSQL; {n} streams: {full} full verifiers + {n - full} "
          f"stream holders (real identity and stream, digest-checked, no TUF refresh); lease TTL "
          f"{args.lease_ttl:.0f} s, {CORES} cores, {uptime()}")
    with tempfile.TemporaryDirectory(prefix="skerry-fleet-ha-") as tmp:
        d = pathlib.Path(tmp)
        server = PostgresServer(d / "pg", settings={"max_connections": "200"}).start()
        hubs = Hubs(args, d, server.create_database("bench"))
        workers: list[Proc] = []
        agent_state = tempfile.mkdtemp(prefix="skerry-fleet-ha-agents-", dir="/dev/shm")
        try:
            ca = CertificateAuthority.create("bench-ca")
            (d / "pki").mkdir()
            (d / "pki" / "ca.crt").write_bytes(ca.cert_pem)
            write_keypair(d / "pki", "hub", ca.issue("hub", role=ROLE_HUB, server_names=("127.0.0.1",), client=False))
            init_trust(d / "hub" / "trust")
            AgentAuthority.load_or_create(d / "hub" / "enrollment")  # one agent CA for every replica
            t = time.time()
            hubs.start(0)  # the first takes the lease and makes the first release of every cluster
            pub = hubs.procs[0].ask("publish v1")
            if pub["event"] != "published":
                raise SystemExit(f"first release refused: {pub}")
            ready = [hubs.start(i) for i in range(1, args.hubs)]
            print(f"{args.hubs} hubs up, {n} clusters released by hub-0 in {pub['t1'] - pub['t0']:.1f} s, "
                  f"{time.time() - t:.1f} s in all, {uptime()}")
            base = hubs.stats()
            ramp = args.ramp if args.ramp is not None else n / 500
            workers = start_agents(args, tmp, agent_state, hubs.addresses(), full, ramp)
            waits = Waits(args, hubs, workers, n)
            t0 = time.time()
            reps = waits.verified(1, t0, "initial connect")
            print(f"all {n} agents connected, holding their bundle ({full} verified in full): {time.time() - t0:.1f} s"
                  f" (started over {ramp:.0f} s), {uptime()}, {available_gib():.1f} GiB available")
            time.sleep(2)
            print_memory(hubs, base, [wk.ask("report 0") for wk in workers], workers)
            del ready, reps
            if not args.skip_fanout:
                waits.fanout(hubs.writer(), "v2", "fan-out of one release across replicas")
            serving = next(i for i in hubs.live() if i != hubs.writer())
            before = hubs.stats()
            pre = [wk.ask("report 0") for wk in workers]
            moving = before[serving]["streams"]
            t_kill = hubs.kill(serving)
            back = waits.streams(n, t_kill, "after a serving replica was SIGKILLed", timeline=True)
            after = hubs.stats()
            refused = sum(s["refused"] - before[i]["refused"] for i, s in after.items())
            print(f"serving replica hub-{serving} SIGKILLed ({moving} streams on it): all {n} streams open on the "
                  f"others {back:.1f} s later; peak open streams {waits.peak}, lowest {waits.low} after the kill; "
                  f"refused by admission {refused} (rate {args.admission_rate:g}/s, burst {args.admission_burst:g} "
                  f"per hub; 0: no gate); load peak {waits.peak_load:.1f}, {uptime()}")
            reconnects = [wk.ask("report 0") for wk in workers]
            kinds: dict[str, int] = {}
            for r in reconnects:
                for kind, count in r.get("last_errors", {}).items():
                    kinds[kind] = kinds.get(kind, 0) + count
            print(f"  stream holders' reconnects since they started: {sum(r.get('reconnects', 0) for r in reconnects)}"
                  f" (before the kill: {sum(r.get('reconnects', 0) for r in pre)}); their last interruption by kind: "
                  f"{kinds}")
            if args.stop_after_serving_kill:
                return 0
            hubs.start(serving)  # back as an empty replica (agents stay where they are until they reconnect)
            old = hubs.writer()
            t_kill = hubs.kill(old)
            new, back = None, None
            while new is None or back is None:  # both watched at once: streams come back before the lease
                if available_gib() < args.min_free_gib or time.time() - t_kill > args.timeout:
                    streams = {f"hub-{i}": s["streams"] for i, s in hubs.stats().items()}
                    raise SystemExit(f"after the writer was SIGKILLed: writer {new}, streams back {back} "
                                     f"(open: {streams}; agents {sum(streams.values())} of {n})")
                time.sleep(0.1)
                stats = hubs.stats()
                new = next((i for i, s in stats.items() if s["writer"]), None)
                if back is None and sum(s["streams"] for s in stats.values()) >= n:
                    back = time.time() - t_kill
            became = stats[new]["became"]
            print(f"writer hub-{old} SIGKILLed: hub-{new} writer {became - t_kill:.1f} s later (lease TTL "
                  f"{args.lease_ttl:.0f} s); all {n} streams open again {back:.1f} s after the kill, {uptime()}")
            waits.fanout(new, "v3", "first release of the new writer")
            per_core = n / CORES
            print(f"peer: Rancher Fleet sizes 500 clusters at 16 vCPU ({FLEET_CLUSTERS_PER_VCPU:.0f}/vCPU); "
                  f"{args.hubs} replicas held {n} agent streams ({full} full verifiers + {n - full} stream holders) "
                  f"on {CORES} shared cores ({per_core:.0f}/core, agents' own CPU included): "
                  f"{per_core / FLEET_CLUSTERS_PER_VCPU:.0f}x; the floor is 30,000 streams; {uptime()}, "
                  f"{available_gib():.1f} GiB available")
        finally:
            for wk in workers:
                wk.kill()
            hubs.stop()
            server.stop()
            shutil.rmtree(agent_state, ignore_errors=True)
    return 0


def start_agents(args, tmp: str, agent_state: str, addresses: str, full: int, ramp: float) -> list[Proc]:
    """Clusters 0..``full`` as full verifiers in ``--workers`` processes (bench/fleet.py's), the rest as
    stream holders (bench/fleet_ha_holders.py) in processes of ``--holders-per-process``; once all are up."""
    n, here = args.agents, pathlib.Path(__file__).resolve().parent
    step = max(1, -(-full // args.workers))
    spans = [(first, min(first + step, full)) for first in range(0, full, step)]
    holders = [(first, min(first + args.holders_per_process, n)) for first in range(full, n, args.holders_per_process)]
    common = ["--dir", tmp, "--hubs", addresses, "--ramp", str(ramp)]
    workers = [Proc([sys.executable, str(here / "fleet.py"), "_agents", "--state", agent_state, "--port", "0",
                     "--first", str(a), "--count", str(b - a), *common]) for a, b in spans]
    workers += [Proc([sys.executable, str(here / "fleet_ha.py"), "_holders", "--first", str(a), "--count", str(b - a),
                      *common]) for a, b in holders]
    for wk in workers:
        wk.read()
    return workers


def print_memory(hubs: Hubs, base: dict[int, dict], reps: list[dict], workers: list[Proc]) -> None:
    """Each replica's RSS per stream (delta over its open streams); the holder processes' RSS per holder,
    as it is and after they return freed heap (``malloc_trim``, which they also do every few seconds)."""
    for i, s in hubs.stats().items():
        per = (s["rss_kib"] - base[i]["rss_kib"]) / max(1, s["streams"])
        print(f"  hub-{i}{' (writer)' if s['writer'] else ''}: {s['streams']} streams, "
              f"RSS {s['rss_kib'] / 1024:.0f} MiB, {per:.1f} KiB per stream")
    held = [r for r in reps if r.get("kind") == "holders"]
    if held:
        trimmed = [wk.ask("trim") for wk, r in zip(workers, reps, strict=True) if r.get("kind") == "holders"]
        count = sum(r["have"] for r in held)
        per = [sum(r["rss_kib"] - r["base_rss_kib"] for r in rs) / max(1, count) for rs in (held, trimmed)]
        print(f"  stream holders (client side): {count} in {len(held)} processes, RSS "
              f"{sum(r['rss_kib'] for r in held) / 1024:.0f} MiB, {per[0]:.1f} KiB per holder, {per[1]:.1f} KiB "
              f"after malloc_trim (its TLS connection and stream, its HubClient and task; bundle bytes shared)")


class Waits:
    """Polling the hubs and agent processes until a condition holds (or ``--timeout``)."""

    def __init__(self, args, hubs: Hubs, workers: list[Proc], n: int):
        self.args, self.hubs, self.workers, self.n = args, hubs, workers, n
        self._said = time.time()  # when progress was last printed
        self.peak = self.low = 0  # open streams, highest and lowest, of the last ``streams`` wait
        self.peak_load = 0.0  # the 1-minute load average's highest, of the last ``streams`` wait

    def _check(self, since: float, what: str, have: int) -> None:
        if time.time() - since > self.args.timeout:
            raise SystemExit(f"{what}: only {have} of {self.n} after {self.args.timeout} s")
        if available_gib() < self.args.min_free_gib:
            raise SystemExit(f"{what}: stopped before the OOM killer with {have} of {self.n}: "
                             f"{available_gib():.1f} GiB available (--min-free-gib {self.args.min_free_gib})")
        if time.time() - max(self._said, since) > PROGRESS_SECONDS:
            self._said = time.time()
            print(f"  ... {what}: {have} of {self.n} after {time.time() - since:.0f} s, {uptime()}, "
                  f"{available_gib():.1f} GiB available", flush=True)

    def verified(self, floor: int, since: float, what: str, released_at: float = 0.0) -> list[dict]:
        while True:
            reps = [wk.ask(f"report {floor} {released_at}") for wk in self.workers]
            have = sum(r["have"] for r in reps)
            if have >= self.n:
                return reps
            self._check(since, what, have)
            time.sleep(0.2)

    def streams(self, target: int, since: float, what: str, *, timeline: bool = False) -> float:
        """Seconds from ``since`` until ``target`` streams are open; ``timeline``: print open streams,
        refusals and load every ``TIMELINE_SECONDS`` on the way."""
        self.peak, self.low, self.peak_load, said = 0, target, 0.0, 0.0
        while True:
            stats = self.hubs.stats()
            have = sum(s["streams"] for s in stats.values())
            self.peak, self.low = max(self.peak, have), min(self.low, have)
            self.peak_load = max(self.peak_load, load1())
            if timeline and time.time() - said >= TIMELINE_SECONDS:
                said = time.time()
                print(f"  t+{said - since:5.1f} s: open " + ", ".join(f"hub-{i} {s['streams']}" for i, s in stats.items())
                      + f" = {have}; refused " + ", ".join(f"hub-{i} {s['refused']}" for i, s in stats.items())
                      + f"; {uptime()}", flush=True)
            if have >= target:
                return time.time() - since
            self._check(since, what, have)
            time.sleep(0.2)

    def fanout(self, writer: int, tag: str, label: str) -> None:
        pub = self.hubs.procs[writer].ask(f"publish {tag}")
        if pub["event"] != "published":
            raise SystemExit(f"{label}: refused: {pub}")
        reps = self.verified(pub["release_floor"], pub["t0"], label, pub["t1"])
        last = max(r["max_recv"] for r in reps)
        lat = [r["lat_ms"] for r in reps if r["lat_ms"]]
        refused = {k: sum(r["refused"].get(k, 0) for r in reps) for r in reps for k in r["refused"]}
        kinds = {}  # when the last of each kind took the release
        for r in reps:
            kinds[r.get("kind", "verifiers")] = max(kinds.get(r.get("kind", "verifiers"), 0), r["max_recv"])
        print(f"{label} (hub-{writer} writes): publish {pub['t1'] - pub['t0']:.2f} s, taken by all {self.n} "
              f"{last - pub['t0']:.2f} s from the start of publishing ("
              + ", ".join(f"last of the {k} {t - pub['t0']:.2f} s" for k, t in sorted(kinds.items()))
              + "); per agent from the commit p50 "
              f"{max(x[0] for x in lat):.0f} ms, p99 {max(x[1] for x in lat):.0f} ms, max {max(x[2] for x in lat):.0f} ms;"
              f" refused {refused or 'none'}, {uptime()}")
