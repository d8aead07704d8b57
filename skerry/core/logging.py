"""structlog set-up shared by every service: console output on a TTY, JSON lines otherwise.

Request context (cluster, peer, request id) is bound with
``structlog.contextvars`` by the gRPC interceptor, so every line logged
while serving a request carries it. Never pass secret values to a logger.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "info", *, json_output: bool | None = None, stream=None) -> None:
    stream = stream or sys.stderr
    if json_output is None:
        json_output = not stream.isatty()
    lvl = getattr(logging, level.upper(), logging.INFO)
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **bind):
    return structlog.get_logger(name).bind(**bind) if bind else structlog.get_logger(name)
