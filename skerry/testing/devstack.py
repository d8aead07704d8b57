"""A whole Skerry installation on one machine: sealer, hub and agents as real processes.

Used by ``skerry demo`` and by the end-to-end tests, so both exercise the
same thing a user runs: each service is started through the ``skerry`` CLI
as its own process, talks mutual TLS over loopback on a port it chose
itself (port 0, reported through a ready file), and keeps a log file under
``workdir/logs``. Nothing here is a fake; the API server is a real
kube-apiserver (``skerry.testing.envtest``) unless a kubeconfig is given.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from google.protobuf import json_format

from skerry.api.v1 import hub_pb2, hub_pb2_grpc
from skerry.core import documents, tls
from skerry.core.client import all_pages, secure_channel

# The example fleet of a source checkout (the one input the harness takes from outside the package).
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "fleet"
# The dev stack's hub writer lease: one hub on a throwaway state, so a restart after a crash (a new holder,
# ``skerry.hub.config.default_hub_id``) writes again within seconds, not the production default's 15 s.
LEASE_TTL = "5s"
# No probe or load balancer looks at these processes: the SIGTERM drain (``--drain``, 2 s in production)
# would only make every stop of a hub or sealer that much slower. A variable already set wins.
NO_DRAIN = {"SKERRY_HUB_DRAIN": "0s", "SKERRY_SEALER_DRAIN": "0s"}


# The example fleet's namespaces all start with this (shop-dev, shop-prod).
EXAMPLES_NAMESPACE_PREFIX = "shop-"


# Where the example fleet's prod overlay expects its sealed database Secret (``Stack.start_example``).
EXAMPLE_SEALED_SECRET = "overlays/prod/sealed-db-credentials.yaml"


class StackError(RuntimeError):
    pass


def example_fleet(dest: pathlib.Path, namespace_prefix: str) -> pathlib.Path:
    """A copy of the example fleet at ``dest`` whose namespaces start with ``namespace_prefix``, not ``shop-``.

    Test modules sharing one API server each apply the fleet into namespaces of their own, so what one
    module left behind is never what another one asserts about."""
    shutil.copytree(EXAMPLES, dest)
    for f in dest.rglob("*.yaml"):
        f.write_text(f.read_text().replace(EXAMPLES_NAMESPACE_PREFIX, namespace_prefix))
    return dest


class Service:
    """One service process started through the ``skerry`` CLI."""

    def __init__(self, name: str, args: list[str], workdir: pathlib.Path, env: dict[str, str] | None = None):
        self.name = name
        self.args = args
        self.log_path = workdir / "logs" / f"{name}.log"
        self.ready_file = workdir / "run" / f"{name}.ready.json"
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.ready_file.parent.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        env = {**NO_DRAIN, **os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skerry", *self.args, "--ready-file", str(self.ready_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()
        return self

    def ready(self, timeout: float = 30.0) -> dict:
        """Wait for the ready file; return its JSON. Fails fast if the process died."""
        return wait_for(lambda: self._read_ready(), timeout, f"{self.name} to become ready", self)

    def _read_ready(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise StackError(f"{self.name} exited with code {self.proc.returncode}; log:\n{self.log_tail()}")
        try:
            return json.loads(self.ready_file.read_text())
        except (OSError, ValueError):
            return None

    def status(self) -> dict | None:
        try:
            return json.loads(self.ready_file.read_text())
        except (OSError, ValueError):
            return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def events(self, name: str) -> list[dict]:
        """The JSON log lines whose ``event`` is ``name`` (services log JSON lines when not on a terminal)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("event") == name:
                out.append(doc)
        return out

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def wait_for(probe: Callable[[], object], timeout: float, what: str, service: Service | None = None):
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n--- {service.name} log ---\n{service.log_tail()}" if service else ""
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def git(repo: pathlib.Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_AUTHOR_NAME": "Skerry Demo", "GIT_AUTHOR_EMAIL": "demo@skerry.invalid",
             "GIT_COMMITTER_NAME": "Skerry Demo", "GIT_COMMITTER_EMAIL": "demo@skerry.invalid"},
    )
    return out.stdout.strip()


