"""HubConfig: safe defaults, SKERRY_HUB_* variables, flags over variables, clear errors."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import pathlib
import re

import pytest

from skerry.core import config
from skerry.core.errors import ConfigError
from skerry.core.tls import TlsFiles
from skerry.hub.config import ENV_PREFIX, HubConfig, parse_duration


def test_defaults_are_safe():
    cfg = HubConfig.from_env({"SKERRY_HUB_REPO": "/srv/fleet"})
    assert cfg.repo == "/srv/fleet"
    assert cfg.branch == "main"
    assert cfg.interval == 60.0
    assert cfg.listen == "127.0.0.1:7440"  # loopback unless told otherwise
    assert cfg.tls is None and cfg.ready_file is None and cfg.log_level == "info"
    assert cfg.trust_dir is None and cfg.release_keys == ()


def test_serving_without_a_trust_repository_is_refused():
    with pytest.raises(ConfigError, match="trust_dir: .*skerry keys init --trust-dir"):
        HubConfig(repo="/srv/fleet").require_trust()


def test_serving_without_tls_is_refused():
    cfg = HubConfig(repo="/srv/fleet")
    with pytest.raises(ConfigError, match="mutual TLS.*--tls-ca"):
        cfg.require_tls()


def test_every_setting_is_read_from_the_environment(tmp_path):
    env = {
        "SKERRY_HUB_REPO": "https://git.example/fleet.git",
        "SKERRY_HUB_BRANCH": "release/2024",
        "SKERRY_HUB_INTERVAL": "5m",
        "SKERRY_HUB_LISTEN": "[::]:9000",
        "SKERRY_HUB_TLS_CA": str(tmp_path / "ca.crt"),
        "SKERRY_HUB_TLS_CERT": str(tmp_path / "hub.crt"),
        "SKERRY_HUB_TLS_KEY": str(tmp_path / "hub.key"),
        "SKERRY_HUB_TRUST_DIR": str(tmp_path / "trust"),
        "SKERRY_HUB_STATE_DIR": str(tmp_path / "state"),
        "SKERRY_HUB_RENDER_TIMEOUT": "30s",
        "SKERRY_HUB_READY_FILE": str(tmp_path / "ready.json"),
        "SKERRY_HUB_LOG_LEVEL": "DEBUG",
        "SKERRY_HUB_DRAIN": "0s",
    }
    cfg = HubConfig.from_env(env)
    assert cfg.repo == "https://git.example/fleet.git"
    assert cfg.branch == "release/2024"
    assert cfg.interval == 300.0
    assert cfg.listen == "[::]:9000"
    assert cfg.tls == TlsFiles(ca=tmp_path / "ca.crt", cert=tmp_path / "hub.crt", key=tmp_path / "hub.key")
    assert cfg.trust_dir == tmp_path / "trust"
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.render_timeout == 30.0
    assert cfg.ready_file == tmp_path / "ready.json"
    assert cfg.log_level == "debug"
    assert cfg.drain == 0.0


def test_overrides_beat_the_environment_and_none_overrides_are_ignored(tmp_path):
    env = {"SKERRY_HUB_REPO": "/from/env", "SKERRY_HUB_BRANCH": "env-branch", "SKERRY_HUB_INTERVAL": "10"}
    cfg = HubConfig.from_env(env, repo="/from/flag", branch=None, interval="2m", state_dir=str(tmp_path))
    assert cfg.repo == "/from/flag"
    assert cfg.branch == "env-branch"
    assert cfg.interval == 120.0
    assert cfg.state_dir == tmp_path


def test_tls_paths_come_together():
    with pytest.raises(ConfigError, match="missing SKERRY_HUB_TLS_KEY"):
        HubConfig.from_env({"SKERRY_HUB_REPO": "/r", "SKERRY_HUB_TLS_CA": "ca", "SKERRY_HUB_TLS_CERT": "c"})


@pytest.mark.parametrize(
    "env, match",
    [
        ({}, "repo: a repository path or URL is required"),
        ({"SKERRY_HUB_INTERVAL": "soon"}, "SKERRY_HUB_INTERVAL.*not a duration"),
        ({"SKERRY_HUB_INTERVAL": "0"}, "interval: must be positive"),
        ({"SKERRY_HUB_LISTEN": "7440"}, "listen: '7440' is not host:port"),
        ({"SKERRY_HUB_LISTEN": "localhost:99999"}, "is not host:port"),
        ({"SKERRY_HUB_BRANCH": "--upload-pack=evil"}, "not a valid branch name"),
        ({"SKERRY_HUB_BRANCH": "a..b"}, "not a valid branch name"),
        ({"SKERRY_HUB_BRANCH": "a b"}, "not a valid branch name"),
        ({"SKERRY_HUB_LOG_LEVEL": "loud"}, "log_level: 'loud' is not one of"),
        ({"SKERRY_HUB_DRAIN": "31s"}, "drain: must be between 0s and 30s"),
    ],
)
def test_invalid_settings_are_config_errors_naming_the_setting(env, match):
    base = {"SKERRY_HUB_REPO": "/srv/fleet"} if "SKERRY_HUB_REPO" not in env and env else {}
    with pytest.raises(ConfigError, match=match):
        HubConfig.from_env({**base, **env})


def test_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match="unknown hub setting.*colour"):
        HubConfig.from_env({"SKERRY_HUB_REPO": "/r"}, colour="blue")


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("60", 60),
        ("1.5", 1.5),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        ("250ms", 0.25),
        (42, 42),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


# --- flags come from the fields -------------------------------------------------------------


def _serve_parser():
    parser = argparse.ArgumentParser(prog="serve")
    config.add_flags(parser, HubConfig, ENV_PREFIX)
    return parser


def test_flags_are_made_from_the_fields_and_beat_the_environment(tmp_path):
    args = _serve_parser().parse_args(
        ["--repo", "/flag/repo", "--interval", "5m", "--tls-ca", "ca", "--tls-cert", "c", "--tls-key", "k",
         "--agent-cert-lifetime", "2h", "--release-keys", "dev=/k/dev.key", "--depth", "3"]
    )
    env = {"SKERRY_HUB_REPO": "/env/repo", "SKERRY_HUB_BRANCH": "env-branch"}
    cfg = HubConfig.from_env(env, **config.flag_values(args, HubConfig))
    assert cfg.repo == "/flag/repo" and cfg.branch == "env-branch"
    assert cfg.interval == 300.0 and cfg.depth == 3
    assert cfg.agent_cert_lifetime == datetime.timedelta(hours=2)
    assert cfg.release_keys == (("dev", pathlib.Path("/k/dev.key")),)
    assert cfg.tls == TlsFiles(ca=pathlib.Path("ca"), cert=pathlib.Path("c"), key=pathlib.Path("k"))


def test_the_stream_cap_is_derived_by_default_set_by_its_flag_and_a_negative_one_is_one_line_naming_it():
    assert HubConfig(repo="/srv/fleet").max_streams == 0  # derived from the open-file limit (skerry.hub.admission)
    args = _serve_parser().parse_args(["--repo", "/r", "--max-streams", "5000"])
    assert HubConfig.from_env({}, **config.flag_values(args, HubConfig)).max_streams == 5000
    with pytest.raises(ConfigError) as err:
        HubConfig.from_env({"SKERRY_HUB_REPO": "/srv/fleet", "SKERRY_HUB_MAX_STREAMS": "-1"})
    assert str(err.value).startswith("max_streams: ") and "-1" in str(err.value) and "\n" not in str(err.value)


def test_every_setting_but_the_dsn_has_a_flag_named_after_it_whose_help_names_its_variable():
    text = " ".join(_serve_parser().format_help().split())
    for field in dataclasses.fields(HubConfig):
        flag, variable = "--" + field.name.replace("_", "-"), f"[{ENV_PREFIX}{field.name.upper()}]"
        if field.name in ("state_dsn", "tls"):  # a DSN holds a password; tls is joined from its three paths
            assert not re.search(rf"{flag}(?![\w-])", text) and variable not in text
        else:
            assert re.search(rf"{flag}(?![\w-])", text) and variable in text, field.name


def test_the_dsn_is_read_from_the_environment_only():
    cfg = HubConfig.from_env({"SKERRY_HUB_REPO": "/r", "SKERRY_HUB_STATE": "postgresql",
                              "SKERRY_HUB_STATE_DSN": "postgresql://u:pw-9f3@h/db"})
    assert cfg.state_dsn == "postgresql://u:pw-9f3@h/db"
    assert "pw-9f3" not in repr(cfg)


def test_paths_expand_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = HubConfig.from_env({"SKERRY_HUB_REPO": "/r", "SKERRY_HUB_TRUST_DIR": "~/trust"}, state_dir="~/state")
    assert cfg.trust_dir == tmp_path / "trust" and cfg.state_dir == tmp_path / "state"


def test_a_whole_tls_value_fills_its_three_paths(tmp_path):
    files = TlsFiles(ca=tmp_path / "ca", cert=tmp_path / "c", key=tmp_path / "k")
    cfg = HubConfig.from_env({"SKERRY_HUB_REPO": "/r"}, tls=files)
    assert cfg.tls == files and (cfg.tls_ca, cfg.tls_cert, cfg.tls_key) == (files.ca, files.cert, files.key)


def test_the_role_defaults_to_both_comes_from_the_environment_and_is_checked():
    assert HubConfig(repo="/srv/fleet").role == "both"
    assert HubConfig.from_env({"SKERRY_HUB_REPO": "/srv/fleet", "SKERRY_HUB_ROLE": "serve"}).role == "serve"
    assert HubConfig.from_env({"SKERRY_HUB_REPO": "/srv/fleet"}, role="writer").role == "writer"
    with pytest.raises(ConfigError, match="role: 'leader' is not one of writer, serve, both"):
        HubConfig(repo="/srv/fleet", role="leader")
