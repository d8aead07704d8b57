"""How the hub's promotion engine is set up: where it pushes, who it commits as, how it follows a rollout.

``skerry.hub.app`` builds this from the hub's config (``push_url``, ``push_branch``, ``push_ssh_key``).
"""

from __future__ import annotations

import dataclasses
import pathlib

DEFAULT_PROGRESS_TIMEOUT = 3600.0  # follow a rollout at most this long, then report the pending clusters
DEFAULT_TICK = 0.25  # how often progress re-reads the store and the status board (seconds)
# How often a new writer asks again about a push a previous one left, while the remote cannot be asked.
DEFAULT_SETTLE_RETRY = 15.0


@dataclasses.dataclass(frozen=True)
class PromotionSettings:
    push_url: str | None = None  # default: the repository the hub follows
    push_branch: str | None = None  # default: the followed branch; else every promotion goes here for review
    ssh_key: pathlib.Path | None = None  # deploy key for ssh remotes
    author_name: str = "Skerry Hub"
    author_email: str = "hub@skerry.invalid"
    progress_timeout: float = DEFAULT_PROGRESS_TIMEOUT
    tick: float = DEFAULT_TICK
    settle_retry: float = DEFAULT_SETTLE_RETRY
