"""SealerConfig: safe defaults, SKERRY_SEALER_* from the environment, flags on top."""

from __future__ import annotations

import pathlib

import pytest

from skerry.core.errors import ConfigError
from skerry.sealer.config import SealerConfig
from skerry.sealer.keys import configured_kek

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
        "SKERRY_SEALER_DRAIN": "0s",
        "UNRELATED": "x",
    }
    c = SealerConfig.from_env(env)
    assert c.drain == 0.0
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
        ({"SKERRY_SEALER_LISTEN": "7443"}, "(?i)SKERRY_SEALER_LISTEN.*host:port"),
        ({"SKERRY_SEALER_LISTEN": "host:99999"}, "(?i)host:port"),
        ({"SKERRY_SEALER_LOG_LEVEL": "loud"}, "log_level: 'loud' is not one of"),
        ({"SKERRY_SEALER_GRACE_SECONDS": "soon"}, "GRACE_SECONDS"),
        ({"SKERRY_SEALER_DRAIN": "1m"}, "drain: must be between 0s and 30s"),
        ({"SKERRY_SEALER_DOMAINS": " , "}, "at least one key domain"),
    ],
)
def test_bad_values_are_config_errors(env, match):
    with pytest.raises(ConfigError, match=match):
        SealerConfig.from_env({**TLS_ENV, **env})


def test_unknown_overrides_are_programming_errors():
    with pytest.raises(TypeError):
        SealerConfig.from_env(TLS_ENV, listne="x")


def test_key_lifecycle_trust_and_limit_settings_come_from_the_environment(tmp_path):
    import base64

    env = {
        **TLS_ENV,
        "SKERRY_SEALER_TRUST_ROOT": "/k/root.json",
        "SKERRY_SEALER_CLUSTER_DOMAINS": "/etc/skerry/domains.yaml",
        "SKERRY_SEALER_RENEWAL_DAYS": "7",
        "SKERRY_SEALER_RATE_PER_SECOND": "5",
        "SKERRY_SEALER_RATE_BURST": "100",
        "SKERRY_SEALER_CERT_LISTEN": "0.0.0.0:8080",
        "SKERRY_SEALER_KEK": base64.b64encode(b"k" * 32).decode(),
    }
    c = SealerConfig.from_env(env)
    assert c.trust_root == pathlib.Path("/k/root.json")
    assert c.cluster_domains == pathlib.Path("/etc/skerry/domains.yaml")
    assert (c.renewal_days, c.rate_per_second, c.rate_burst) == (7.0, 5.0, 100.0)
    assert c.cert_listen == "0.0.0.0:8080"
    assert configured_kek(c.kek_file, c.kek) == b"k" * 32
    assert "kkkk" not in repr(c)
    kek = tmp_path / "kek"
    kek.write_bytes(b"f" * 32)
    c = SealerConfig.from_env(env, kek_file=kek)
    assert configured_kek(c.kek_file, c.kek) == b"f" * 32, "the file wins"


def test_defaults_renew_monthly_and_trust_no_hub():
    c = SealerConfig.from_env(TLS_ENV)
    assert c.renewal_days == 30 and c.trust_root is None and c.cert_listen is None
    assert configured_kek(c.kek_file, c.kek) is None


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SKERRY_SEALER_RENEWAL_DAYS": "-1"}, "renewal days must not be negative"),
        ({"SKERRY_SEALER_RATE_BURST": "0"}, "unseal rate limits must be positive"),
        ({"SKERRY_SEALER_CERT_LISTEN": "8080"}, "(?i)CERT_LISTEN.*host:port"),
        ({"SKERRY_SEALER_RATE_PER_SECOND": "fast"}, "must be a number"),
    ],
)
def test_bad_lifecycle_settings_are_named(env, message):
    with pytest.raises(ConfigError, match=message):
        SealerConfig.from_env({**TLS_ENV, **env})
