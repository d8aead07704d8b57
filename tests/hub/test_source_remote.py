"""Git sources as users run them: SSH deploy keys against a real sshd with known_hosts checking,
HTTPS with a token (a real HTTP Git server on loopback), tags, pinned commits, shallow fetches."""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time

import pytest

from skerry.core.errors import ConfigError, SourceError
from skerry.hub.config import HubConfig
from skerry.hub.source.auth import GitAuth
from skerry.hub.source.git import GitSource
from skerry.hub.source.writes import commit_files, push_commit

from .helpers import GitRepo

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
# sshd refuses to start in well under a second when it can; give a loaded machine some room.
SSHD_START_TIMEOUT = 10.0
# socketserver polls for shutdown() this often (0.5 s by default: half a second of every teardown)
SHUTDOWN_POLL_SECONDS = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: pathlib.Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (
        path.with_suffix(".pub").read_text().strip()
        if path.suffix
        else pathlib.Path(f"{path}.pub").read_text().strip()
    )


@pytest.fixture
def repo(tmp_path) -> GitRepo:
    r = GitRepo(tmp_path / "work")
    r.commit("one", {"skerry.yaml": "v: 1\n"})
    return r


@pytest.fixture
def sshd(tmp_path, repo):
    """A real OpenSSH server on a loopback port, accepting one client key; yields (url, key, known_hosts)."""
    if SSHD is None:
        pytest.skip("sshd is not installed (Debian package openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("sshd must run as root to switch to the login user")
    d = tmp_path / "ssh"
    d.mkdir()
    host_key, client_key = d / "host_key", d / "client_key"
    host_pub, client_pub = keygen(host_key), keygen(client_key)
    (d / "authorized_keys").write_text(client_pub + "\n")
    bare = tmp_path / "served.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    pathlib.Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    for _ in range(3):
        port = free_port()
        config = d / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {d}/sshd.pid\n"
            f"AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\n"
            "UsePAM no\nPubkeyAuthentication yes\n"
        )
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + SSHD_START_TIMEOUT
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                up = True
                break
            time.sleep(0.05)
        if up:
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"sshd did not start: {proc.stderr.read().decode()[:500] if proc.stderr else ''}")
    known_hosts = d / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    try:
        yield f"ssh://root@127.0.0.1:{port}{bare}", client_key, known_hosts
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_ssh_deploy_key_with_known_hosts_fetches(sshd, repo, tmp_path):
    url, key, known_hosts = sshd
    source = GitSource(url, cache_dir=tmp_path / "state", auth=GitAuth(ssh_key=key, known_hosts=known_hosts))
    assert source.fetch() == repo.head()
    assert source.read_file(repo.head(), "skerry.yaml") == b"v: 1\n"


def test_ssh_unknown_host_key_is_refused(sshd, tmp_path):
    url, key, known_hosts = sshd
    other = tmp_path / "other_host"
    other_pub = keygen(other)
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(known_hosts.read_text().split(" ")[0] + " " + other_pub + "\n")
    source = GitSource(url, cache_dir=tmp_path / "state", auth=GitAuth(ssh_key=key, known_hosts=wrong))
    with pytest.raises(SourceError, match="(?i)host key"):
        source.fetch()


def test_ssh_host_missing_from_known_hosts_is_not_trusted_on_first_use(sshd, tmp_path):
    url, key, _ = sshd
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    source = GitSource(url, cache_dir=tmp_path / "state", auth=GitAuth(ssh_key=key, known_hosts=empty))
    with pytest.raises(SourceError, match="(?i)host key"):
        source.fetch()
    assert empty.read_text() == ""  # nothing was added


def test_ssh_key_the_server_does_not_know_is_refused(sshd, tmp_path):
    url, _, known_hosts = sshd
    stranger = tmp_path / "stranger"
    keygen(stranger)
    source = GitSource(
        url, cache_dir=tmp_path / "state", auth=GitAuth(ssh_key=stranger, known_hosts=known_hosts)
    )
    with pytest.raises(SourceError, match="(?i)permission denied"):
        source.fetch()


def test_an_ssh_key_needs_known_hosts(tmp_path):
    with pytest.raises(ConfigError, match="known_hosts"):
        GitAuth(ssh_key=tmp_path / "key")


# --- HTTPS with a token ------------------------------------------------------------------


class TokenGitServer(http.server.ThreadingHTTPServer):
    """Git's "dumb" HTTP protocol (static files of a bare repo) behind a Basic-auth token check."""

    daemon_threads = True

    def __init__(self, root: pathlib.Path, token: str):
        self.root = root
        self.expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), self._handler())

    def _handler(self):
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(server.root), **kw)

            def log_message(self, *args):
                pass

            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                server.seen.append(self.path)
                if auth != server.expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.end_headers()
                    return
                self.path = self.path.split("?", 1)[0]
                super().do_GET()

        return Handler


