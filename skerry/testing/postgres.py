"""A private, throwaway PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` on loopback, a free port.

The hub keeps its state in PostgreSQL when it runs as replicas (``skerry.hub.state``); its contract
tests run against a real server, not a look-alike. ``PostgresServer`` makes a cluster in a scratch
directory with trust authentication for one role (``skerry``), starts it on ``127.0.0.1`` at a free
port with its socket in the same directory and ``fsync=off`` (test data need not survive a power
cut; ``settings`` overrides server settings, e.g. a benchmark comparing durable commits), and stops it (``pg_ctl stop -m immediate``) at the end. ``database()`` makes a fresh database
per test, so tests never see each other's rows.

``initdb`` and ``postgres`` refuse to run as root; as root (CI) both run as the ``postgres`` system
user through ``runuser`` and the directory is handed to that user. Binaries come from
``$SKERRY_PG_BINDIR``, else the newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout, what
``scripts/bootstrap.sh`` installs), else ``PATH``.

``private_server()`` is a server of a test's own (a world that stops it mid-test, or a module's HA
world), skipped where no binaries exist. The pytest fixtures ``postgres_server`` (one per session, made
by it) and ``postgres_dsn`` (a fresh database per test) are defined when pytest is importable; a
conftest re-exports them.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

try:
    import pytest
except ImportError:  # the harness works without pytest; only the fixtures need it
    pytest = None

DEBIAN_ROOT = pathlib.Path("/usr/lib/postgresql")
SUPERUSER = "skerry"
SYSTEM_USER = "postgres"  # initdb/postgres refuse root; as root we run them as this user
# Server settings of a throwaway test cluster (``PostgresServer(settings=...)`` overrides them).
TEST_SETTINGS = {"fsync": "off"}
# initdb takes ~1.2 s, start ~0.1 s on an idle machine; a loaded 2-core CI machine is much slower.
START_TIMEOUT = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or the server would not start (the message says which)."""


def find_bindir() -> pathlib.Path:
    """Where ``initdb`` and ``pg_ctl`` are (see the module docstring for the search order)."""
    env = os.environ.get("SKERRY_PG_BINDIR")
    if env:
        return pathlib.Path(env)
    versions = sorted(
        (p for p in DEBIAN_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    found = shutil.which("initdb")
    if found:
        return pathlib.Path(found).parent
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql (scripts/bootstrap.sh does)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One private PostgreSQL cluster; ``start()`` then ``dsn(database)``; ``stop()`` removes nothing else."""

    def __init__(self, directory: pathlib.Path, *, bindir: pathlib.Path | None = None,
                 settings: dict[str, str] | None = None):
        self.directory = pathlib.Path(directory)
        self.settings = {**TEST_SETTINGS, **(settings or {})}
        self.data = self.directory / "data"
        self.bindir = bindir or find_bindir()
        self.port: int | None = None
        self._as_root = os.geteuid() == 0

    def _run(self, *argv: str, timeout: float = START_TIMEOUT) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", SYSTEM_USER, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise PostgresUnavailable(f"{argv[0]} failed ({done.returncode}): {' / '.join(tail)}")

    def start(self, port: int | None = None) -> PostgresServer:
        """Start the server (initialising its cluster the first time) on ``port``, else a free one.

        A test that stops the server mid-run (``stop("fast")``) starts it again on the same port and data
        directory, as a restarted database server comes back at its address."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            user = pwd.getpwnam(SYSTEM_USER)
            # The postgres user must reach the directory: make it its own, and the parents traversable.
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            for parent in self.directory.parents:
                if parent == pathlib.Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "--no-sync", "-E", "UTF8")
        self.port = port or free_port()
        extra = " ".join(f"-c {key}={value}" for key, value in self.settings.items())
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 {extra}"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "server.log"),
                  "-w", "-t", str(START_TIMEOUT), "start")
        return self

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m MODE``: ``immediate`` (the end of a test session), ``fast`` (an outage: clients
        are disconnected, the server shuts down cleanly), ``smart``."""
        if self.port is None:
            return
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.port = None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database (``createdb``: no driver needed here); returns its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        cmd = [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT)
        if done.returncode != 0:
            raise PostgresUnavailable(f"createdb {name} failed: {done.stderr.strip()}")
        return self.dsn(name)

@contextlib.contextmanager
def private_server(prefix: str = "skerry-pg-"):
    """A started ``PostgresServer`` of its own, stopped and its directory removed on exit.

    The directory is made under /tmp, not pytest's tmp dir: the postgres user must traverse every parent
    directory. Where no server binaries exist the calling test is skipped, saying why (under pytest), else
    ``PostgresUnavailable`` is raised.
    """
    try:
        bindir = find_bindir()
    except PostgresUnavailable as e:
        if pytest is not None:
            pytest.skip(str(e))
        raise
    directory = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server = PostgresServer(directory, bindir=bindir).start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if pytest is not None:

    @pytest.fixture(scope="session")
    def postgres_server():
        """One private PostgreSQL per test session; skips (saying why) where no server binaries exist."""
        with private_server() as server:
            yield server

    @pytest.fixture
    def postgres_dsn(postgres_server) -> str:
        """The DSN of a fresh database on the session's server."""
        return postgres_server.create_database()
