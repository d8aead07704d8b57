"""Status protos, configuration from the environment, and the command line."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import pathlib

import pytest

from skerry.agent import conditions
from skerry.agent.config import AgentConfig
from skerry.agent.reconcile.model import Condition, ObjectRef, ObjectResult, ReconcileResult
from skerry.agent.status import to_proto
from skerry.cli import agent as cli
from skerry.core import config
from skerry.core.errors import ConfigError


def test_status_proto_carries_results_and_conditions():
    result = ReconcileResult(
        cluster="oslo",
        release=4,
        digest="sha256:ab",
        revision="c0ffee",
        objects=(ObjectResult(ObjectRef("apps/v1", "Deployment", "shop", "web"), "created"),),
        conditions=(Condition("Ready", "True", "ReconciliationSucceeded", "ok"),),
    )
    when = _dt.datetime(2030, 1, 1, tzinfo=_dt.UTC)
    proto = to_proto(
        result, extra_conditions=[Condition("Verified", "True", "Verified")], observed=when, version="1.2.3"
    )
    assert (proto.cluster, proto.applied_version, proto.applied_digest, proto.revision) == (
        "oslo",
        4,
        "sha256:ab",
        "c0ffee",
    )
    (obj,) = proto.objects
    assert (obj.ref.group, obj.ref.version, obj.ref.kind, obj.ref.namespace, obj.ref.name, obj.action) == (
        "apps",
        "v1",
        "Deployment",
        "shop",
        "web",
        "created",
    )
    assert [c.type for c in proto.conditions] == ["Ready", "Verified"]
    assert proto.observed_unix_ms == int(when.timestamp() * 1000)
    assert proto.agent_version == "1.2.3"


ENV = {
    "SKERRY_AGENT_CLUSTER": "oslo",
    "SKERRY_AGENT_HUB": "hub.example:8443",
    "SKERRY_AGENT_TLS_CA": "/etc/skerry/ca.crt",
    "SKERRY_AGENT_TLS_CERT": "/etc/skerry/agent.crt",
    "SKERRY_AGENT_TLS_KEY": "/etc/skerry/agent.key",
    "SKERRY_AGENT_TRUST_ROOT": "/etc/skerry/root.json",
    "SKERRY_AGENT_ENVIRONMENT": "prod",
}


def test_config_reads_the_environment_with_safe_defaults():
    config = AgentConfig.from_env(ENV)
    assert config.cluster == "oslo" and config.hub_address == "hub.example:8443"
    assert config.trust_root == pathlib.Path("/etc/skerry/root.json") and config.environment == "prod"
    assert config.namespace == "skerry-system" and config.field_manager == "skerry"
    assert config.kubeconfig is None and config.sealer_address is None
    assert config.allow_prune_all is False and config.freeze_policy == "keep"
    assert config.watch_retry == 5.0 and config.slow_apply == 1.0


@pytest.mark.parametrize("slow_apply, slow", [(1.0, False), (0.5, True), (0.4, True)])
def test_the_api_server_is_called_slow_from_the_configured_median(slow_apply, slow):
    snapshot = conditions.AgentSnapshot(
        cluster="oslo", api_latency=conditions.ApiLatency(median=0.5, samples=8), slow_apply=slow_apply
    )
    found = [c for c in conditions.agent_conditions(snapshot) if c.type == "APIServerSlow"]
    assert bool(found) is slow
    assert not found or f"slow from {slow_apply:g} s" in found[0].message


def test_overrides_win_over_the_environment_and_none_is_ignored():
    config = AgentConfig.from_env(
        ENV, cluster="bergen", namespace=None, allow_prune_all=True, trust_root=pathlib.Path("/r.json")
    )
    assert config.cluster == "bergen" and config.namespace == "skerry-system"
    assert config.allow_prune_all is True and config.trust_root == pathlib.Path("/r.json")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"SKERRY_AGENT_CLUSTER": ""}, "cluster name"),
        ({"SKERRY_AGENT_CLUSTER": "Not_A_Name"}, "DNS"),
        ({"SKERRY_AGENT_HUB": "nohost"}, "HOST:PORT"),
        ({"SKERRY_AGENT_TLS_KEY": ""}, "SKERRY_AGENT_TLS_KEY"),
        ({"SKERRY_AGENT_TRUST_ROOT": ""}, "TUF trust root"),
        ({"SKERRY_AGENT_ENVIRONMENT": "Prod_1"}, "environment"),
        ({"SKERRY_AGENT_FREEZE_POLICY": "melt"}, "freeze_policy: 'melt' is not one of keep, suspend"),
        ({"SKERRY_AGENT_ALLOW_PRUNE_ALL": "maybe"}, "ALLOW_PRUNE_ALL"),
        ({"SKERRY_AGENT_LOG_LEVEL": "loud"}, "log_level: 'loud' is not one of"),
        ({"SKERRY_AGENT_WATCH_RETRY": "0.1"}, r"--watch-retry \(SKERRY_AGENT_WATCH_RETRY\) must be between 0.5s"),
        ({"SKERRY_AGENT_SLOW_APPLY": "2m"}, r"--slow-apply \(SKERRY_AGENT_SLOW_APPLY\) must be between 0.1s and 60s"),
    ],
)
def test_invalid_config_is_one_clear_error(change, message):
    with pytest.raises(ConfigError, match=message):
        AgentConfig.from_env({**ENV, **change})


def parse(argv):
    parser = argparse.ArgumentParser(prog="skerry")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_has_a_flag_for_every_config_field():
    args = parse(
        (
            "agent run --cluster oslo --hub h:1 --sealer s:2 --domain eu --tls-ca ca --tls-cert c "
            "--tls-key k --trust-root root.json --environment prod --freeze-policy suspend "
            "--trust-poll 5 --kubeconfig kc --context ctx --state-dir st --namespace ns "
            "--field-manager fm --ready-file r.json --log-level debug --allow-prune-all "
            "--allow-prune-protected --resync-interval 1h30m"
        ).split()
    )
    assert args.func is cli.handler
    values = config.flag_values(args, AgentConfig)
    assert set(values) == {f.name for f in dataclasses.fields(AgentConfig)}, "every field has a flag"
    assert values["trust_root"] == "root.json" and values["environment"] == "prod"
    assert values["hub_address"] == "h:1" and values["allow_prune_all"] is True
    assert values["allow_prune_protected"] is True
    assert values["sealer_domain"] == "eu" and values["kube_context"] == "ctx"
    got = AgentConfig.from_env({}, **values)
    assert got.resync_seconds == 5400.0 and got.trust_root == pathlib.Path("root.json") and got.watch is True


def test_switches_and_repeated_flags_beat_their_variables():
    env = {**ENV, "SKERRY_AGENT_WATCH": "true", "SKERRY_AGENT_DRIFT_IGNORE": "*:.metadata.labels"}
    args = parse(["agent", "run", "--no-watch", "--drift-ignore", "apps/Deployment:.spec.replicas",
                  "--drift-ignore", "*:.metadata.annotations,v1/ConfigMap:.data"])
    got = AgentConfig.from_env(env, **config.flag_values(args, AgentConfig))
    assert got.watch is False
    assert got.drift_ignore == ("apps/Deployment:.spec.replicas", "*:.metadata.annotations", "v1/ConfigMap:.data")
    assert AgentConfig.from_env(env, **config.flag_values(parse(["agent", "run"]), AgentConfig)).watch is True


def test_a_value_outside_a_flags_choices_is_a_usage_error():
    with pytest.raises(SystemExit):
        parse(["agent", "run", "--log-level", "loud"])


def test_cli_error_is_one_line_naming_the_file_and_exit_1(tmp_path, capsys, monkeypatch, pki):
    for key in list(__import__("os").environ):
        if key.startswith("SKERRY_AGENT_"):
            monkeypatch.delenv(key)
    missing = tmp_path / "nope.json"
    args = parse(
        [
            "agent",
            "run",
            "--cluster",
            "oslo",
            "--hub",
            "127.0.0.1:1",
            "--tls-ca",
            str(pki.agent("oslo").ca),
            "--tls-cert",
            str(pki.agent("oslo").cert),
            "--tls-key",
            str(pki.agent("oslo").key),
            "--trust-root",
            str(missing),
            "--environment",
            "prod",
            "--state-dir",
            str(tmp_path / "state"),
        ]
    )
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("skerry agent run: error: ")
    assert str(missing) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_missing_settings_exit_1(capsys, monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("SKERRY_AGENT_"):
            monkeypatch.delenv(key)
    args = parse(["agent", "run"])
    assert args.func(args) == 1
    assert "cluster name" in capsys.readouterr().err
