"""Choosing the render engine: in-process kustomize when it loads, else the binary.

``auto`` (the default) uses ``InProcessKustomizeEngine`` if ``pykustomize``
imports and its library loads (a few ms per overlay), else
``KustomizeEngine`` (``kustomize`` or ``kubectl kustomize``, ~115 ms per
overlay). ``inprocess`` and ``binary`` force one and fail with
``ConfigError`` if it is not there. The engine's name and version go into
every bundle, so a change of engine is visible (and makes a new release).
"""

from __future__ import annotations

from skerry.core.errors import ConfigError
from skerry.core.logging import get_logger
from skerry.hub.render import inprocess
from skerry.hub.render.engine import DEFAULT_TIMEOUT, Engine, KustomizeEngine

log = get_logger("skerry.hub.render")  # structlog only when it logs (skerry render)

ENGINE_CHOICES = ("auto", "inprocess", "binary")


def detect_engine(choice: str = "auto", *, timeout: float = DEFAULT_TIMEOUT, isolate: bool = True) -> Engine:
    """The engine for ``choice``; every render is bounded by ``timeout``, unless ``isolate`` is False
    (a command on a workstation): then in-process kustomize runs in this process, without a deadline."""
    if choice not in ENGINE_CHOICES:
        raise ConfigError(f"engine: {choice!r} is not one of {', '.join(ENGINE_CHOICES)}")
    if choice in ("auto", "inprocess"):
        try:
            return inprocess.InProcessKustomizeEngine(timeout=timeout if isolate else None)
        except ConfigError as e:
            if choice == "inprocess":
                raise
            log.info("in-process kustomize unavailable; using the binary", reason=str(e))
    return KustomizeEngine.detect(timeout=timeout)
