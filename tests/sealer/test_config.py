"""SealerConfig: safe defaults, SKERRY_SEALER_* from the environment, flags on top."""

from __future__ import annotations

import pathlib

import pytest

from skerry.core.errors import ConfigError
from skerry.sealer.config import SealerConfig

TLS_ENV = {
    "SKERRY_SEALER_TLS_CA": "/t/ca.crt",
    "SKERRY_SEALER_TLS_CERT": "/t/s.crt",
    "SKERRY_SEALER_TLS_KEY": "/t/s.key",
}


def test_defaults_are_loopback_default_domain_and_info():
    c = SealerConfig.from_env(TLS_ENV)
    assert c.listen == "127.0.0.1:7443"
    assert c.domains == ("default",)
    assert c.log_level == "info"
    assert c.ready_file is None
    assert c.tls_files.ca == pathlib.Path("/t/ca.crt")


def test_environment_is_read_and_overrides_win():
    env = {
        **TLS_ENV,
        "SKERRY_SEALER_LISTEN": "0.0.0.0:9000",
        "SKERRY_SEALER_KEYS_DIR": "/k",
        "SKERRY_SEALER_DOMAINS": "default, no-oslo",
        "SKERRY_SEALER_READY_FILE": "/r.json",
        "SKERRY_SEALER_LOG_LEVEL": "DEBUG",
        "SKERRY_SEALER_GRACE_SECONDS": "2.5",
        "UNRELATED": "x",
    }
    c = SealerConfig.from_env(env)
    assert (c.listen, c.keys_dir, c.domains, c.ready_file, c.log_level, c.grace_seconds) == (
        "0.0.0.0:9000",
        pathlib.Path("/k"),
        ("default", "no-oslo"),
        pathlib.Path("/r.json"),
        "debug",
        2.5,
    )
    c = SealerConfig.from_env(env, listen="127.0.0.1:0", keys_dir=None, log_level="warning")
    assert (c.listen, c.keys_dir, c.log_level) == ("127.0.0.1:0", pathlib.Path("/k"), "warning")


def test_tls_is_mandatory():
    with pytest.raises(ConfigError, match="SKERRY_SEALER_TLS_CERT, SKERRY_SEALER_TLS_KEY"):
        SealerConfig.from_env({"SKERRY_SEALER_TLS_CA": "/ca"})


@pytest.mark.parametrize(
    "env,match",
    [
        ({"SKERRY_SEALER_LISTEN": "7443"}, "HOST:PORT"),
        ({"SKERRY_SEALER_LISTEN": "host:99999"}, "HOST:PORT"),
        ({"SKERRY_SEALER_LOG_LEVEL": "loud"}, "log level"),
        ({"SKERRY_SEALER_GRACE_SECONDS": "soon"}, "GRACE_SECONDS"),
        ({"SKERRY_SEALER_DOMAINS": " , "}, "at least one key domain"),
    ],
)
def test_bad_values_are_config_errors(env, match):
    with pytest.raises(ConfigError, match=match):
        SealerConfig.from_env({**TLS_ENV, **env})


def test_unknown_overrides_are_programming_errors():
    with pytest.raises(TypeError):
        SealerConfig.from_env(TLS_ENV, listne="x")
