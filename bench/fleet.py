"""Fleet simulator: one hub process, N simulated agents with real mTLS identities, over loopback.

    .venv/bin/python bench/fleet.py [--agents 10000] [--workers 4] [--bundle-kib 100] [--idle 10]

What runs (nothing is mocked; only Git and rendering are left out, the hub
publishes bundles straight into its store as its sync loop would):

* the hub in TUF mode: a ``TrustRepository`` made by ``skerry keys init``
  (director + one environment's release side, whose key the hub holds here as
  in ``--dev``) behind ``HubStore`` (every cluster renders the same objects, so
  one content-addressed blob, a director entry per cluster in 256 hash bins and
  a release target per cluster in 256 release bins, one snapshot per release),
  ``HubServicer`` with the enrollment gate (revocation checks), ``TrustServicer``
  (``TrustService.Fetch`` for metadata) +
  ``GrpcServer`` (the hub's options, limits, rate limiter, health,
  reflection, the interceptor) with mutual TLS trusting the hub-run agent CA;
* agents: ``--workers`` processes of ``skerry.testing.simagents`` (the same
  simulated agents the hub-replica test runs), each running its share of
  ``skerry.agent.stream.HubClient`` instances, one TLS connection and one
  certificate each (key made in the agent process, CSR signed by the hub's
  ``AgentAuthority``: the enrollment path minus the RPC). Each agent runs the
  real agent's ``TufVerifier`` (stock python-tuf ``Updater`` refresh, hash bins,
  the Uptane agreement rule, release counter, the streamed blob checked against
  the release target; a fetch that failed because the hub was gone is retried)
  with its trusted metadata in its own directory under /dev/shm.
  Simplification: the TUF metadata fetches of one agent process go over
  one mTLS channel (one agent's certificate; metadata is fleet-public) instead of
  a channel per agent and refresh, and the verifications of a process run one at
  a time on one thread. The agents share the hub's 2 cores, so the fan-out figure
  includes 10,000 agents' verification CPU; the CPU line splits hub, agents and
  the agents' TUF verification. ``--split`` times the hub's sending apart: agents note
  each event as it arrives and verify only once every agent has its event.

It prints: time for all N to connect; hub memory per stream (RSS delta over
the open streams); hub CPU while idle; time for a new ``--bundle-kib`` bundle
(a new release for every cluster) to reach all N, from the start of
publishing and per agent from its own release; a reconnect storm after the
hub is killed (SIGKILL) and restarted on the same port (time until all N
streams are open again, agents resuming from their last version so nothing is
re-sent); and a second fan-out after the storm. ``uptime`` load is printed
next to the figures (the machine may be shared). Hub memory is printed as RSS
and as RSS after ``malloc_trim(0)`` (measured: glibc holds back almost
nothing, so the hub does not trim). ``--profile DIR`` profiles the first
fan-out, ``--tracemalloc`` the hub's Python heap per stream.

Peers: Rancher Fleet documents 500 clusters on 16 vCPU (31 clusters per vCPU);
argocd-agent publishes no figure beyond "hundreds of agents".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

# the agent processes; Proc: a child answering command lines with JSON lines (the hub and the agents)
from skerry.testing import simagents  # noqa: E402
from skerry.testing.simagents import CommandProcess as Proc  # noqa: E402
from skerry.testing.simagents import raise_nofile  # noqa: E402

FLEET_CLUSTERS_PER_VCPU = 500 / 16
HUB_CORES = 2


def cluster_name(i: int) -> str:
    return f"c{i:05d}"


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- the hub process ------------------------------------------------------------------------


def make_bundle(kib: int, tag: str):
    """The bundle every simulated cluster renders to: one ConfigMap of ``kib`` KiB, naming no cluster.

    Published as one shared blob (``HubStore.publish_shared``): what the hub does when many clusters
    render the same objects; each cluster gets its own director entry and release target.
    """
    import hashlib

    from skerry.core.bundle import SHARED_CLUSTER, Bundle

    seed = hashlib.sha256(tag.encode()).hexdigest()
    payload = (seed * (kib * 1024 // len(seed) + 1))[: kib * 1024]
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "payload", "namespace": "bench"},
        "data": {"payload": payload, "tag": tag},
    }
    return Bundle(cluster=SHARED_CLUSTER, revision=hashlib.sha1(tag.encode()).hexdigest(), source_url="file:///bench",
                  paths=("bench",), engine="plain", engine_version="0", objects=(cm,))


ENV = "bench"  # the one environment every simulated cluster belongs to


_PROFILER = None


def _profile(directory: str, stem: str) -> None:
    """``--profile DIR``: cProfile each process over the first fan-out, stats written to DIR/<role>-<pid>.prof."""
    global _PROFILER
    import cProfile

    if _PROFILER is None:
        _PROFILER = cProfile.Profile()
        _PROFILER.enable()
    else:
        _PROFILER.disable()
        _PROFILER.dump_stats(str(pathlib.Path(directory) / f"{stem}.prof"))
        _PROFILER = None


def _option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, int(value) if value.lstrip("-").isdigit() else value


def _malloc_trim() -> None:
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)


def hub_server(d: pathlib.Path, port: int, store, repo, enrollment, options=()):
    """The hub's serving stack on ``port``: ``HubServicer`` (with the enrollment gate) and ``TrustServicer``
    behind ``GrpcServer`` with mutual TLS (the hub's options, limits, rate limiter, interceptor).
    Returns ``(server, servicer)``; ``options`` are extra gRPC server options (later ones win)."""
    from skerry.api.v1 import hub_pb2_grpc, trust_pb2_grpc
    from skerry.core.rpc import SERVER_OPTIONS, GrpcServer, RateLimiter
    from skerry.core.tls import TlsFiles, server_credentials
    from skerry.hub.authz import hub_rules
    from skerry.hub.promotion_policy import PromotionPolicy
    from skerry.hub.servicer import SERVICE_NAME, HubServicer
    from skerry.hub.status import StatusBoard
    from skerry.hub.trust import servicer as trust_servicer
    from skerry.hub.trust.attest import AttestationBoard

    class View:
        fleet = object()
        revision = "bench"
        fleet_error = None

    servicer = HubServicer(store, StatusBoard(), View(), revocations=enrollment.revocations)
    fetcher = trust_servicer.TrustServicer(repo, store, AttestationBoard(), lambda cluster: ENV)
    server = GrpcServer(
        f"127.0.0.1:{port}",
        server_credentials(TlsFiles(d / "pki" / "ca.crt", d / "pki" / "hub.crt", d / "pki" / "hub.key"),
                           extra_roots=enrollment.authority.ca_pem),
        register=[lambda s: hub_pb2_grpc.add_HubServiceServicer_to_server(servicer, s),
                  lambda s: trust_pb2_grpc.add_TrustServiceServicer_to_server(fetcher, s)],
        service_names=[SERVICE_NAME, trust_servicer.SERVICE_NAME],
        rules=hub_rules(PromotionPolicy),
        revocations=enrollment.revocations,
        limiter=RateLimiter(),
        options=[*SERVER_OPTIONS, *options],
    )
    return server, servicer


async def hub_main(args) -> None:
    from skerry.core import logging as skerry_logging
    from skerry.hub.bundles.builder import content_digest
    from skerry.hub.bundles.store import HubStore
    from skerry.hub.enrollment.service import Enrollment
    from skerry.hub.state import open_state
    from skerry.hub.trust import admin
    from skerry.hub.trust.repository import TrustRepository
    from skerry.hub.writer import InMemoryReleases

    raise_nofile()
    skerry_logging.configure("warning")
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    d = pathlib.Path(args.dir)
    trust_dir = d / "hub" / "trust"
    if not trust_dir.exists():
        admin.init(trust_dir, {ENV: (1, 1)})
    repo = TrustRepository.open(trust_dir, release_keys=[(ENV, str(trust_dir / "offline" / f"release-{ENV}-1.key"))])
    enrollment = Enrollment.open(d / "hub", open_state("", state_dir=d / "hub"))
    # release counters: the hub's in-memory allocator started at unix milliseconds, so a restarted hub's
    # counters stay above the killed one's (a real hub persists them: skerry.hub.writer.Releases)
    store = HubStore(director=repo, environment_of=lambda cluster: ENV,
                     releases=InMemoryReleases(start=int(time.time() * 1000)))
    repo.on_change(lambda role: store.retry_pending())
    clusters = [cluster_name(i) for i in range(args.clusters)]
    store.declare(clusters)

    store.publish_shared(clusters, make_bundle(args.kib, args.tag))
    server, servicer = hub_server(d, args.port, store, repo, enrollment, [_option(o) for o in args.server_option])
    await server.start()
    loop = asyncio.get_running_loop()

    def say(**kw) -> None:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    say(event="ready", rss_kib=_rss_kib(), cpu=sum(os.times()[:2]))
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd, _, arg = line.decode().strip().partition(" ")
        if cmd == "stats":
            say(event="stats", streams=len(servicer.streams), rss_kib=_rss_kib(), cpu=sum(os.times()[:2]),
                t=time.time())
        elif cmd == "profile":
            _profile(arg, f"hub-{os.getpid()}")
            say(event="profiled")
        elif cmd == "pyheap":
            import tracemalloc

            top = tracemalloc.take_snapshot().statistics("lineno")[:12] if tracemalloc.is_tracing() else []
            say(event="pyheap", kib=tracemalloc.get_traced_memory()[0] / 1024 if tracemalloc.is_tracing() else 0,
                top=[str(t) for t in top])
        elif cmd == "trim":
            _malloc_trim()
            say(event="trimmed", rss_kib=_rss_kib())
        elif cmd == "prepare":
            prepared = make_bundle(args.kib, arg)  # rendering, not part of the fan-out
            say(event="prepared")
        elif cmd == "publish":
            t0 = time.time()
            c0 = sum(os.times()[:2])
            data = prepared.encode()  # the blob: encoded and hashed once for all clusters
            content = content_digest(prepared)
            s0 = time.perf_counter()
            # one batch: blob stored once, 256 release bins + 256 director bins signed once, one snapshot
            store.publish_shared(clusters, prepared, encoded=data, content=content)
            signing = time.perf_counter() - s0
            floor = min(store.current(c).release for c in clusters)  # the new release every agent must reach
            say(event="published", t0=t0, t1=time.time(), signing=signing, release_floor=floor, cpu0=c0)
        elif cmd == "quit":
            break
    await server.stop(0)


# --- the agent processes --------------------------------------------------------------------


def issue_identities(d: pathlib.Path, names: list[str]) -> pathlib.Path:
    """Each of ``names`` its certificate and key under ``d/agents`` (first run only); that directory.

    The key is made here and its CSR signed by the hub's authority: the enrollment path minus the RPC."""
    from skerry.agent.enroll import make_csr
    from skerry.hub.enrollment.authority import AgentAuthority

    authority = AgentAuthority.load_or_create(d / "hub" / "enrollment")
    adir = d / "agents"
    adir.mkdir(exist_ok=True)
    for name in names:
        crt, key = adir / f"{name}.crt", adir / f"{name}.key"
        if not crt.exists():
            csr, key_pem = make_csr(name)
            key.write_bytes(key_pem)
            crt.write_bytes(authority.sign_csr(csr, name).cert_pem)
    return adir


async def agents_main(args) -> None:
    """One agent process: issue its agents' identities (first run only), then ``skerry.testing.simagents``."""
    d = pathlib.Path(args.dir)
    names = [cluster_name(i) for i in range(args.first, args.first + args.count)]
    adir = issue_identities(d, names)
    # one hub, or several replicas (bench/fleet_ha.py): each agent picks one and fails over to another
    sim = simagents.parser().parse_args([
        "--hub", args.hubs or f"127.0.0.1:{args.port}", "--identities", str(adir), "--ca", str(d / "pki" / "ca.crt"),
        "--root", str(d / "hub" / "trust" / "root.json"), "--environment", ENV, "--state", args.state,
        "--ramp", str(args.ramp)])

    def profile(arg: str) -> dict:
        _profile(arg, f"agents-{os.getpid()}")
        return {"event": "profiled"}

    await simagents.run(sim, names, channel_options=[_option(o) for o in args.channel_option],
                        extra={"profile": profile})


# --- the orchestrator -----------------------------------------------------------------------


def uptime() -> str:
    with open("/proc/loadavg") as f:
        return "load " + " ".join(f.read().split()[:3])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=4, help="agent processes")
    p.add_argument("--bundle-kib", type=int, default=100)
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    p.add_argument("--timeout", type=float, default=1200.0,
                   help="give up waiting after this long (10,000 agents' TUF refreshes share 2 cores: minutes)")
    p.add_argument("--skip-restart", action="store_true")
    p.add_argument("--restart-delay", type=float, default=0.0, help="seconds the killed hub stays down")
    p.add_argument("--server-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra gRPC server option for the hub (later options win), e.g. grpc.tsi.max_frame_size=16384")
    p.add_argument("--tracemalloc", action="store_true",
                   help="trace the hub's Python heap: Python bytes per stream (slows the hub down)")
    p.add_argument("--agent-channel-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra gRPC channel option for every agent (later options win)")
    p.add_argument("--profile", metavar="DIR", help="cProfile hub and agent processes over the first fan-out")
    p.add_argument("--ramp", type=float, help="agents start spread over this many seconds (default N/500)")
    p.add_argument("--split", action="store_true",
                   help="time the hub's sending apart: agents verify a new release only once every agent has its "
                   "event (on separate machines their verification would not take the hub's CPU)")
    sub = p.add_subparsers(dest="role")
    h = sub.add_parser("_hub")
    a = sub.add_parser("_agents")
    for q in (h, a):
        q.add_argument("--dir", required=True)
        q.add_argument("--port", type=int, required=True)
    h.add_argument("--clusters", type=int, required=True)
    h.add_argument("--kib", type=int, required=True)
    h.add_argument("--tag", required=True)
    h.add_argument("--server-option", action="append", default=[])
    h.add_argument("--tracemalloc", action="store_true")
    a.add_argument("--first", type=int, required=True)
    a.add_argument("--count", type=int, required=True)
    a.add_argument("--ramp", type=float, required=True)
    a.add_argument("--channel-option", action="append", default=[])
    a.add_argument("--hubs", default="", help="comma-separated hub replicas (default 127.0.0.1:PORT)")
    a.add_argument("--state", required=True, help="where each agent keeps its trusted TUF metadata")
    args = p.parse_args()
    if args.role == "_hub":
        asyncio.run(hub_main(args))
        return 0
    if args.role == "_agents":
        asyncio.run(agents_main(args))
        return 0
    return orchestrate(args)


