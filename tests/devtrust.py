"""The single-operator trust setup every test hub runs with (tests import it; ``dev_trust`` is its fixture)."""

from __future__ import annotations

import pathlib

from skerry.hub.trust import admin
from skerry.hub.trust.repository import TrustRepository


class DevTrust:
    """A TUF trust repository (``skerry keys init``) whose release keys the hub holds: the dev setup.

    The hub directs and releases every bundle itself (``release_keys``), as ``scripts/demo.sh`` does;
    agents and the sealer bootstrap from ``root``. An existing directory is reused (a restarted hub).
    """

    ENVIRONMENTS = ("default", "dev", "prod")

    def __init__(self, directory: pathlib.Path):
        self.dir = pathlib.Path(directory)
        if not self.root.exists():
            admin.init(self.dir, {env: (1, 1) for env in self.ENVIRONMENTS})
        self.release_keys = tuple((env, self.dir / "offline" / f"release-{env}-1.key") for env in self.ENVIRONMENTS)

    @property
    def root(self) -> pathlib.Path:
        return self.dir / "root.json"

    def repository(self, clock=None) -> TrustRepository:
        return TrustRepository.open(self.dir, clock=clock, release_keys=self.release_keys)
