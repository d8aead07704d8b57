"""Driving the event loop a step at a time, for tests of what a cancel does when it lands in a given step.

``asyncio.wait_for`` on Python 3.11 returned normally when what it awaited finished in the same step as a
cancel, and the cancel was lost; the loops that waited that way are tested by cancelling them ``n`` steps
after something wakes them (``steps``) and asking whether they ended (``ends_cancelled``).
"""

from __future__ import annotations

import asyncio


async def steps(n: int) -> None:
    """Let the event loop run ``n`` steps."""
    for _ in range(n):
        await asyncio.sleep(0)


async def ends_cancelled(task: asyncio.Task, timeout: float = 5.0) -> bool:
    """Cancel ``task``; whether it ended cancelled within ``timeout``. One that went on is cancelled again and
    waited for, so a failing test leaves no task behind."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if done and task.cancelled():
        return True
    task.cancel()
    await asyncio.wait({task}, timeout=timeout)
    return False
