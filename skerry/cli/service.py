"""How a service command starts: its settings from flags and ``SKERRY_*`` variables, then its app, one error line.

``skerry hub serve``, ``skerry agent run`` and ``skerry sealer serve`` differ only in their config class
and their app's ``run``; the loading, the logging set-up and what a refusal prints are the same, so they
are here once.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from skerry.cli.errors import ExitCode, fail, with_reason
from skerry.core import config as settings
from skerry.core.errors import SkerryError


def serve(
    command: str,
    cls: Any,
    args: argparse.Namespace,
    run: Callable[[Any], Awaitable[int | None]],
    *,
    configure_logging: bool = True,
) -> int:
    """``cls.from_env`` with ``args``' flags over the variables, then ``run(config)`` until it returns; a
    Skerry error is one line naming its reason (exit 1), Ctrl-C exit 130."""
    import asyncio

    from skerry.core import logging as skerry_logging

    try:
        config = cls.from_env(None, **settings.flag_values(args, cls))
        if configure_logging:
            skerry_logging.configure(config.log_level)
        return int(asyncio.run(run(config)) or 0)
    except SkerryError as e:
        return fail(command, with_reason(e))
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