def orchestrate(args) -> int:
    from skerry.core.tls import ROLE_HUB, CertificateAuthority, write_keypair

    raise_nofile()
    n, w = args.agents, max(1, args.workers)
    print(f"fleet: {n} agents in {w} processes, {args.bundle_kib} KiB bundles, {os.cpu_count()} cores, {uptime()}")
    with tempfile.TemporaryDirectory(prefix="skerry-fleet-") as tmp:
        d = pathlib.Path(tmp)
        ca = CertificateAuthority.create("bench-ca")
        (d / "pki").mkdir()
        (d / "pki" / "ca.crt").write_bytes(ca.cert_pem)
        write_keypair(d / "pki", "hub", ca.issue("hub", role=ROLE_HUB, server_names=("127.0.0.1",), client=False))
        port = free_port()
        me = [sys.executable, str(pathlib.Path(__file__).resolve())]
        hub_argv = [*me, "_hub", "--dir", tmp, "--port", str(port), "--clusters", str(n),
                    "--kib", str(args.bundle_kib),
                    *(x for o in args.server_option for x in ("--server-option", o)),
                    *(["--tracemalloc"] if args.tracemalloc else []), "--tag", "v1"]
        t = time.time()
        hub = Proc(hub_argv)
        ready = hub.read()
        print(f"hub up with {n} signed bundles in {time.time() - t:.1f} s, RSS {ready['rss_kib'] / 1024:.0f} MiB")
        base = hub.ask("stats")
        py_base = hub.ask("pyheap") if args.tracemalloc else None
        ramp = args.ramp if args.ramp is not None else n / 500
        share = -(-n // w)
        state = tempfile.mkdtemp(prefix="skerry-fleet-agents-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        workers = [Proc([*me, "_agents", "--dir", tmp, "--state", state, "--port", str(port), "--first", str(i * share),
                         "--count", str(min(share, n - i * share)), "--ramp", str(ramp),
                         *(x for o in args.agent_channel_option for x in ("--channel-option", o))]) for i in range(w) if i * share < n]
        try:
            for wk in workers:
                wk.read()
            t_issue = time.time() - t

            def wait_streams(target: int, since: float, what: str) -> float:
                marks, progress = [0.25, 0.5, 0.75, 0.9], []
                while True:
                    st = hub.ask("stats")
                    while marks and st["streams"] >= marks[0] * target:
                        progress.append(f"{marks.pop(0):.0%} at {time.time() - since:.1f} s")
                    if st["streams"] >= target:
                        print(f"  streams back after the kill: {', '.join(progress)}")
                        return time.time() - since
                    if time.time() - since > args.timeout:
                        raise SystemExit(f"{what}: only {st['streams']} of {target} streams after {args.timeout} s")
                    time.sleep(0.25)

            def wait_all(floor: int, since: float, what: str, released_at: float = 0.0):
                while True:
                    reps = [wk.ask(f"report {floor} {released_at}") for wk in workers]
                    have = sum(r["have"] for r in reps)
                    if have >= n:
                        return reps
                    if time.time() - since > args.timeout:
                        raise SystemExit(f"{what}: only {have} of {n} agents after {args.timeout} s")
                    time.sleep(0.1)

            t0 = time.time()
            wait_all(1, t0, "initial connect")
            print(f"all {n} agents connected and holding their bundle: {time.time() - t0:.1f} s after their "
                  f"certificates were issued ({t_issue:.1f} s incl. issuing; agents started over {ramp:.0f} s), "
                  f"{uptime()}")
            time.sleep(2)
            full = hub.ask("stats")
            per = (full["rss_kib"] - base["rss_kib"]) / max(1, full["streams"])
            if py_base is not None:
                py = hub.ask("pyheap")
                print(f"hub Python heap (tracemalloc): {(py['kib'] - py_base['kib']) / max(1, full['streams']):.1f} KiB "
                      f"per stream; largest:\n  " + "\n  ".join(py["top"][:8]))
            trimmed = hub.ask("trim")
            per_trim = (trimmed["rss_kib"] - base["rss_kib"]) / max(1, full["streams"])
            print(f"hub memory: {full['rss_kib'] / 1024:.0f} MiB RSS with {full['streams']} streams, "
                  f"{per:.1f} KiB per stream (RSS delta over the open streams; the shared bundle excluded); "
                  f"after malloc_trim(0) {per_trim:.1f} KiB (glibc returning freed handshake/transfer memory)")
            c0 = hub.ask("stats")
            time.sleep(args.idle)
            c1 = hub.ask("stats")
            idle = (c1["cpu"] - c0["cpu"]) / (c1["t"] - c0["t"]) * 100
            print(f"hub CPU while idle: {idle:.1f}% of one core over {args.idle:.0f} s, {uptime()}")

            def fanout(tag: str, label: str) -> None:
                hub.ask(f"prepare {tag}")
                before_reps = [wk.ask("report 0") for wk in workers]
                before = [r["cpu"] for r in before_reps]
                if args.split:
                    for wk in workers:
                        wk.ask("hold")
                pub = hub.ask("publish")
                split = ""
                if args.split:
                    while sum(wk.ask(f"report 0 {pub['t0']}")["got"] for wk in workers) < n:
                        if time.time() - pub["t0"] > args.timeout:
                            raise SystemExit(f"{label}: not every agent got its event after {args.timeout} s")
                        time.sleep(0.05)
                    got = [wk.ask(f"report 0 {pub['t0']}") for wk in workers]
                    sending_cpu = hub.ask("stats")["cpu"] - pub["cpu0"]
                    t_release = time.time()
                    for wk in workers:
                        wk.ask("release")
                    split = (f"split: every event delivered {max(r['max_event'] for r in got) - pub['t0']:.2f} s "
                             f"from the start of publishing with nothing verifying ({pub['signing']:.2f} s of it "
                             f"publish_shared; hub CPU {sending_cpu:.2f} s, {sending_cpu / n * 1000:.2f} ms per "
                             f"agent); verification released at +{t_release - pub['t0']:.2f} s; ")
                reps = wait_all(pub["release_floor"], pub["t0"], label, pub["t1"])
                hub_cpu = hub.ask("stats")["cpu"] - pub["cpu0"]
                agents_cpu = sum(r["cpu"] for r in reps) - sum(before)
                verify_cpu = sum(r["verify_cpu"] for r in reps) - sum(r["verify_cpu"] for r in before_reps)
                sent = max(r["max_event"] for r in reps) - pub["t0"]
                last = max(r["max_recv"] for r in reps)
                lat = [r["lat_ms"] for r in reps if r["lat_ms"]]
                p50 = max(x[0] for x in lat)
                p99 = max(x[1] for x in lat)
                worst = max(x[2] for x in lat)
                refused = {k: sum(r["refused"].get(k, 0) for r in reps) for r in reps for k in r["refused"]}
                print(f"{label}: {split}new {args.bundle_kib} KiB bundle verified by all {n}: {last - pub['t0']:.2f} s from "
                      f"the start of publishing (one shared blob + {n} director entries and release targets in hash "
                      f"bins: {pub['signing']:.2f} s in publish_shared); hub done sending (last agent got its event) "
                      f"{sent:.2f} s; per agent from the release (publish_shared done) p50 {p50:.0f} ms, p99 "
                      f"{p99:.0f} ms, max {worst:.0f} ms; CPU: hub {hub_cpu:.2f} s, simulated agents "
                      f"{agents_cpu:.2f} s of which TUF verification {verify_cpu:.2f} s "
                      f"({verify_cpu / n * 1000:.1f} ms per agent; same 2 cores); refused {refused or 'none'}, {uptime()}")

            if args.profile:
                pathlib.Path(args.profile).mkdir(parents=True, exist_ok=True)
                for proc in (hub, *workers):
                    proc.ask(f"profile {args.profile}")
            fanout("v2", "fan-out")
            if args.profile:
                for proc in (hub, *workers):
                    proc.ask(f"profile {args.profile}")
                print(f"profiles of the first fan-out written to {args.profile}")
            if not args.skip_restart:
                hub.kill()
                t_kill = time.time()
                time.sleep(args.restart_delay)  # a hub that takes longer to come back (reschedule, slow start)
                hub_argv[-1] = "v2"  # the restarted hub rebuilds the same desired state
                hub = Proc(hub_argv)
                up = hub.read()
                t_up = time.time()
                back = wait_streams(n, t_kill, "reconnect storm")
                st = hub.ask("stats")
                print(f"reconnect storm: hub SIGKILLed and restarted (up {t_up - t_kill:.1f} s after the kill); "
                      f"all {n} streams back {back:.1f} s after the kill ({t_kill + back - t_up:.1f} s after the "
                      f"hub was up); hub RSS {st['rss_kib'] / 1024:.0f} MiB (started at "
                      f"{up['rss_kib'] / 1024:.0f}), {uptime()}")
                time.sleep(2)
                st = hub.ask("stats")
                print(f"hub memory per resumed stream (agents reconnected holding the current bundle, nothing "
                      f"re-sent): {(st['rss_kib'] - up['rss_kib']) / max(1, st['streams']):.1f} KiB")
                fanout("v3", "fan-out after the storm")
            ratio = n / HUB_CORES / FLEET_CLUSTERS_PER_VCPU
            print(f"peer: Rancher Fleet sizes 500 clusters at 16 vCPU ({FLEET_CLUSTERS_PER_VCPU:.0f}/vCPU); "
                  f"Skerry held {n} on one {HUB_CORES}-core hub process ({n / HUB_CORES:.0f}/core): {ratio:.0f}x")
        finally:
            for wk in workers:
                wk.kill()
            hub.kill()
            shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
