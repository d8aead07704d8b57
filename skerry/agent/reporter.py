"""Saying what the agent did: the ready file, the status report to the hub, the signed report.

After every change (a reconcile, a refusal, a drift correction, a freeze)
the loop calls ``publish``: the status (``conditions.status_result`` of the
agent's snapshot) is written, if ``ready_file`` is set, as a small JSON file
replaced atomically::

    {"cluster": "oslo", "applied_release": 1796415910017, "applied_name": "r7",
     "applied_digest": "sha256:...",
     "revision": "<sha>", "ready": true, "conditions": [...], "updated": "..."}

and queued for the hub. ``run`` delivers the newest queued status: a failed
report is retried with a capped exponential backoff, and a newer status
supersedes it (only the newest is worth sending). Each delivered
report is also sent signed (``attest.ReportSigner``). ``changed`` is
notified after each publish and delivery, for ``AgentApp.wait_until``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import pathlib
from collections.abc import Callable

import structlog

from skerry.agent.reconcile.model import ReconcileResult
from skerry.agent.status import to_proto
from skerry.core.backoff import capped_exponential
from skerry.core.clock import Clock
from skerry.core.errors import SkerryError
from skerry.core.files import atomic_write

log = structlog.get_logger("skerry.agent")

# The first retry of a failed report: soon, a hub restart takes about a second.
REPORT_RETRY_BASE_SECONDS = 0.5


class Reporter:
    def __init__(
        self,
        hub,
        clock: Clock,
        *,
        status: Callable[[], ReconcileResult],
        ready_file: pathlib.Path | None = None,
        ready_extra: Callable[[], dict] = dict,
        metrics_port: Callable[[], int | None] = lambda: None,
        signer=None,
        retry_cap: float = 300.0,
    ):
        self.hub = hub
        self.clock = clock
        self.signer = signer
        self._status = status
        self._ready_file = ready_file
        self._ready_extra = ready_extra
        self._metrics_port = metrics_port
        self._retry_cap = retry_cap
        self._pending = None
        self._wakeup = asyncio.Event()
        self.changed = asyncio.Condition()
        self.reports_sent = 0
        self.signed_reports_sent = 0

    async def publish(self) -> None:
        """Write the ready file and queue the current status for the hub."""
        result = self._status()
        if self._ready_file is not None:
            try:
                await asyncio.to_thread(
                    write_ready_file,
                    self._ready_file,
                    result,
                    self.clock.now(),
                    self._ready_extra(),
                    metrics_port=self._metrics_port(),
                )
            except OSError as e:
                log.warning("cannot write the ready file", path=str(self._ready_file), error=e.strerror)
        self._pending = to_proto(result, observed=self.clock.now())
        self._wakeup.set()
        await self.notify()

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def run(self) -> None:
        """Deliver the newest status to the hub; retried with backoff, superseded by newer ones."""
        attempt = 0
        while True:
            await self._wakeup.wait()
            status = self._pending
            if status is None:
                self._wakeup.clear()
                continue
            try:
                await self.hub.report(status)
            except SkerryError as e:
                delay = capped_exponential(attempt, base=REPORT_RETRY_BASE_SECONDS, cap=self._retry_cap)
                attempt += 1
                log.warning("status report failed; will retry", reason=e.reason, error=str(e), retry_in=delay)
                loop = asyncio.get_running_loop()
                started = loop.time()
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for (3.11) can lose a cancel
                    async with asyncio.timeout(delay):
                        await self._wait_newer(status)
                # A newer status cuts the wait short, but never below the first step: while the hub
                # refuses, a burst of statuses (watches failing one by one under an API server restart)
                # became a burst of reports, and the hub's per-agent rate limit refused them all.
                spacing = capped_exponential(0, base=REPORT_RETRY_BASE_SECONDS, cap=self._retry_cap)
                rest = spacing - (loop.time() - started)
                if rest > 0:
                    await asyncio.sleep(rest)
                continue
            attempt = 0
            self.reports_sent += 1
            await self._send_signed(status)
            if self._pending is status:
                self._pending = None
                self._wakeup.clear()
            await self.notify()

    async def _send_signed(self, status) -> None:
        if self.signer is None:
            return
        try:
            await self.signer.send(self._status(), status.observed_unix_ms)
            self.signed_reports_sent += 1
        except SkerryError as e:
            log.warning("signed report not delivered", reason=e.reason, error=str(e))

    async def _wait_newer(self, status) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self._pending is not status)


def write_ready_file(
    path,
    result: ReconcileResult,
    now: _dt.datetime,
    extra: dict | None = None,
    *,
    metrics_port: int | None = None,
) -> None:
    doc = {
        "cluster": result.cluster,
        "applied_release": result.release,
        "applied_name": result.label,
        "applied_digest": result.digest,
        "revision": result.revision,
        "ready": result.ready,
        "conditions": [
            {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
            for c in result.conditions
        ],
        "updated": now.isoformat(),
        **(extra or {}),
    }
    if metrics_port is not None:
        doc["metrics_port"] = metrics_port
    atomic_write(path, json.dumps(doc, sort_keys=True, indent=2).encode() + b"\n", mode=0o644)
