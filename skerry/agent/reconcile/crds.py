"""Waiting for the kinds a bundle's own CRDs add, within one budget per reconcile.

A bundle may carry a CustomResourceDefinition and objects of its kind. The
API server serves the kind only once the CRD is ``Established`` and
discovery is refreshed, so the engine waits — bounded: all waits of one
round share ``crd_wait_seconds``, after which an object whose kind is still
not served fails with that said. A CRD that failed to apply fails its
objects at once (``failed``) instead of spending the budget on them.
Sleep and clock are injected (tests pass fakes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from skerry.core.errors import KubeError

log = structlog.get_logger("skerry.agent.reconcile")


@dataclasses.dataclass(frozen=True)
class CrdWaitPolicy:
    seconds: float  # the budget of one round
    interval: float  # between two looks
    sleep: Callable[[float], None]
    monotonic: Callable[[], float]


@dataclasses.dataclass
class KindWait:
    """One round's wait for new kinds: the policy, the budget's deadline, the CRDs that failed."""

    policy: CrdWaitPolicy
    failed: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # (group, kind) of failed CRDs
    deadline: float | None = None  # set at the first wait

    def fresh(self) -> KindWait:
        """The same failed CRDs with an unspent budget (a drift correction after the round)."""
        return KindWait(self.policy, set(self.failed))

    def crd_failed(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        if kind:
            self.failed.add((str(spec.get("group", "")), str(kind)))

    def _left(self) -> float:
        now = self.policy.monotonic()
        if self.deadline is None:
            self.deadline = now + self.policy.seconds
        return self.deadline - now

    def for_kind(self, kube) -> bool:
        """Sleep a little and refresh discovery, within the budget; False when it is spent."""
        left = self._left()
        if left <= 0:
            return False
        self.policy.sleep(min(self.policy.interval, left))
        _refresh_discovery(kube)
        return True

    def for_established(self, kube, names: list[str]) -> None:
        """After CRDs changed: wait (bounded) for new ones to be Established, then refresh discovery."""
        pending = list(names)
        while pending:
            try:
                pending = [n for n in pending if not kube.crd_established(n)]
            except KubeError:
                pass
            if not pending:
                break
            left = self._left()
            if left <= 0:
                log.warning("CustomResourceDefinitions not established in time", crds=pending)
                break
            self.policy.sleep(min(self.policy.interval, left))
        _refresh_discovery(kube)


def _refresh_discovery(kube) -> None:
    try:
        kube.invalidate_discovery()
    except KubeError:
        pass
