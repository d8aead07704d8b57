"""A real, local Kubernetes control plane for tests and demos ("envtest").

``assets_dir()`` makes sure ``kube-apiserver``, ``etcd`` and
``kube-controller-manager`` binaries exist (running ``build.sh`` next to this
file, which builds them once from Debian's sources into
``~/.cache/skerry/envtest/bin``) and ``LocalCluster`` runs them on free
loopback ports with a throwaway PKI::

    from skerry.envtest import LocalCluster

    with LocalCluster() as cluster:
        cluster.kubectl("get", "ns")
        print(cluster.kubeconfig)      # admin (system:masters) kubeconfig
        alice = cluster.user_kubeconfig("alice", ["dev"])   # RBAC-less user

There is no kubelet: pods are stored but never run. The controller manager
runs the namespace, garbage-collector, deployment, replicaset, serviceaccount
and serviceaccount-token controllers.

Only the standard library, ``cryptography`` and (optionally) ``PyYAML`` are
used.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as _dt
import ipaddress
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "EnvtestError",
    "LocalCluster",
    "assets_dir",
    "BUILD_SCRIPT",
    "REQUIRED_BINARIES",
]

BUILD_SCRIPT = pathlib.Path(__file__).resolve().with_name("build.sh")
REQUIRED_BINARIES = ("kube-apiserver", "etcd")
ALL_BINARIES = ("kube-apiserver", "etcd", "kube-controller-manager")

#: Controllers started in kube-controller-manager.
CONTROLLERS = (
    "namespace",
    "garbagecollector",
    "deployment",
    "replicaset",
    "serviceaccount",
    "serviceaccount-token",
)


class EnvtestError(Exception):
    """The local control plane could not be built or started."""


# --------------------------------------------------------------------------
# assets
# --------------------------------------------------------------------------


def _cache_bin_dir() -> pathlib.Path:
    root = os.environ.get("SKERRY_ENVTEST_CACHE")
    if root:
        return pathlib.Path(root) / "bin"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(xdg) / "skerry" / "envtest" / "bin"


def _has(dir_: pathlib.Path, names: Iterable[str]) -> bool:
    return all((dir_ / n).is_file() and os.access(dir_ / n, os.X_OK) for n in names)


def assets_dir(build: bool = True) -> pathlib.Path:
    """Return the directory holding kube-apiserver, etcd (and kube-controller-manager).

    Looks at ``$KUBEBUILDER_ASSETS`` first, then the cache. With ``build=True``
    (default) a missing cache is built by ``build.sh`` (a cold build takes
    several minutes; its progress goes to stderr). With ``build=False`` only
    existing binaries are accepted. Raises :class:`EnvtestError` on failure.
    """
    if not build:
        env = os.environ.get("KUBEBUILDER_ASSETS")
        if env and _has(pathlib.Path(env), REQUIRED_BINARIES):
            return pathlib.Path(env).resolve()
        cached = _cache_bin_dir()
        if _has(cached, ALL_BINARIES):
            return cached
        raise EnvtestError(
            f"envtest binaries not found (KUBEBUILDER_ASSETS={env!r}, cache {cached}); "
            f"build them with `python -m skerry.envtest build` or `bash {BUILD_SCRIPT}`"
        )

    if not BUILD_SCRIPT.is_file():
        raise EnvtestError(f"build script missing: {BUILD_SCRIPT} (package data not installed?)")
    if shutil.which("bash") is None:
        raise EnvtestError("bash is required to run the envtest build script")

    tail: list[str] = []

    proc = subprocess.Popen(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    )

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))
            del tail[:-60]
            sys.stderr.write(line)
            sys.stderr.flush()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    assert proc.stdout is not None
    out = proc.stdout.read()
    rc = proc.wait()
    t.join(timeout=5)
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    if rc != 0 or not lines:
        msg = "\n".join(tail[-40:]) or "(no output)"
        raise EnvtestError(f"{BUILD_SCRIPT} failed (exit {rc}):\n{msg}")
    path = pathlib.Path(lines[-1])
    if not _has(path, REQUIRED_BINARIES):
        raise EnvtestError(f"{BUILD_SCRIPT} printed {path}, which lacks {', '.join(REQUIRED_BINARIES)}")
    return path


# --------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class _CA:
    def __init__(self, common_name: str = "skerry-envtest-ca") -> None:
        self.key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _dt.timedelta(hours=1))
            .not_valid_after(_now() + _dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        common_name: str,
        organizations: Sequence[str] = (),
        *,
        server: bool = False,
        dns_names: Sequence[str] = (),
        ips: Sequence[str] = (),
    ) -> tuple[bytes, bytes]:
        """Return (cert_pem, key_pem) for a leaf certificate."""
        key = _new_key()
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _dt.timedelta(hours=1))
            .not_valid_after(_now() + _dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        return _cert_pem(cert), _key_pem(key)


# --------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _make_preexec():
    """preexec_fn: die with SIGKILL when the parent dies (Linux prctl)."""
    libc = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
        except Exception:  # pragma: no cover
            libc = None
    parent = os.getpid()

    def preexec() -> None:
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # parent already gone before prctl took effect
                os._exit(1)

    return preexec


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _tail(path: pathlib.Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()[-64 * 1024 :].decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


_ETCD_HELP: dict[str, str] = {}


def _etcd_supports(etcd: pathlib.Path, flag: str) -> bool:
    key = str(etcd)
    if key not in _ETCD_HELP:
        try:
            r = subprocess.run([key, "--help"], capture_output=True, text=True, timeout=20)
            _ETCD_HELP[key] = r.stdout + r.stderr
        except (OSError, subprocess.SubprocessError):
            _ETCD_HELP[key] = ""
    return flag in _ETCD_HELP[key]


def _dump_yaml(obj: dict) -> str:
    # JSON is valid YAML, and kubectl reads it: the harness needs no YAML library.
    return json.dumps(obj, indent=2) + "\n"


_OWNER_FILE = ".skerry-envtest-owner"


def _claim(dir_: pathlib.Path) -> None:
    """Mark a temp dir as ours, so a later run can sweep it if we die by SIGKILL."""
    with contextlib.suppress(OSError):
        (dir_ / _OWNER_FILE).write_text(str(os.getpid()))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(pattern_dir: str, prefix: str) -> None:
    """Remove temp dirs left by LocalClusters whose Python process died (kill -9)."""
    try:
        entries = list(pathlib.Path(pattern_dir).glob(prefix + "*"))
    except OSError:
        return
    for d in entries:
        try:
            pid = int((d / _OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours / not claimed: leave it
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


_LIVE: weakref.WeakSet[LocalCluster] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for c in list(_LIVE):
        with contextlib.suppress(Exception):
            c.stop()


class _Proc:
    def __init__(self, name: str, argv: list[str], log: pathlib.Path, env: dict[str, str], cwd: pathlib.Path):
        self.name = name
        self.argv = argv
        self.log = log
        self._fh = open(log, "ab")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(cwd),
            preexec_fn=_make_preexec(),
            start_new_session=True,  # Ctrl-C goes to us; we stop children in order
            close_fds=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        p = self.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(5)
        with contextlib.suppress(Exception):
            self._fh.close()


# --------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------


class LocalCluster:
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback.

    Attributes available after :meth:`start`:

    ``server``            ``https://127.0.0.1:PORT``
    ``port``              the apiserver's secure port
    ``kubeconfig``        admin kubeconfig (user ``skerry-admin``, group ``system:masters``)
    ``ca_file``           CA certificate (PEM) that signed everything
    ``admin_cert_file`` / ``admin_key_file``   admin client certificate and key
    ``etcd_url``          ``http://127.0.0.1:PORT``
    ``workdir``           where certs, kubeconfigs and ``logs/*.log`` live
    ``log_dir``           ``workdir/logs``
    ``assets``            directory of the binaries used

    Children get ``PR_SET_PDEATHSIG=SIGKILL``: they die with the *thread* that
    started them, so call :meth:`start` from a thread that outlives the
    cluster (the main thread, normally). An ``atexit`` hook stops clusters
    still running at interpreter exit; temp dirs left by a SIGKILLed process
    are swept by the next :meth:`start`.
    """

    SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
    SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

    def __init__(
        self,
        workdir: pathlib.Path | None = None,
        *,
        controller_manager: bool = True,
        assets: pathlib.Path | None = None,
        etcd_tmpfs: bool = True,
        apiserver_args: Sequence[str] = (),
    ) -> None:
        """``etcd_tmpfs``: keep etcd's data in /dev/shm when available (fast; this
        etcd has no --unsafe-no-fsync). ``apiserver_args``: extra kube-apiserver flags."""
        self._workdir_arg = pathlib.Path(workdir) if workdir is not None else None
        self.controller_manager = controller_manager
        self._assets_arg = pathlib.Path(assets) if assets is not None else None
        self.etcd_tmpfs = etcd_tmpfs
        self.apiserver_args = list(apiserver_args)
        self._procs: list[_Proc] = []
        self._owns_workdir = False
        self._etcd_dir_owned: pathlib.Path | None = None
        self._ca: _CA | None = None
        self._started = False
        self.workdir: pathlib.Path | None = self._workdir_arg
        self.assets: pathlib.Path | None = None
        self.server = ""
        self.port = 0
        self.etcd_url = ""
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------- context
    def __enter__(self) -> LocalCluster:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LocalCluster server={self.server or '-'} workdir={self.workdir}>"

    # ----------------------------------------------------------- paths
    def _p(self, *parts: str) -> pathlib.Path:
        if self.workdir is None:
            raise EnvtestError("cluster not started (no workdir yet): call start() first")
        return self.workdir.joinpath(*parts)

    @property
    def log_dir(self) -> pathlib.Path:
        return self._p("logs")

    @property
    def pki_dir(self) -> pathlib.Path:
        return self._p("pki")

    @property
    def ca_file(self) -> pathlib.Path:
        return self._p("pki", "ca.crt")

    @property
    def admin_cert_file(self) -> pathlib.Path:
        return self._p("pki", "admin.crt")

    @property
    def admin_key_file(self) -> pathlib.Path:
        return self._p("pki", "admin.key")

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self._p("admin.kubeconfig")

    @property
    def service_account_key_file(self) -> pathlib.Path:
        return self._p("pki", "sa.key")

    def log_file(self, component: str) -> pathlib.Path:
        """``component`` is ``etcd``, ``kube-apiserver`` or ``kube-controller-manager``."""
        return self.log_dir / f"{component}.log"

    # ----------------------------------------------------------- lifecycle
    def start(self, timeout: float = 60.0) -> LocalCluster:
        """Start the control plane and wait until it serves (``/readyz`` ok and,
        with the controller manager, the ``default`` ServiceAccount exists)."""
        if self._started:
            return self
        self.assets = self._assets_arg or assets_dir()  # may build (minutes); not in `timeout`
        t0 = time.monotonic()
        if not _has(self.assets, REQUIRED_BINARIES):
            raise EnvtestError(f"{self.assets} lacks {', '.join(REQUIRED_BINARIES)}")
        if self.controller_manager and not _has(self.assets, ["kube-controller-manager"]):
            raise EnvtestError(f"{self.assets} has no kube-controller-manager; pass controller_manager=False")
        _sweep_stale(tempfile.gettempdir(), "skerry-envtest-")
        _sweep_stale("/dev/shm", "skerry-etcd-")
        if self.workdir is None:
            self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="skerry-envtest-"))
            self._owns_workdir = True
            _claim(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        _LIVE.add(self)
        self._started = True
        try:
            self._write_pki()
            deadline = t0 + timeout
            for attempt in range(3):
                try:
                    self._launch(deadline)
                    break
                except _PortClash:
                    self._kill_procs()
                    if attempt == 2:
                        raise EnvtestError("could not find free loopback ports after 3 attempts") from None
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop all processes (controller manager, apiserver, etcd) and remove
        the workdir if this object created it. Safe to call twice."""
        self._kill_procs()
        if self._etcd_dir_owned is not None:
            shutil.rmtree(self._etcd_dir_owned, ignore_errors=True)
            self._etcd_dir_owned = None
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._owns_workdir = False
            self.workdir = None  # a restart makes a fresh temp dir
        self._started = False
        _LIVE.discard(self)

    def _kill_procs(self) -> None:
        for p in reversed(self._procs):
            with contextlib.suppress(Exception):
                p.stop()
        self._procs.clear()

    def check_alive(self) -> None:
        """Raise EnvtestError (with the log tail) if a component has exited."""
        for p in self._procs:
            if not p.alive():
                raise EnvtestError(
                    f"{p.name} exited with code {p.popen.returncode}; last log lines "
                    f"({p.log}):\n{_tail(p.log)}"
                )

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.alive() for p in self._procs)

    # ----------------------------------------------------------- internals
    def _write_pki(self) -> None:
        pki = self.pki_dir
        pki.mkdir(exist_ok=True)
        self._ca = ca = _CA()
        self.ca_file.write_bytes(_cert_pem(ca.cert))
        (pki / "ca.key").write_bytes(_key_pem(ca.key))
        svc_ip = str(next(ipaddress.ip_network(self.SERVICE_CLUSTER_IP_RANGE).hosts()))
        cert, key = ca.issue(
            "kube-apiserver",
            server=True,
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips=["127.0.0.1", "::1", svc_ip],
        )
        (pki / "apiserver.crt").write_bytes(cert)
        (pki / "apiserver.key").write_bytes(key)
        cert, key = ca.issue("skerry-admin", ["system:masters"])
        self.admin_cert_file.write_bytes(cert)
        self.admin_key_file.write_bytes(key)
        # With --use-service-account-credentials=false every controller acts as
        # this identity, so it needs more than the bootstrap
        # system:kube-controller-manager role grants.
        cert, key = ca.issue("system:kube-controller-manager", ["system:masters"])
        (pki / "controller-manager.crt").write_bytes(cert)
        (pki / "controller-manager.key").write_bytes(key)
        sa = _new_key()
        self.service_account_key_file.write_bytes(_key_pem(sa))
        (pki / "sa.pub").write_bytes(
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        for f in pki.glob("*.key"):
            f.chmod(0o600)

    def _kubeconfig_dict(self, user: str, cert_pem: bytes, key_pem: bytes) -> dict:
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.ca_file.read_bytes()),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
                }
            ],
            "contexts": [{"name": f"{user}@envtest", "context": {"cluster": "envtest", "user": user}}],
            "current-context": f"{user}@envtest",
            "preferences": {},
        }

    def _write_kubeconfig(
        self, path: pathlib.Path, user: str, cert_pem: bytes, key_pem: bytes
    ) -> pathlib.Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(_dump_yaml(self._kubeconfig_dict(user, cert_pem, key_pem)))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
        machine = platform.machine().lower()
        if machine not in ("x86_64", "amd64"):
            env["ETCD_UNSUPPORTED_ARCH"] = {"aarch64": "arm64"}.get(machine, machine)
        return env

    def _spawn(self, name: str, argv: list[str]) -> _Proc:
        log = self.log_file(name)
        with open(log, "ab") as fh:
            fh.write(("\n==== " + " ".join(argv) + "\n").encode())
        p = _Proc(name, argv, log, self._env(), self.workdir)  # type: ignore[arg-type]
        self._procs.append(p)
        return p

    def _wait(self, what: str, deadline: float, probe, proc: _Proc) -> None:
        last = ""
        while True:
            for p in self._procs:
                if not p.alive():
                    text = _tail(p.log)
                    if "address already in use" in text:
                        raise _PortClash()
                    raise EnvtestError(
                        f"{p.name} exited (code {p.popen.returncode}) while waiting for {what}; "
                        f"last log lines ({p.log}):\n{text}"
                    )
            try:
                ok, last = probe()
                if ok:
                    return
            except Exception as e:  # noqa: BLE001 - anything means "not yet"
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                raise EnvtestError(
                    f"timed out waiting for {what} (last probe: {last}); last log lines of "
                    f"{proc.name} ({proc.log}):\n{_tail(proc.log)}"
                )
            time.sleep(0.1)

    def _launch(self, deadline: float) -> None:
        assert self.assets is not None and self.workdir is not None
        etcd_client, etcd_peer, api_port = _free_ports(3)
        self.etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.port = api_port
        self.server = f"https://127.0.0.1:{api_port}"

        # ---- etcd
        etcd_bin = self.assets / "etcd"
        if self._etcd_dir_owned is not None:
            shutil.rmtree(self._etcd_dir_owned, ignore_errors=True)
            self._etcd_dir_owned = None
        if self.etcd_tmpfs and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            self._etcd_dir_owned = pathlib.Path(tempfile.mkdtemp(prefix="skerry-etcd-", dir="/dev/shm"))
            _claim(self._etcd_dir_owned)
            data_dir = self._etcd_dir_owned / "data"  # etcd wants its data dir to itself
        else:
            data_dir = self._p("etcd")
            shutil.rmtree(data_dir, ignore_errors=True)
        peer = f"http://127.0.0.1:{etcd_peer}"
        etcd_argv = [
            str(etcd_bin),
            "--name=envtest",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=envtest={peer}",
            "--initial-cluster-state=new",
        ]
        if _etcd_supports(etcd_bin, "--unsafe-no-fsync"):
            etcd_argv.append("--unsafe-no-fsync")
        etcd = self._spawn("etcd", etcd_argv)

        def etcd_ok():
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                body = r.read().decode()
                return ('"health":"true"' in body.replace(" ", "")), body

        self._wait("etcd /health", deadline, etcd_ok, etcd)

        # ---- kube-apiserver
        pki = self.pki_dir
        api_argv = [
            str(self.assets / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            "--insecure-port=0",
            f"--cert-dir={self._p('apiserver-certs')}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={self.service_account_key_file}",
            f"--service-account-issuer={self.SERVICE_ACCOUNT_ISSUER}",
            f"--service-cluster-ip-range={self.SERVICE_CLUSTER_IP_RANGE}",
            "--endpoint-reconciler-type=none",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--profiling=false",
            *self.apiserver_args,
        ]
        api = self._spawn("kube-apiserver", api_argv)
        self._write_kubeconfig(
            self.kubeconfig,
            "skerry-admin",
            self.admin_cert_file.read_bytes(),
            self.admin_key_file.read_bytes(),
        )

        def ready():
            status, body = self.api_request("GET", "/readyz", timeout=3)
            return status == 200, f"{status} {body[:300]!r}"

        self._wait("kube-apiserver /readyz", deadline, ready, api)

        # ---- kube-controller-manager
        if self.controller_manager:
            cm_kc = self._write_kubeconfig(
                self._p("controller-manager.kubeconfig"),
                "system:kube-controller-manager",
                (pki / "controller-manager.crt").read_bytes(),
                (pki / "controller-manager.key").read_bytes(),
            )
            cm_argv = [
                str(self.assets / "kube-controller-manager"),
                f"--kubeconfig={cm_kc}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={self.service_account_key_file}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--secure-port=0",
                "--port=0",
                "--profiling=false",
            ]
            cm = self._spawn("kube-controller-manager", cm_argv)

            def cm_ok():
                status, body = self.api_request(
                    "GET", "/api/v1/namespaces/default/serviceaccounts/default", timeout=3
                )
                return status == 200, f"{status}"

            self._wait("kube-controller-manager (default ServiceAccount)", deadline, cm_ok, cm)

    # ----------------------------------------------------------- clients
    def ssl_context(
        self, cert_file: pathlib.Path | None = None, key_file: pathlib.Path | None = None
    ) -> ssl.SSLContext:
        """An SSLContext trusting the cluster CA, presenting the admin cert by default."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(cert_file or self.admin_cert_file), str(key_file or self.admin_key_file))
        return ctx

    def api_request(
        self,
        method: str,
        path: str,
        body: dict | bytes | None = None,
        *,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, str]:
        """A raw admin request; returns ``(status, body_text)`` (no raise on 4xx/5xx)."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=timeout) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def api_json(self, method: str, path: str, body: dict | None = None) -> dict:
        """Like :meth:`api_request` but raises EnvtestError unless 2xx; returns parsed JSON."""
        status, text = self.api_request(method, path, body)
        if not 200 <= status < 300:
            raise EnvtestError(f"{method} {path} -> {status}: {text[:500]}")
        return json.loads(text) if text else {}

    def user_kubeconfig(self, name: str, groups: Sequence[str] = ()) -> pathlib.Path:
        """Write a kubeconfig for a client-certificate user (CN=name, O=groups).

        The user has only what RBAC grants them (initially: discovery and
        self-review endpoints), which is what RBAC tests want."""
        if self._ca is None or self.workdir is None:
            raise EnvtestError("cluster not started")
        cert, key = self._ca.issue(name, list(groups))
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "user"
        if groups:
            safe += "-" + re.sub(r"[^A-Za-z0-9_.-]", "_", "+".join(groups))
        return self._write_kubeconfig(self._p("users", f"{safe}.kubeconfig"), name, cert, key)

    def kubectl(
        self,
        *args: str,
        kubeconfig: pathlib.Path | None = None,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess:
        """Run ``kubectl --kubeconfig <admin or given> ARGS``; returns the CompletedProcess
        (text mode). Raises EnvtestError on non-zero exit when ``check``."""
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise EnvtestError("kubectl not found on PATH")
        argv = [kubectl, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise EnvtestError(f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG pointing at the admin kubeconfig."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


class _PortClash(Exception):
    pass
