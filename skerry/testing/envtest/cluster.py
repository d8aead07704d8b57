"""``LocalCluster``: etcd + kube-apiserver (+ kube-controller-manager) on loopback, and its admin clients.

Ties the other parts together: :mod:`.assets` finds the binaries, :mod:`.pki` writes certificates and
kubeconfigs, :mod:`.process` runs and watches the processes. Start-up retries on a port race; a start
that fails stops whatever it started.

Children get ``PR_SET_PDEATHSIG=SIGKILL``: they die with the *thread* that started them, so call
:meth:`LocalCluster.start` from a thread that outlives the cluster (the main thread, normally). An
``atexit`` hook stops clusters still running at interpreter exit; temp dirs left by a SIGKILLed process
are swept by the next :meth:`LocalCluster.start`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import pathlib
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence

from skerry.testing.envtest import clients, components, process
from skerry.testing.envtest import pki as _pki
from skerry.testing.envtest.assets import assets_dir, require_binaries
from skerry.testing.envtest.errors import EnvtestError

# Free ports are chosen before the processes bind them; another process may win the race this often.
PORT_ATTEMPTS = 3
# Per readiness probe (etcd /health, apiserver /readyz, the default ServiceAccount).
PROBE_TIMEOUT_SECONDS = 3
WORKDIR_PREFIX = "skerry-envtest-"
ETCD_DIR_PREFIX = "skerry-etcd-"

_LIVE: weakref.WeakSet[LocalCluster] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for c in list(_LIVE):
        with contextlib.suppress(EnvtestError, OSError, subprocess.SubprocessError):
            c.stop()


class LocalCluster(clients.AdminAccess):
    """etcd + kube-apiserver (+ kube-controller-manager) on loopback; its admin clients come from
    :class:`.clients.AdminAccess`.

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
    ``pids``              process ids of the running components

    Call :meth:`start` from a thread that outlives the cluster (see the module docstring).
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
        self.controller_manager = controller_manager
        self._assets_arg = pathlib.Path(assets) if assets is not None else None
        self.etcd_tmpfs = etcd_tmpfs
        self.apiserver_args = list(apiserver_args)
        self._procs: list[process.Proc] = []
        self._owns_workdir = False
        self._etcd_dir_owned: pathlib.Path | None = None
        self._pki: _pki.ClusterPki | None = None
        self._started = False
        self.workdir: pathlib.Path | None = pathlib.Path(workdir) if workdir is not None else None
        self.assets: pathlib.Path | None = None
        self.server = ""
        self.port = 0
        self.etcd_url = ""
        self.startup_seconds: float | None = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LocalCluster server={self.server or '-'} workdir={self.workdir}>"

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

    def log_file(self, component: str) -> pathlib.Path:
        """``component`` is ``etcd``, ``kube-apiserver`` or ``kube-controller-manager``."""
        return self.log_dir / f"{component}.log"

    def start(self, timeout: float = 60.0) -> LocalCluster:
        """Start the control plane and wait until it serves (``/readyz`` ok and,
        with the controller manager, the ``default`` ServiceAccount exists)."""
        if self._started:
            return self
        self.assets = self._assets_arg or assets_dir()  # may build (minutes); not in `timeout`
        t0 = time.monotonic()
        require_binaries(self.assets, controller_manager=self.controller_manager)
        process.sweep_stale(tempfile.gettempdir(), WORKDIR_PREFIX)
        process.sweep_stale(process.SHM, ETCD_DIR_PREFIX)
        if self.workdir is None:
            self.workdir = pathlib.Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
            self._owns_workdir = True
            process.claim(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        _LIVE.add(self)
        self._started = True
        try:
            self._pki = _pki.ClusterPki(self.pki_dir)
            self._pki.write(_pki.service_ip(self.SERVICE_CLUSTER_IP_RANGE))
            deadline = t0 + timeout
            for attempt in range(PORT_ATTEMPTS):
                try:
                    self._launch(deadline)
                    break
                except process.PortClash:
                    self._kill_procs()
                    if attempt == PORT_ATTEMPTS - 1:
                        raise EnvtestError(
                            f"could not find free loopback ports after {PORT_ATTEMPTS} attempts"
                        ) from None
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop all processes (controller manager, apiserver, etcd) and remove
        the workdir if this object created it. Safe to call twice."""
        self._kill_procs()
        self._drop_etcd_dir()
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._owns_workdir = False
            self.workdir = None  # a restart makes a fresh temp dir
        self._started = False
        _LIVE.discard(self)

    def _kill_procs(self) -> None:
        for p in reversed(self._procs):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                p.stop()
        self._procs.clear()

    def kill_apiserver(self) -> None:
        """SIGKILL the kube-apiserver alone (a crash); etcd keeps every object. Fault tests only."""
        api = next((p for p in self._procs if p.name == "kube-apiserver"), None)
        if api is None:
            raise EnvtestError("no kube-apiserver is running")
        api.kill()
        self._procs.remove(api)

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start the kube-apiserver again on its port, over the same etcd, and wait until it is ready."""
        if any(p.name == "kube-apiserver" for p in self._procs):
            raise EnvtestError("the kube-apiserver is already running")
        self._start_apiserver(time.monotonic() + timeout)

    def check_alive(self) -> None:
        """Raise EnvtestError (with the log tail) if a component has exited."""
        for p in self._procs:
            if not p.alive():
                raise p.exited_error()

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.alive() for p in self._procs)

    @property
    def pids(self) -> list[int]:
        """Process ids of the components started (etcd first)."""
        return [p.popen.pid for p in self._procs]

    def _spawn(self, name: str, argv: list[str]) -> process.Proc:
        p = process.Proc(name, argv, self.log_file(name), components.environment(), self._p())
        self._procs.append(p)
        return p

    def _write_kubeconfig(self, path: pathlib.Path, user: str, stem: str) -> pathlib.Path:
        assert self._pki is not None
        pair = self._pki.pair(stem)
        return _pki.write_kubeconfig(path, server=self.server, ca_pem=self.ca_file.read_bytes(), user=user, pair=pair)

    def _launch(self, deadline: float) -> None:
        etcd_client, etcd_peer, api_port = process.free_ports(3)
        self.etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.port = api_port
        self.server = f"https://127.0.0.1:{api_port}"
        self._start_etcd(etcd_peer, deadline)
        self._start_apiserver(deadline)
        if self.controller_manager:
            self._start_controller_manager(deadline)

    def _etcd_data_dir(self) -> pathlib.Path:
        self._drop_etcd_dir()
        if self.etcd_tmpfs and (shm := process.claimed_tmpfs_dir(ETCD_DIR_PREFIX)) is not None:
            self._etcd_dir_owned = shm
            return shm / "data"  # etcd wants its data dir to itself
        data_dir = self._p("etcd")
        shutil.rmtree(data_dir, ignore_errors=True)
        return data_dir

    def _drop_etcd_dir(self) -> None:
        if self._etcd_dir_owned is not None:
            shutil.rmtree(self._etcd_dir_owned, ignore_errors=True)
            self._etcd_dir_owned = None

    def _start_etcd(self, peer_port: int, deadline: float) -> None:
        assert self.assets is not None
        etcd_bin = self.assets / "etcd"
        peer = f"http://127.0.0.1:{peer_port}"
        argv = components.etcd_argv(etcd_bin, self._etcd_data_dir(), self.etcd_url, peer)
        etcd = self._spawn("etcd", argv)

        etcd_ok = functools.partial(clients.etcd_health, self.etcd_url, PROBE_TIMEOUT_SECONDS)
        process.wait_until("etcd /health", deadline, etcd_ok, etcd, self._procs)

    def _start_apiserver(self, deadline: float) -> None:
        assert self.assets is not None
        argv = [
            *components.apiserver_argv(
                self.assets / "kube-apiserver",
                etcd_url=self.etcd_url,
                port=self.port,
                workdir=self._p(),
                pki_dir=self.pki_dir,
                service_cluster_ip_range=self.SERVICE_CLUSTER_IP_RANGE,
                service_account_issuer=self.SERVICE_ACCOUNT_ISSUER,
            ),
            *self.apiserver_args,
        ]
        api = self._spawn("kube-apiserver", argv)
        self._write_kubeconfig(self.kubeconfig, _pki.ADMIN_USER, "admin")

        ready = functools.partial(self._serves, "/readyz")
        process.wait_until("kube-apiserver /readyz", deadline, ready, api, self._procs)

    def _start_controller_manager(self, deadline: float) -> None:
        assert self.assets is not None
        kubeconfig = self._write_kubeconfig(
            self._p("controller-manager.kubeconfig"), _pki.CONTROLLER_MANAGER_USER, "controller-manager"
        )
        argv = components.controller_manager_argv(self.assets / "kube-controller-manager", kubeconfig, self.pki_dir)
        cm = self._spawn("kube-controller-manager", argv)

        cm_ok = functools.partial(self._serves, "/api/v1/namespaces/default/serviceaccounts/default")
        process.wait_until("kube-controller-manager (default ServiceAccount)", deadline, cm_ok, cm, self._procs)

    def _serves(self, path: str) -> tuple[bool, str]:
        """A readiness probe: ``GET path`` answers 200."""
        status, body = self.api_request("GET", path, timeout=PROBE_TIMEOUT_SECONDS)
        return status == 200, f"{status} {body[:300]!r}"

    def user_kubeconfig(self, name: str, groups: Sequence[str] = ()) -> pathlib.Path:
        """Write a kubeconfig for a client-certificate user (CN=name, O=groups).

        The user has only what RBAC grants them (initially: discovery and
        self-review endpoints), which is what RBAC tests want."""
        if self._pki is None or self.workdir is None:
            raise EnvtestError("cluster not started")
        pair = self._pki.issue_user(name, list(groups))
        path = self._p("users", f"{_pki.user_file_stem(name, groups)}.kubeconfig")
        return _pki.write_kubeconfig(path, server=self.server, ca_pem=self.ca_file.read_bytes(), user=name, pair=pair)
