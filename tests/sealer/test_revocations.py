"""The sealer's copy of the hub's revocation list: bounded on the way in, persisted, refused when corrupt."""

from __future__ import annotations

import datetime as dt

import pytest

from skerry.api.v1 import enrollment_pb2
from skerry.core.authz import Caller
from skerry.core.errors import ConfigError, PermissionDenied
from skerry.core.revocation import MAX_ENTRIES, MAX_FILE_BYTES, RevokedSet, read_file
from skerry.core.tls import ROLE_AGENT, ROLE_OPERATOR, Identity
from skerry.sealer.revocations import HubRevocations, from_proto

FP = "ab" * 32
ISSUED = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def agent(name: str = "oslo-prod", fingerprint: str = FP) -> Caller:
    return Caller(Identity(name, frozenset({ROLE_AGENT}), fingerprint), ISSUED)


def test_a_list_from_the_hub_is_persisted_before_it_is_enforced_and_survives_a_restart(tmp_path):
    path = tmp_path / "revocations.json"
    first = HubRevocations(path)
    first.check_caller(agent())  # nothing revoked yet
    first.update(from_proto(enrollment_pb2.RevocationList(fingerprints={FP: 1}), "hub"))
    with pytest.raises(PermissionDenied, match=FP):
        first.check_caller(agent())
    restarted = HubRevocations(path)  # the hub is down: only the file speaks
    with pytest.raises(PermissionDenied, match="revoked"):
        restarted.check_caller(agent())
    restarted.check_caller(agent("oslo-dev", "cd" * 32))


def test_a_cluster_revocation_covers_certificates_issued_up_to_it_and_never_operators(tmp_path):
    cache = HubRevocations(tmp_path / "revocations.json")
    at = (ISSUED + dt.timedelta(minutes=5)).timestamp()
    cache.update(RevokedSet({"oslo-prod": at}, {}))
    with pytest.raises(PermissionDenied, match="re-enroll"):
        cache.check_caller(agent())
    cache.check_caller(Caller(agent().identity, ISSUED + dt.timedelta(minutes=1)))  # issued after it
    cache.check_caller(Caller(Identity("oslo-prod", frozenset({ROLE_OPERATOR}), FP), ISSUED))


def test_a_corrupt_persisted_list_stops_the_start_rather_than_trusting_everyone(tmp_path):
    path = tmp_path / "revocations.json"
    path.write_text('{"fingerprints": {"not-a-fingerprint": 1}}')
    with pytest.raises(ConfigError, match="not-a-fingerprint"):
        HubRevocations(path)
    path.write_text("{half")
    with pytest.raises(ConfigError, match=str(path)):
        HubRevocations(path)


def test_an_oversized_persisted_list_stops_the_start_naming_the_file_and_the_limit(tmp_path):
    path = tmp_path / "revocations.json"
    assert read_file(path) is None  # never written: nothing revoked yet
    path.write_bytes(b" " * (MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError) as err:
        HubRevocations(path)
    assert str(path) in str(err.value) and str(MAX_FILE_BYTES) in str(err.value)


@pytest.mark.parametrize("doc,problem", [
    ({"fingerprints": {f"{i:064x}": 1 for i in range(MAX_ENTRIES + 1)}}, "over"),
    ({"clusters": {"": 1}}, "not a cluster name"),
    ({"clusters": {"x" * 300: 1}}, "not a cluster name"),
    ({"clusters": ["oslo"]}, "malformed"),
    ([1, 2], "mapping"),
])
def test_a_list_breaking_a_bound_is_refused_naming_its_source(doc, problem):
    with pytest.raises(ConfigError, match=problem) as err:
        RevokedSet.from_mapping(doc, "hub 127.0.0.1:7440")
    assert "hub 127.0.0.1:7440" in str(err.value)