class Stack:
    """Sealer + hub + agents sharing one throwaway PKI under ``workdir``."""

    def __init__(self, workdir: pathlib.Path, kubeconfig: pathlib.Path, *, interval: float = 2.0,
                 auto_release: tuple[str, ...] = ("dev", "prod"),
                 environments: tuple[str, ...] = ("dev", "prod:3:2")):
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.interval = interval
        self.pki_dir = workdir / "pki"
        self.ca = tls.CertificateAuthority.create("skerry-demo-ca")
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        (self.pki_dir / "ca.crt").write_bytes(self.ca.cert_pem)
        self.repo = workdir / "repo"
        self.remote: pathlib.Path | None = None  # a bare repo the hub follows and pushes to (seed_repo(bare=True))
        self.sealer: Service | None = None
        self.hub: Service | None = None
        self.agents: dict[str, Service] = {}
        self.hub_address = ""
        self.sealer_address = ""
        # TUF trust (``skerry keys init``, made on first need): the hub holds release keys only for
        # ``auto_release`` envs.
        self.auto_release = auto_release
        self.environments = environments
        self.trust_dir = workdir / "trust"
        self.trust_root: pathlib.Path | None = None

    # --- identities ---------------------------------------------------------------------
    def identity(self, name: str, role: str, *, server: bool = False) -> tls.TlsFiles:
        stem = f"{role.split(':')[-1]}-{name}"
        crt = self.pki_dir / f"{stem}.crt"
        if not crt.exists():
            pair = self.ca.issue(name, role=role, server_names=("127.0.0.1", "localhost") if server else ())
            tls.write_keypair(self.pki_dir, stem, pair)
        return tls.TlsFiles(self.pki_dir / "ca.crt", crt, self.pki_dir / f"{stem}.key")

    @staticmethod
    def tls_args(files: tls.TlsFiles) -> list[str]:
        return ["--tls-ca", str(files.ca), "--tls-cert", str(files.cert), "--tls-key", str(files.key)]

    # --- services -----------------------------------------------------------------------
    def start_sealer(self) -> Service:
        files = self.identity("sealer", tls.ROLE_SEALER, server=True)
        # a restarted sealer comes back on the same port, so running agents find it again
        listen = self.sealer_address or "127.0.0.1:0"
        self.sealer = Service(
            "sealer",
            ["sealer", "serve", "--listen", listen, "--keys-dir", str(self.workdir / "sealer-keys"),
             *self.tls_args(files)],
            self.workdir,
        ).start()
        port = self.sealer.ready()["port"]
        self.sealer_address = f"127.0.0.1:{port}"
        return self.sealer

    def start_example(
        self, clusters: tuple[str, ...], *, password: str, files: dict[str, str] | None = None, bare: bool = False
    ) -> None:
        """The example fleet end to end: a sealer, the repository (``seed_repo``) with its prod database Secret
        sealed holding ``password``, a hub, and an agent for each of ``clusters``."""
        self.start_sealer()
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-credentials", "namespace": "shop-prod"},
                  "type": "Opaque", "stringData": {"username": "shop", "password": password}}
        self.seed_repo(seal={EXAMPLE_SEALED_SECRET: secret}, files=files, bare=bare)
        self.start_hub()
        for cluster in clusters:
            self.start_agent(cluster)

    def cluster_view(self, cluster: str, operator: str = "tester") -> dict:
        """The hub's view of ``cluster`` (``fleet_status``), asked as the operator named ``operator``."""
        files = self.identity(operator, tls.ROLE_OPERATOR)
        return next(v for v in fleet_status(self.hub_address, files) if v["cluster"] == cluster)

    def seed_repo(
        self,
        source: pathlib.Path = EXAMPLES,
        *,
        seal: dict[str, dict[str, str]] | None = None,
        files: dict[str, str] | None = None,
        bare: bool = False,
    ) -> str:
        """Copy ``source`` into a fresh Git repo; seal each ``{relpath: secret manifest}`` into it; commit.

        ``files`` overwrite files of the copy. ``bare``: the hub follows (and pushes promotions to) a bare
        clone, ``remote``, like a real Git server; ``commit`` then pushes there and ``pull`` fetches from it.
        """
        if self.repo.exists():
            shutil.rmtree(self.repo)
        shutil.copytree(source, self.repo)
        git(self.repo, "init", "-q", "-b", "main")
        for relpath, content in (files or {}).items():
            (self.repo / relpath).write_text(content)
        for relpath, secret in (seal or {}).items():
            (self.repo / relpath).write_text(self.seal(secret))
        if not bare:
            return self.commit("Initial fleet")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "Initial fleet")
        self.remote = self.workdir / "remote.git"
        if self.remote.exists():
            shutil.rmtree(self.remote)
        git(self.workdir, "clone", "-q", "--bare", str(self.repo), str(self.remote))
        git(self.repo, "remote", "add", "origin", str(self.remote))
        git(self.repo, "fetch", "-q", "origin")
        return git(self.repo, "rev-parse", "HEAD")

    def pull(self) -> str:
        """Bring the working repo up to the bare remote (after the hub pushed to it)."""
        git(self.repo, "pull", "-q", "--rebase", "origin", "main")
        return git(self.repo, "rev-parse", "HEAD")

    def seal(self, secret: dict, *, scope: str | None = None) -> str:
        """Seal a Secret manifest with ``skerry seal``, fetching the certificate from the sealer."""
        ops = self.identity("demo", tls.ROLE_OPERATOR)
        args = [sys.executable, "-m", "skerry", "seal", "--sealer", self.sealer_address, *self.tls_args(ops)]
        if scope:
            args += ["--scope", scope]
        out = subprocess.run(args, input=json.dumps(secret), capture_output=True, text=True)
        if out.returncode != 0:
            raise StackError(f"skerry seal failed: {out.stderr.strip()}")
        return out.stdout

    def commit(self, message: str) -> str:
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "--allow-empty", "-m", message)
        if self.remote is not None:
            git(self.repo, "pull", "-q", "--rebase", "origin", "main")
            git(self.repo, "push", "-q", "origin", "HEAD:main")
        return git(self.repo, "rev-parse", "HEAD")

    def keys(self, *args: str) -> str:
        """Run ``skerry keys ARGS`` (as an operator would); returns its stdout."""
        out = subprocess.run([sys.executable, "-m", "skerry", "keys", *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise StackError(f"skerry keys {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def init_trust(self) -> pathlib.Path:
        if not (self.trust_dir / "root.json").exists():
            args = ["init", "--trust-dir", str(self.trust_dir)]
            for env in self.environments:
                args += ["--env", env]
            self.keys(*args)
        self.trust_root = self.trust_dir / "root.json"
        return self.trust_root

    def release_keys(self, env: str) -> list[pathlib.Path]:
        return sorted((self.trust_dir / "offline").glob(f"release-{env}-*.key"))

    def environment_of(self, cluster: str) -> str:
        try:
            fleet = documents.load_yaml((self.repo / "skerry.yaml").read_bytes())
        except OSError:  # no fleet here (e.g. an agent pointed at another stack's hub): guess from the name
            return cluster.rsplit("-", 1)[-1]
        for c in fleet.get("clusters", []):
            if c.get("name") == cluster:
                return str((c.get("labels") or {}).get("env", "default"))
        return "default"

    def start_hub(self, *, repo: str | None = None, extra: tuple[str, ...] = (),
                  env: dict[str, str] | None = None) -> Service:
        """The hub, following ``repo`` (default: the bare remote, else the working repo); ``extra`` flags and
        ``env`` variables are added to its command line and environment."""
        files = self.identity("hub", tls.ROLE_HUB, server=True)
        self.init_trust()
        keys = [f"{env.split(':')[0]}={k}" for env in self.auto_release for k in self.release_keys(env)]
        trust_args = ["--trust-dir", str(self.trust_dir), "--trust-refresh", "1"]
        if keys:
            trust_args += ["--release-keys", ",".join(keys)]
        # a restarted hub comes back on the same port, so running agents find it again
        listen = self.hub_address or "127.0.0.1:0"
        lease = {"SKERRY_HUB_LEASE_TTL": os.environ.get("SKERRY_HUB_LEASE_TTL", LEASE_TTL)}
        self.hub = Service(
            "hub",
            ["hub", "serve", "--repo", repo or str(self.remote or self.repo), "--interval", str(self.interval),
             "--listen", listen, "--state-dir", str(self.workdir / "hub-state"), *trust_args, *self.tls_args(files),
             *extra],
            self.workdir,
            {**lease, **(env or {})},
        ).start()
        ready = self.hub.ready()
        self.hub_address = f"127.0.0.1:{ready['port']}"
        return self.hub

    def start_agent(self, cluster: str, *, hub: str | None = None, sealer: str | None = None,
                    trust_root: pathlib.Path | None = None, environment: str | None = None,
                    kubeconfig: pathlib.Path | None = None, extra: tuple[str, ...] = (),
                    allow_prune_protected: bool = True) -> Service:
        """An agent of ``cluster``; it trusts this stack's root unless given another (an attacker's world).

        ``hub``, ``sealer`` and ``kubeconfig`` point it elsewhere than this stack's own (e.g. through a proxy).
        ``allow_prune_protected=False`` runs it as shipped: Namespaces, CRDs and PVCs are never pruned
        without their ``skerry.io/prune: allow`` annotation."""
        files = self.identity(cluster, tls.ROLE_AGENT)
        trust_root = trust_root or self.trust_root or self.init_trust()
        env = environment or self.environment_of(cluster)
        # A throwaway cluster shared by many tests: one test's Namespace left in a cluster's inventory is
        # pruned by the next test's agent, which protected kinds allow only explicitly.
        trust_args = ["--trust-root", str(trust_root), "--environment", env, "--trust-poll", "2",
                      *(["--allow-prune-protected"] if allow_prune_protected else []), *extra]
        old = self.agents.get(cluster)
        if old is not None:
            old.stop()
        agent = Service(
            f"agent-{cluster}",
            ["agent", "run", "--cluster", cluster, "--hub", hub or self.hub_address, "--sealer", sealer or self.sealer_address,
             *trust_args, "--kubeconfig", str(kubeconfig or self.kubeconfig),
             "--state-dir", str(self.workdir / "agents" / cluster),
             # several demo clusters share one API server: each agent keeps its inventory apart
             "--namespace", f"skerry-{cluster}", *self.tls_args(files)],
            self.workdir,
        ).start()
        self.agents[cluster] = agent
        return agent

    def wait_applied(self, cluster: str, *, digest: str | None = None, release_above: int = 0, timeout: float = 60.0) -> dict:
        """Wait until the agent reports a ready reconcile (of ``digest``, or of a release above the given one)."""
        agent = self.agents[cluster]

        def probe():
            if not agent.alive():
                raise StackError(f"agent {cluster} exited; log:\n{agent.log_tail()}")
            st = agent.status()
            if not st or not st.get("ready"):
                return None
            if digest and st.get("applied_digest") != digest:
                return None
            if st.get("applied_release", 0) <= release_above:
                return None
            return st

        return wait_for(probe, timeout, f"agent {cluster} to apply {digest or 'a new bundle'}", agent)

    def kubectl(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True, text=True)
        if check and out.returncode != 0:
            raise StackError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        for svc in (self.hub, self.sealer):
            if svc is not None:
                svc.stop()


def fleet_status(address: str, files: tls.TlsFiles, timeout: float = 5.0) -> list[dict]:
    """The hub's view of every cluster (GetFleetStatus), as plain dicts."""
    with secure_channel(address, files) as channel:
        resp = all_pages(hub_pb2_grpc.HubServiceStub(channel).GetFleetStatus, hub_pb2.GetFleetStatusRequest(),
                         "clusters", timeout=timeout)
    return [json_format.MessageToDict(c, preserving_proto_field_name=True) for c in resp.clusters]