@pytest.fixture
def http_git(tmp_path, repo):
    token = "tok-3b1f9c0e8d2a4f6b"
    served = tmp_path / "www"
    bare = served / "fleet.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    server = TokenGitServer(served, token)
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fleet.git", token, server
    finally:
        server.shutdown()
        server.server_close()


def test_https_token_is_sent_as_a_header_and_stored_nowhere(http_git, repo, tmp_path):
    url, token, server = http_git
    state = tmp_path / "state"
    source = GitSource(url, cache_dir=state, auth=GitAuth(token=token))
    assert source.fetch() == repo.head()
    assert token not in repr(source) and token not in repr(source.auth) and token not in source.url
    for path in state.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_https_without_the_token_fails_without_prompting(http_git, tmp_path):
    url, token, _ = http_git
    with pytest.raises(SourceError) as info:
        GitSource(url, cache_dir=tmp_path / "state").fetch()
    assert token not in str(info.value)


def test_a_token_in_the_url_is_not_used_when_a_token_is_given(http_git, repo, tmp_path):
    url, token, _ = http_git
    with_user = url.replace("http://", "http://someone:leaked@")
    source = GitSource(with_user, cache_dir=tmp_path / "state", auth=GitAuth(token=token))
    assert "leaked" not in source.url and "leaked" not in repr(source)
    assert source.fetch() == repo.head()


# --- refs and depth -----------------------------------------------------------------------


def test_follow_a_tag(repo, tmp_path):
    first = repo.head()
    repo.git("tag", "-a", "v1", "-m", "release 1")
    repo.commit("two", {"skerry.yaml": "v: 2\n"})
    source = GitSource(str(repo.path), cache_dir=tmp_path / "state", tag="v1")
    assert source.fetch() == first
    repo.git("tag", "-f", "-a", "v1", "-m", "moved")
    assert source.fetch() == repo.head()


def test_pin_a_commit(repo, tmp_path):
    first = repo.head()
    repo.commit("two", {"skerry.yaml": "v: 2\n"})
    source = GitSource(str(repo.path), cache_dir=tmp_path / "state", commit=first)
    assert source.fetch() == first
    assert source.read_file(first, "skerry.yaml") == b"v: 1\n"


def test_pinned_commit_must_be_a_full_id(tmp_path):
    with pytest.raises(ConfigError, match="40-character"):
        GitSource("/x", cache_dir=tmp_path, commit="abc123")


def test_shallow_fetch_keeps_only_depth_commits(repo, tmp_path):
    for i in range(5):
        repo.commit(f"c{i}", {"skerry.yaml": f"v: {i + 2}\n"})
    source = GitSource(f"file://{repo.path}", cache_dir=tmp_path / "state", depth=1)
    head = source.fetch()
    assert head == repo.head()
    assert (source.mirror / "shallow").read_text().strip() == head
    count = subprocess.run(
        ["git", f"--git-dir={source.mirror}", "rev-list", "--count", head], capture_output=True, text=True
    ).stdout.strip()
    assert count == "1"
    repo.commit("next", {"skerry.yaml": "v: 99\n"})
    assert source.fetch() == repo.head()
    assert source.read_file(repo.head(), "skerry.yaml") == b"v: 99\n"


def test_a_promotion_push_over_ssh_uses_the_deploy_key_and_checks_the_host_key(sshd, repo, tmp_path):
    url, key, known_hosts = sshd
    source = GitSource(url, cache_dir=tmp_path / "state", auth=GitAuth(ssh_key=key, known_hosts=known_hosts))
    head = source.fetch()
    first = commit_files(source, head, {"skerry.yaml": b"v: 2\n"}, "promote\n")
    push_commit(source, first)
    assert source.fetch() == first
    # A separate write key is checked against the same known_hosts: a changed host key stops the push.
    other = tmp_path / "other_host"
    known_hosts.write_text(known_hosts.read_text().split(" ")[0] + " " + keygen(other) + "\n")
    second = commit_files(source, first, {"skerry.yaml": b"v: 3\n"}, "promote again\n")
    with pytest.raises(SourceError, match="(?i)host key"):
        push_commit(source, second, ssh_key=key)


def test_a_push_key_without_known_hosts_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="known_hosts"):
        HubConfig(repo="ssh://git@git.example/fleet.git", push_ssh_key=tmp_path / "key")
