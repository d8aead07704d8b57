"""``skerry keys``: init, add, revoke, rotate-root and status on a trust directory."""

from __future__ import annotations

import json
import stat

from skerry.cli import main
from skerry.hub.trust.repository import TrustRepository


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["keys", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_init_makes_private_keys_0600_and_a_root_for_agents(tmp_path, capsys):
    code, out, err = run(capsys, "init", "--trust-dir", str(tmp_path / "t"), "--env", "dev", "--env", "prod:3:2")
    assert code == 0, err
    assert "move the offline keys off the hub" in err
    for key in (tmp_path / "t").rglob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert json.loads((tmp_path / "t" / "root.json").read_text())["signed"]["_type"] == "root"
    code, out, _ = run(capsys, "status", "--trust-dir", str(tmp_path / "t"))
    assert code == 0 and "release-prod" in out and "2 of 3" in out


def test_add_revoke_and_rotate_root_write_new_versions(tmp_path, capsys):
    t = tmp_path / "t"
    run(capsys, "init", "--trust-dir", str(t), "--env", "prod:2:1")
    offline = t / "offline"
    release_keys = ("--signing-key", str(offline / "release-prod-1.key"), "--signing-key",
                    str(offline / "release-prod-2.key"))
    code, out, err = run(capsys, "add", "--trust-dir", str(t), "--role", "release-prod", "--key",
                         str(tmp_path / "ci-c.key"), "--threshold", "2", "--signing-key", str(offline / "targets.key"))
    assert code == 1 and "release-prod v2 would not verify" in err  # its bins need the release keys too
    code, out, err = run(capsys, "add", "--trust-dir", str(t), "--role", "release-prod", "--key",
                         str(tmp_path / "ci-c.key"), "--threshold", "2", "--signing-key", str(offline / "targets.key"),
                         *release_keys)
    assert code == 0, err
    repo = TrustRepository(t, online={})
    assert len(repo.role_keyids("release-prod")) == 3 and repo.role_threshold("release-prod") == 2
    keyid = repo.role_keyids("release-prod")[0]
    code, out, err = run(capsys, "revoke", "--trust-dir", str(t), "--role", "release-prod", "--keyid", keyid[:10],
                         "--signing-key", str(offline / "targets.key"), "--signing-key", str(tmp_path / "ci-c.key"),
                         *release_keys)
    assert code == 0, err
    assert keyid not in TrustRepository(t, online={}).role_keyids("release-prod")
    code, out, err = run(capsys, "revoke", "--trust-dir", str(t), "--role", "release-prod", "--keyid",
                         TrustRepository(t, online={}).role_keyids("release-prod")[0],
                         "--signing-key", str(offline / "targets.key"))
    assert code == 1 and "below its threshold" in err  # would leave 1 key for a threshold of 2
    code, out, err = run(capsys, "rotate-root", "--trust-dir", str(t), "--old-key", str(offline / "root-1.key"),
                         "--new-key", str(tmp_path / "root-2.key"))
    assert code == 0 and out.startswith("root v2"), err
    assert (t / "repository" / "metadata" / "2.root.json").exists()
    assert json.loads((t / "root.json").read_text())["signed"]["version"] == 2


def test_a_change_signed_by_the_wrong_key_is_refused_before_clients_see_it(tmp_path, capsys):
    t = tmp_path / "t"
    run(capsys, "init", "--trust-dir", str(t), "--env", "dev")
    code, _, err = run(capsys, "add", "--trust-dir", str(t), "--role", "timestamp", "--key", str(tmp_path / "ts2.key"),
                       "--signing-key", str(t / "offline" / "targets.key"))
    assert code == 1 and "would not verify" in err
    assert not (t / "repository" / "metadata" / "2.root.json").exists()
    from skerry.hub.trust import keys as keyfiles

    keyfiles.generate_key(tmp_path / "stranger.key")
    code, _, err = run(capsys, "rotate-root", "--trust-dir", str(t), "--old-key", str(tmp_path / "stranger.key"),
                       "--new-key", str(tmp_path / "root-2.key"))
    assert code == 1 and "current and the new root" in err


def test_keys_init_dev_gives_the_hub_every_release_key_and_says_so(tmp_path, capsys):
    from skerry.core.bundle import Bundle

    assert main(["keys", "init", "--trust-dir", str(tmp_path / "t"), "--env", "dev", "--env", "prod:3:2",
                        "--dev"]) == 0
    assert "WARNING: --dev" in capsys.readouterr().err
    repo = TrustRepository.open(tmp_path / "t")  # no --release-keys: the dev directory names them
    data = Bundle("", "a" * 40, "file:///f", ("x",), "kustomize", "v", (
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}},)).encode()
    for env in ("dev", "prod"):  # prod's threshold of 2 is met by the hub's own keys
        directed = repo.direct(f"c-{env}", env, data, revision="a" * 40, release=1)
        assert directed is not None and directed.path.startswith(f"releases/{env}/c-{env}/")
