"""The engine's memory of what it applied (reconcile/applied.py): pure, shared with the monitor."""

from skerry.agent.reconcile.applied import AppliedState
from skerry.agent.reconcile.model import ObjectRef

WEB = ObjectRef("apps/v1", "Deployment", "shop", "web")
CM = ObjectRef("v1", "ConfigMap", "shop", "settings")


def test_a_recorded_apply_is_remembered_with_its_version_digest_and_fingerprint():
    state = AppliedState()
    state.begin(WEB.key)
    state.record(WEB, resource_version="7", digest="sha256:a", fingerprint={"spec": 1})
    assert state.fingerprint(WEB.key) == (WEB, {"spec": 1})
    assert state.last_version(WEB.key) == "7" and state.previous_digest(WEB.key) == "sha256:a"
    # still in flight until it settles: an event meanwhile is judged after the engine cleared the drift
    assert state.defer_if_in_flight(WEB.key, lambda: None)
    state.settle(WEB.key)
    assert not state.defer_if_in_flight(WEB.key, lambda: None)
    assert state.refs() == {WEB.key: WEB} and state.keys_of("apps/v1", "Deployment") == [WEB.key]
    assert state.keys_of("v1", "ConfigMap") == []


def test_an_event_of_an_object_in_flight_is_deferred_until_it_settles():
    state = AppliedState()
    deferred = []
    state.begin(CM.key)
    assert state.defer_if_in_flight(CM.key, lambda: deferred.append(CM.key))
    state.settle(CM.key)
    assert not state.defer_if_in_flight(CM.key, lambda: deferred.append("again"))
    assert deferred == [CM.key]


def test_a_gone_object_forgets_its_version_and_digest_so_the_next_apply_asks_the_server():
    state = AppliedState()
    state.record(CM, resource_version="3", digest="sha256:b", fingerprint={})
    state.observe(CM.key, "4")
    assert state.last_version(CM.key) == "4" and state.previous_digest(CM.key) == "sha256:b"
    state.observe(CM.key, None)
    assert state.last_version(CM.key) is None and state.previous_digest(CM.key) is None


def test_after_a_reconcile_only_its_objects_are_remembered_and_fresher_fingerprints_win():
    state = AppliedState()
    state.record(CM, resource_version="1", digest="d", fingerprint={"new": True})
    state.record(WEB, resource_version="1", digest="d", fingerprint={})
    state.keep_only({CM.key: (CM, {"old": True})})
    assert state.refs() == {CM.key: CM}
    assert state.fingerprint(CM.key) == (CM, {"new": True})
    assert state.ref_of(WEB.key) == "apps/Deployment/shop/web"


def test_yielded_fields_keep_only_string_paths_and_copy_their_values():
    state = AppliedState()
    value = {"cpu": "1"}
    state.yield_fields(WEB.key, [(("spec", "replicas"), 3), (("spec", 0), "list index"), (("res",), value)])
    value["cpu"] = "2"
    assert dict(state.yielded(WEB.key)) == {("spec", "replicas"): 3, ("res",): {"cpu": "1"}}
