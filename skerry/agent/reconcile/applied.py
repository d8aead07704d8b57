"""The engine's memory of what it applied: one lock, one public API, shared with the drift monitor.

Per applied object (keyed ``(group, kind, namespace, name)``) the agent
remembers:

* the drift fingerprint of what it applied (``fingerprint``), so a watch event
  can be told apart from its own write (``drift.find_drift``);
* the resourceVersion it last saw (``last_version``; its own apply or a watch
  event, ``observe``) and the digest of its last apply (``previous_digest``),
  which together tell "unchanged" from "configured" without a GET;
* the live values of drift-ignored fields it yields to (``yield_fields``);
* whether an apply of it is in flight (``begin`` / ``settle``): a watch event
  may show that very write before its fingerprint is recorded, so the monitor
  defers such events (``defer_if_in_flight``) until the apply settles.

The engine writes from its apply threads and the monitor reads and writes
from its watch threads; every method takes this module's own lock, and the
few that must be atomic with the caller's action (``record``,
``defer_if_in_flight``) do that action under it. Nothing here holds an object
body (they may be Secrets): fingerprints, versions and digests only.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from skerry.agent.reconcile.model import ObjectRef

Key = tuple[str, str, str, str]
Path = tuple


class AppliedState:
    """What the engine applied and last saw of each object; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[Key, str] = {}
        self._digests: dict[Key, str] = {}
        self._yielded: dict[Key, dict[Path, Any]] = {}
        self._fingerprints: dict[Key, tuple[ObjectRef, dict]] = {}
        self._in_flight: set[Key] = set()

    # --- the engine's writes ----------------------------------------------------------------

    def begin(self, key: Key) -> None:
        """An apply of ``key`` is about to be sent."""
        with self._lock:
            self._in_flight.add(key)

    def settle(self, key: Key) -> None:
        """The apply of ``key`` returned (applied or failed)."""
        with self._lock:
            self._in_flight.discard(key)

    def record(self, ref: ObjectRef, *, resource_version: str, digest: str, fingerprint: dict) -> None:
        """A successful apply: version, digest and fingerprint at once, so a watch event is judged
        against the fingerprint of the state it shows. The apply stays in flight until ``settle``:
        an event that arrives in between is judged after the engine has cleared the object's drift
        (``on_applied``), not cleared by it."""
        with self._lock:
            self._versions[ref.key] = resource_version
            self._digests[ref.key] = digest
            self._fingerprints[ref.key] = (ref, fingerprint)

    def remember(self, ref: ObjectRef, fingerprint: dict) -> None:
        """The fingerprint of ``ref`` as just re-applied (a drift correction)."""
        with self._lock:
            self._fingerprints[ref.key] = (ref, fingerprint)

    def keep_only(self, fingerprints: Mapping[Key, tuple[ObjectRef, dict]]) -> None:
        """After a reconcile: remember exactly these objects; a fingerprint already recorded wins."""
        with self._lock:
            self._fingerprints = {k: self._fingerprints.get(k, v) for k, v in fingerprints.items()}

    def previous_digest(self, key: Key) -> str | None:
        with self._lock:
            return self._digests.get(key)

    def yielded(self, key: Key) -> list[tuple[Path, Any]]:
        """``(path, live value)`` of the drift-ignored fields to apply as they are live."""
        with self._lock:
            return list((self._yielded.get(key) or {}).items())

    # --- the monitor's writes ---------------------------------------------------------------

    def observe(self, key: Key, resource_version: str | None) -> None:
        """Record the resourceVersion a watch saw (``None``: the object is gone)."""
        with self._lock:
            if resource_version is None:
                self._versions.pop(key, None)
                self._digests.pop(key, None)
            else:
                self._versions[key] = resource_version

    def yield_fields(self, key: Key, values: Iterable[tuple[Path, Any]]) -> None:
        """Apply these live values (``(path, value)`` of drift-ignored fields) from now on."""
        with self._lock:
            mine = self._yielded.setdefault(key, {})
            for path, value in values:
                if all(isinstance(seg, str) for seg in path):
                    mine[path] = copy.deepcopy(value)

    def defer_if_in_flight(self, key: Key, defer: Callable[[], None]) -> bool:
        """If an apply of ``key`` is in flight, call ``defer`` before it can settle and return True."""
        with self._lock:
            if key not in self._in_flight:
                return False
            defer()
            return True

    # --- reads ------------------------------------------------------------------------------

    def last_version(self, key: Key) -> str | None:
        with self._lock:
            return self._versions.get(key)

    def fingerprint(self, key: Key) -> tuple[ObjectRef, dict] | None:
        """``(ref, fingerprint)`` of what was last applied, or None if ``key`` is not managed now."""
        with self._lock:
            return self._fingerprints.get(key)

    def refs(self) -> dict[Key, ObjectRef]:
        """Every object the last reconcile applied."""
        with self._lock:
            return {k: ref for k, (ref, _) in self._fingerprints.items()}

    def keys_of(self, api_version: str, kind: str) -> list[Key]:
        """The applied objects of one kind."""
        group = api_version.rpartition("/")[0] if "/" in api_version else ""
        with self._lock:
            return [k for k in self._fingerprints if k[0] == group and k[1] == kind]

    def ref_of(self, key: Key) -> ObjectRef | str:
        """The ref of ``key`` for a message (``key`` joined when it is no longer applied)."""
        with self._lock:
            entry = self._fingerprints.get(key)
        return entry[0] if entry is not None else "/".join(key)
