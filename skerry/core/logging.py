"""structlog set-up shared by every service: console output on a TTY, JSON lines otherwise.

Request context (cluster, peer, request id) is bound with
``structlog.contextvars`` by the gRPC interceptor, so every line logged
while serving a request carries it. Never pass secret values to a logger.

structlog costs 0.1-0.3 s to import (its console renderer pulls in rich), about
as much as a whole ``kubectl kustomize`` run, so a command that usually logs
nothing (``skerry render``) configures with ``defer=True``: the settings are
kept and structlog is imported and set up by the first logger from
``get_logger`` that logs. Modules on such a command's path take their logger
from ``get_logger`` rather than importing structlog.

The set-up is process-wide state, so it has one home here: ``configure``
replaces all of it (calling it twice with the same arguments gives the same
set-up), ``is_configured`` says whether this process asked for logging, and
``reset`` forgets everything (tests undo every set-up through it). Without a
stream, lines go to whatever ``sys.stderr`` is when a line is written, not
the one current at ``configure`` time: a command run under a swapped stderr
(a test's capture, a closed pipe) must not leave later lines pointed at it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

# The standard library's level numbers, which structlog's filtering loggers take; spelled out so that a
# command that logs nothing does not import ``logging`` (and the modules it pulls in) to learn them.
LEVELS = {"critical": 50, "fatal": 50, "error": 40, "warning": 30, "warn": 30, "info": 20, "debug": 10, "notset": 0}
DEFAULT_LEVEL = LEVELS["info"]
_deferred: tuple[str, bool | None, Any] | None = None
_configured = False


def configure(level: str = "info", *, json_output: bool | None = None, stream=None, defer: bool = False) -> None:
    """Set up logging for this process: ``level`` and above, JSON unless ``stream`` is a TTY.

    ``stream`` None means the standard error current when each line is written.
    """
    global _deferred, _configured
    _configured = True
    if defer and "structlog" not in sys.modules:
        _deferred = (level, json_output, stream)
        return
    _deferred = None
    _configure(level, json_output, stream)


def _configure(level: str, json_output: bool | None, stream) -> None:
    import structlog  # noqa: PLC0415 - see the module docstring

    if json_output is None:
        json_output = not (stream or sys.stderr).isatty()
    lvl = LEVELS.get(level.lower(), DEFAULT_LEVEL)
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
        logger_factory=structlog.PrintLoggerFactory(file=stream) if stream is not None else _StderrLogger,
        cache_logger_on_first_use=False,
    )


def is_configured() -> bool:
    """Whether this process set logging up through ``configure`` (services and commands do; library use does not).

    Not ``structlog.is_configured()``: any ``structlog.configure`` call sets that, even one putting the
    defaults back (``structlog.testing.capture_logs`` makes one), so it says nothing about who asked.
    """
    return _configured


def reset() -> None:
    """Forget every setting: structlog's defaults again, nothing deferred, not configured."""
    global _deferred, _configured
    _deferred, _configured = None, False
    if "structlog" in sys.modules:
        import structlog  # noqa: PLC0415 - see the module docstring

        structlog.reset_defaults()


class _StderrLogger:
    """A structlog output writing each line to ``sys.stderr`` as it is when the line is written."""

    _lock = threading.Lock()  # one line at a time from every thread, as structlog's PrintLogger does

    def __init__(self, *_args: Any):
        pass

    def msg(self, message: str) -> None:
        stream = sys.stderr
        with self._lock:
            stream.write(message + "\n")
            stream.flush()

    log = debug = info = warn = warning = err = error = critical = exception = failure = fatal = msg


class _Logger:
    """A structlog logger made when first used (applying deferred settings first)."""

    __slots__ = ("_name", "_bind", "_logger")

    def __init__(self, name: str, bind: dict[str, Any]):
        self._name, self._bind, self._logger = name, bind, None

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            import structlog  # noqa: PLC0415 - see the module docstring

            if _deferred is not None:
                configure(*_deferred[:1], json_output=_deferred[1], stream=_deferred[2])
            logger = structlog.get_logger(self._name)
            self._logger = logger.bind(**self._bind) if self._bind else logger
        return getattr(self._logger, attr)


def get_logger(name: str, **bind: Any) -> Any:
    """A logger for ``name`` that imports structlog only when it first logs."""
    return _Logger(name, bind)
