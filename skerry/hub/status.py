"""The latest status report of each cluster's agent, in memory.

Reports are the agents' to give again: after a hub restart the board is
empty until each agent reports. A report older (by the agent's
``observed_unix_ms``) than the one held is ignored, so reports that cross on
the network never move a cluster's status backwards, unless it is about a
newer applied release (the agent's clock may have stepped back).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Iterable

from skerry.core import release_number
from skerry.core.conditions import Condition

# Bounds on what one report may make the hub hold.
MAX_OBJECTS = 20_000
MAX_CONDITIONS = 64
MAX_TEXT = 4096


def _text(value: str) -> str:
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 3] + "..."


@dataclasses.dataclass(frozen=True)
class ObjectStatus:
    group: str
    version: str
    kind: str
    namespace: str
    name: str
    action: str
    message: str = ""


@dataclasses.dataclass(frozen=True)
class ClusterStatus:
    cluster: str
    applied_version: int = 0
    applied_digest: str = ""
    applied_number: int = 0  # display only (``skerry.core.release_number``); 0: unknown
    revision: str = ""
    conditions: tuple[Condition, ...] = ()
    objects: tuple[ObjectStatus, ...] = ()
    agent_version: str = ""
    observed_unix_ms: int = 0
    received_at: _dt.datetime | None = None

    @property
    def applied_label(self) -> str:
        """The applied release as people read it (``r7``); ``-`` before the agent applied any."""
        return release_number.label(self.applied_number, self.applied_version)

    def bounded(self) -> ClusterStatus:
        """A copy within the hub's size limits (long messages cut, excess entries dropped)."""
        return dataclasses.replace(
            self,
            conditions=tuple(
                dataclasses.replace(c, message=_text(c.message)) for c in self.conditions[:MAX_CONDITIONS]
            ),
            objects=tuple(
                dataclasses.replace(o, message=_text(o.message)) for o in self.objects[:MAX_OBJECTS]
            ),
            agent_version=_text(self.agent_version),
        )


class StatusBoard:
    def __init__(self) -> None:
        self._latest: dict[str, ClusterStatus] = {}

    def report(self, status: ClusterStatus) -> bool:
        """Keep ``status`` as the cluster's latest; False (and ignored) if a newer one is held."""
        held = self._latest.get(status.cluster)
        if (
            held is not None
            and status.observed_unix_ms < held.observed_unix_ms
            and status.applied_version <= held.applied_version
        ):
            return False  # crossed on the network; a report about a newer release is taken anyway
        self._latest[status.cluster] = status.bounded()
        return True

    def get(self, cluster: str) -> ClusterStatus | None:
        return self._latest.get(cluster)

    def all(self) -> dict[str, ClusterStatus]:
        return dict(self._latest)

    def retain(self, clusters: Iterable[str]) -> None:
        """Forget clusters that are no longer in the fleet."""
        keep = set(clusters)
        for name in [n for n in self._latest if n not in keep]:
            del self._latest[name]
