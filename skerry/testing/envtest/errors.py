"""The one error the harness raises, in its own module so every part can raise it without import cycles."""

from __future__ import annotations


class EnvtestError(Exception):
    """The local control plane could not be built or started."""
