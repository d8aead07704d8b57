"""What an app's environment is in the fleet: the overlay a promotion edits and the clusters it reaches.

An app's environment is its overlay (``promotion.apps.<app>.overlays.<env>`` in ``skerry.yaml``); the
clusters of an environment are the fleet's clusters labelled ``env: <name>``. Unknown apps and
environments are ``NotFound`` naming where in ``skerry.yaml`` they are missing.
"""

from __future__ import annotations

from skerry.core.errors import InvalidInput, NotFound
from skerry.hub.fleet import FLEET_FILE, Fleet
from skerry.hub.promotion_policy import PromotionPolicy

ENV_LABEL = "env"  # the cluster label naming its environment


def policy_of(fleet: Fleet) -> PromotionPolicy:
    """The fleet's promotion policy (an empty one if ``skerry.yaml`` has no ``promotion:``)."""
    return fleet.promotion if fleet.promotion is not None else PromotionPolicy()


def overlay_of(fleet: Fleet, app: str, env: str) -> str:
    """The overlay directory of ``app`` in ``env``."""
    policy = policy_of(fleet)
    if not app:
        raise InvalidInput("app is required")
    if app not in policy.apps:
        raise NotFound(f"app {app!r} is not in {FLEET_FILE} promotion.apps ({', '.join(policy.apps) or 'none'})")
    if env not in fleet.environments:
        raise NotFound(f"environment {env!r} is not in {FLEET_FILE} environments {list(fleet.environments)}")
    overlays = policy.apps[app].overlays
    if env not in overlays:
        raise NotFound(f"app {app!r} has no overlay for environment {env!r} ({FLEET_FILE} promotion.apps.{app})")
    return overlays[env]


def clusters_of(fleet: Fleet, env: str) -> list[str]:
    """The names of the clusters labelled ``env: <env>``, in fleet order."""
    return [c.name for c in fleet.clusters if c.labels.get(ENV_LABEL) == env]
