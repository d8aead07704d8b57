"""The access log of the hub's two aiohttp servers (dashboard, webhook): where their refusals are counted.

aiohttp's HTTP parser answers a request it cannot read (a malformed request line or header, a line over
its size bound, a method that is not a token) with 400 before any application code runs: no middleware
and no handler sees that request, only the server's access log. So the access log is the one place
that sees every answer, and the servers count their refusals there: ``refusal_log(count)`` gives the
``AppRunner`` an access log that hands each refused answer to ``count`` (the hub's
``skerry_refusals_total``): a ``Refusal`` (an answer a handler made) under its own reason, any other
answer whose status is a refusal under that status's reason (``core.metrics.HTTP_REFUSAL_REASONS``).
Nothing is written to a log: a request line may carry a token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from skerry.core.metrics import HTTP_REFUSAL_REASONS

# aiohttp calls the access log only if it is given a logger; nothing is written to it.
_LOGGER = logging.getLogger("skerry.hub.http")


class Refusal(web.Response):
    """A handler's refusal: a plain-text answer counted under ``reason`` (a named refusal reason)."""

    def __init__(self, status: int, text: str, reason: str):
        super().__init__(status=status, text=text)
        self.refusal_reason = reason


def refusal_log(count: Callable[[str], None] | None) -> dict[str, Any]:
    """The ``AppRunner`` arguments that count each refused answer with ``count`` (None: count nothing)."""
    if count is None:
        return {"access_log": None}

    class RefusalLog(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            reason = getattr(response, "refusal_reason", None) or HTTP_REFUSAL_REASONS.get(response.status)
            if reason is not None:
                count(reason)

    return {"access_log_class": RefusalLog, "access_log": _LOGGER}
