"""The agent's hub addresses: one or a list of replicas (flag, variable, config field), checked once;
the first choice random, and every move away from a replica lands on another one."""

from __future__ import annotations

import itertools

import pytest

from skerry.agent.config import AgentConfig
from skerry.core.client import AVOID_SECONDS, Endpoints
from skerry.core.errors import ConfigError
from skerry.core.peers import MAX_ADDRESSES, parse_addresses


def test_a_list_is_split_trimmed_and_deduplicated_in_order():
    assert parse_addresses(" a:7440, b:7440,,a:7440 ", "x") == ("a:7440", "b:7440")
    assert parse_addresses(["hub.svc:7440"], "x") == ("hub.svc:7440",)


@pytest.mark.parametrize("bad", ["", " , ", "a:7440,nohost", "a:7440,b:0", "a:7440,b:99999", ":7440"])
def test_a_bad_entry_is_refused_naming_the_setting(bad):
    with pytest.raises(ConfigError, match="SKERRY_AGENT_HUB"):
        parse_addresses(bad, "SKERRY_AGENT_HUB")


def test_more_addresses_than_the_bound_are_refused():
    many = ",".join(f"h{i}:7440" for i in range(MAX_ADDRESSES + 1))
    with pytest.raises(ConfigError, match=f"at most {MAX_ADDRESSES}"):
        parse_addresses(many, "x")


def test_the_first_choice_spreads_a_fleet_over_the_list():
    draws = itertools.cycle([0.0, 0.34, 0.67, 0.99])
    firsts = {Endpoints("a:1,b:1,c:1", rng=lambda: next(draws)).current for _ in range(8)}
    assert firsts == {"a:1", "b:1", "c:1"}


def test_leaving_a_replica_always_lands_on_another_and_a_stale_report_moves_nothing():
    for draw in (0.0, 0.5, 0.999):
        endpoints = Endpoints("a:1,b:1,c:1", rng=lambda draw=draw: draw)
        left = endpoints.current
        assert endpoints.failed(left) != left
    endpoints = Endpoints("a:1,b:1", rng=lambda: 0.0)
    assert endpoints.failed("a:1") == "b:1"
    assert endpoints.failed("a:1") == "b:1" and endpoints.switches == 1  # another path, same dead replica
    assert endpoints.failed("b:1") == "a:1" and endpoints.switches == 2


def test_one_address_stays_the_address():
    endpoints = Endpoints("skerry-hub.skerry-system.svc:7440")
    assert endpoints.failed(endpoints.current) == "skerry-hub.skerry-system.svc:7440" and endpoints.switches == 0


def test_the_agent_takes_replicas_from_its_variable_and_its_flag():
    base = {"SKERRY_AGENT_CLUSTER": "oslo", "SKERRY_AGENT_TLS_CA": "ca", "SKERRY_AGENT_TLS_CERT": "c",
            "SKERRY_AGENT_TLS_KEY": "k", "SKERRY_AGENT_TRUST_ROOT": "root.json", "SKERRY_AGENT_ENVIRONMENT": "prod"}
    from_env = AgentConfig.from_env({**base, "SKERRY_AGENT_HUB": "a:7440,b:7440"})
    assert from_env.hub_addresses == ("a:7440", "b:7440")
    from_flag = AgentConfig.from_env({**base, "SKERRY_AGENT_HUB": "a:7440"}, hub_address="c:7440,d:7440")
    assert from_flag.hub_addresses == ("c:7440", "d:7440")
    with pytest.raises(ConfigError, match="SKERRY_AGENT_HUB or --hub"):
        AgentConfig.from_env({**base, "SKERRY_AGENT_HUB": "a:7440,b"})


def test_a_replica_that_failed_lately_is_passed_over_until_its_time_is_up():
    # a: dead, c: full. Leaving c must not send the agent back to a while b has not failed.
    now = [0.0]
    endpoints = Endpoints("a:1,b:1,c:1", rng=lambda: 0.0, clock=lambda: now[0])
    assert endpoints.current == "a:1"
    assert endpoints.failed("a:1") == "b:1"  # "the others" are b and c; the first draw takes b
    now[0] = 1.0
    assert endpoints.failed("b:1") == "c:1"  # a failed 1 s ago: passed over though the draw points at it
    now[0] = 2.0
    assert endpoints.failed("c:1") == "a:1"  # every other failed lately: the one that failed longest ago
    now[0] = 1.0 + AVOID_SECONDS
    assert endpoints.failed("a:1") == "b:1"  # b's time is up (c's is not): random among the fresh
