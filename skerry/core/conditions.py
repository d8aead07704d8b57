"""The one condition type: what an agent says of its cluster (Ready, Verified, Drifted, Pruned, ...) and
what the hub keeps of each report.

Agent and hub may not import each other (an import contract), so the type they exchange lives here,
once, in the shape Kubernetes conditions have (type, status ``True``/``False``/``Unknown``, a
CamelCase reason, a message for people). The wire form is ``skerry.api.v1`` ``Condition``.
"""

from __future__ import annotations

import dataclasses

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""

    @property
    def is_true(self) -> bool:
        return self.status == TRUE
