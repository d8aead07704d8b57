"""The unseal gate: every attempt is audited, values never logged (who may call it: tests/transport/test_authz_table.py)."""

from __future__ import annotations

import pytest

from skerry.core.errors import InvalidInput, NotFound, SealError
from skerry.core.sealedsecret import NAMESPACE_WIDE, encryption_label
from skerry.core.tls import ROLE_AGENT, ROLE_HUB, ROLE_OPERATOR, Identity
from skerry.sealer import crypto
from skerry.sealer.authz import UnsealAttempt, UnsealGate

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
