"""The unseal gate: only agents unseal, every attempt is audited, values never logged."""

from __future__ import annotations

import pytest

from skerry.core.errors import InvalidInput, NotFound, PermissionDenied, SealError
from skerry.core.sealedsecret import NAMESPACE_WIDE, encryption_label
from skerry.core.tls import ROLE_AGENT, ROLE_HUB, ROLE_OPERATOR, Identity
from skerry.sealer import crypto
from skerry.sealer.authz import UnsealAttempt, UnsealGate, authorize_unseal

from .helpers import SECRET_VALUE

AGENT = Identity("cluster-a", frozenset({ROLE_AGENT}), "ab" * 32)
OPERATOR = Identity("alice", frozenset({ROLE_OPERATOR}), "cd" * 32)
HUB = Identity("hub", frozenset({ROLE_HUB}), "ef" * 32)


def attempt(registry, namespace="apps", name="db", scope="strict", domain="", **items) -> UnsealAttempt:
    key = registry.sealing_key()
    label = encryption_label(namespace, name, scope)
    data = {
        k: crypto.seal_value(key.public_key, v.encode(), label)
        for k, v in (items or {"password": SECRET_VALUE}).items()
    }
    return UnsealAttempt(namespace=namespace, name=name, scope=scope, domain=domain, encrypted_data=data)


def test_policy_allows_agents_only():
    req = UnsealAttempt("apps", "db", "strict", "", {"password": "x"})
    authorize_unseal(AGENT, req)
    for who in (OPERATOR, HUB, Identity("nobody", frozenset(), "00")):
        with pytest.raises(PermissionDenied, match=f"{who.name} may not unseal apps/db"):
            authorize_unseal(who, req)


def test_agent_gets_every_item_back_and_the_attempt_is_audited(shared_registry, logs):
    req = attempt(shared_registry, password=SECRET_VALUE, user="admin")
    assert UnsealGate(shared_registry).unseal(AGENT, req) == {
        "password": SECRET_VALUE.encode(),
        "user": b"admin",
    }
    (record,) = logs.events("unseal")
    assert record["outcome"] == "allowed"
    assert record["identity"] == str(AGENT)
    assert (record["namespace"], record["name"], record["scope"], record["domain"]) == (
        "apps",
        "db",
        "strict",
        "default",
    )
    assert record["items"] == ["password", "user"]
    assert record["key_ids"] == [shared_registry.sealing_key().key_id]
    assert SECRET_VALUE not in logs.text
    assert req.encrypted_data["password"] not in logs.text  # not even the sealed form


def test_operator_is_denied_before_anything_is_decrypted_and_it_is_audited(
    shared_registry, logs, monkeypatch
):
    def must_not_run(*a, **k):
        raise AssertionError("decrypted for an unauthorised identity")

    monkeypatch.setattr(shared_registry, "unseal", must_not_run)
    with pytest.raises(PermissionDenied, match="skerry:operator:alice"):
        UnsealGate(shared_registry).unseal(OPERATOR, attempt(shared_registry))
    (record,) = logs.events("unseal")
    assert record["outcome"] == "denied"
    assert record["identity"] == str(OPERATOR)
    assert record["key_ids"] == []


@pytest.mark.parametrize(
    "changes,error",
    [
        ({"scope": "galaxy-wide"}, InvalidInput),
        ({"namespace": ""}, InvalidInput),
        ({"name": ""}, InvalidInput),
        ({"encrypted_data": {}}, InvalidInput),
        ({"encrypted_data": {"../x": "AAAA"}}, InvalidInput),
        ({"encrypted_data": {"password": "%%%"}}, SealError),
        ({"domain": "no-oslo"}, NotFound),
        ({"name": "renamed"}, SealError),
        ({"namespace": "elsewhere"}, SealError),
        ({"scope": NAMESPACE_WIDE}, SealError),
    ],
)
def test_bad_or_misplaced_requests_fail_and_are_audited(shared_registry, logs, changes, error):
    import dataclasses

    req = dataclasses.replace(attempt(shared_registry), **changes)
    with pytest.raises(error) as err:
        UnsealGate(shared_registry).unseal(AGENT, req)
    assert SECRET_VALUE not in str(err.value)
    (record,) = logs.events("unseal")
    assert record["outcome"] == "failed"
    assert record["reason"] == error.reason
    assert SECRET_VALUE not in logs.text


def test_failing_item_is_named_in_the_error(shared_registry):
    good = attempt(shared_registry)
    bad = dict(
        good.encrypted_data,
        other=crypto.seal_value(shared_registry.sealing_key().public_key, b"v", b"apps/elsewhere"),
    )
    with pytest.raises(SealError, match="item 'other' of apps/db"):
        UnsealGate(shared_registry).unseal(AGENT, UnsealAttempt("apps", "db", "strict", "", bad))


def test_empty_scope_means_strict(shared_registry):
    req = attempt(shared_registry)
    req = UnsealAttempt(req.namespace, req.name, "", "", req.encrypted_data)
    assert UnsealGate(shared_registry).unseal(AGENT, req) == {"password": SECRET_VALUE.encode()}


def test_a_custom_policy_can_be_plugged_in(shared_registry):
    def only_cluster_b(identity, request):
        if identity.name != "cluster-b":
            raise PermissionDenied(f"{identity} is not cluster-b")

    with pytest.raises(PermissionDenied, match="not cluster-b"):
        UnsealGate(shared_registry, policy=only_cluster_b).unseal(AGENT, attempt(shared_registry))
