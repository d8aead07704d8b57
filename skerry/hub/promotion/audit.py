"""Every promotion call, allowed or not, as one JSON line: who, what, on which app, and the outcome.

Written to ``<state dir>/promotion-audit.jsonl`` (append-only, fsync'd per line: an audit line that
is lost on a crash is a line that never happened) and logged with structlog. Lines hold names,
environments, digests and commit ids; never file contents.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
from typing import Any

import structlog

from skerry.core.clock import Clock, SystemClock

log = structlog.get_logger("skerry.hub.promotion.audit")
MAX_FIELD = 2048  # one audited value; gate messages can name many clusters


class AuditLog:
    def __init__(self, path: pathlib.Path | None, *, clock: Clock | None = None):
        self.path = pathlib.Path(path) if path is not None else None
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []  # the last entries, for tests and the CLI's view
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, identity: str, method: str, outcome: str, **fields: Any) -> dict[str, Any]:
        entry = {"time": self._clock.now().isoformat(), "identity": identity, "method": method, "outcome": outcome}
        for k, v in fields.items():
            text = v if isinstance(v, (int, float, bool)) or v is None else str(v)
            if isinstance(text, str) and len(text) > MAX_FIELD:
                text = text[: MAX_FIELD - 3] + "..."
            entry[k] = text
        with self._lock:
            self.entries = [*self.entries[-999:], entry]
            if self.path is not None:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
        log.info("audit", **entry)
        return entry
