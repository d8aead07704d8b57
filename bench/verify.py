"""Cost of the agent's TUF/Uptane verification of a 1 MiB bundle against its floor.

    .venv/bin/python bench/verify.py [--rounds 30] [--size-mib 1]

Each round the hub side publishes a new 1 MiB bundle for a prod cluster
(2-of-3 release signatures, director pointer, snapshot, timestamp), then
the agent's ``TufVerifier.update`` runs a full stock python-tuf refresh
(root chain probe, timestamp, snapshot, targets, director, cluster role,
release role) and downloads + hash-checks the blob, through an in-process
fetcher (no network: this measures verification, not transport).

Two floors, both SHA-256 over the bundle plus N Ed25519 verifications:

* **performed** — N is what python-tuf actually verified that round
  (counted by wrapping ``SSlibKey.verify_signature``). The stock Updater
  re-verifies the cached root, timestamp, snapshot, targets and director on
  every refresh, so this N includes verifications of files that did not
  change. The issue's acceptance ratio (<= 2x) is against this floor.
* **minimum** — N is the least any TUF + Uptane client must verify for that
  update: the signature threshold of each role whose version changed
  (timestamp 1, snapshot 1, cluster role 1, release role 2 here; root,
  targets, director only when they changed). A client that kept verified
  metadata in memory could approach it; a stock Updater cannot.

Parsing the bundle's objects (``Bundle.decode``) is application work, shown
separately and not counted. An idle refresh (nothing published) is shown
too. Peer: Flux/cosign verify one signature over a digest and no freshness
at all — the minimum floor is near their cost.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from securesystemslib.signer import SSlibKey  # noqa: E402
from tuf.api import exceptions as tuf_errors  # noqa: E402
from tuf.ngclient import Updater, UpdaterConfig  # noqa: E402

from skerry.agent.trust import TufVerifier  # noqa: E402
from skerry.agent.tuf_fetch import InMemoryFetcher  # noqa: E402
from skerry.core import logging as skerry_logging  # noqa: E402
from skerry.core import trust  # noqa: E402
from skerry.core.bundle import Bundle  # noqa: E402
from skerry.core.errors import NotFound  # noqa: E402
from skerry.hub.trust import admin  # noqa: E402
from skerry.hub.trust import keys as keyfiles  # noqa: E402
from skerry.hub.trust.repository import _SERIALIZER, TrustRepository  # noqa: E402


class LocalFetcher(InMemoryFetcher):
    """The hub's repository files in-process (what GrpcFetcher gets over gRPC, without the transport)."""

    def __init__(self, repo: TrustRepository):
        self.repo = repo
        self.last_path = ""

    def _fetch(self, url: str):
        path = url[len("skerry:/"):]
        self.last_path = path
        try:
            return iter([self.repo.fetch(path)])
        except NotFound:
            raise tuf_errors.DownloadHTTPError(path, 404) from None


def make_bundle(i: int, size: int) -> bytes:
    pad = "x" * 1000
    objects = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{n}", "namespace": "bench"},
                "data": {"round": str(i), "v": pad}} for n in range(size // 1100)]
    return Bundle("bench-prod", f"{i:040x}", "file:///bench", ("overlays/prod",), "kustomize", "v5",
                  tuple(objects)).encode()


def stock_updater_cost(verifier: TufVerifier, repo: TrustRepository, copy: pathlib.Path, path: str) -> float:
    """Seconds a bare stock ``Updater`` takes for this round's metadata (no Skerry code, no blob)."""
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(verifier.metadata_dir, copy, symlinks=True)
    t0 = time.perf_counter()
    updater = Updater(metadata_dir=str(copy), metadata_base_url="skerry:/metadata/", fetcher=LocalFetcher(repo),
                      config=UpdaterConfig(prefix_targets_with_hash=False), bootstrap=None)
    updater.refresh()
    trust.lookup(updater, copy, path)  # both sides' bins of the bundle's path
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--size-mib", type=float, default=1.0)
    p.add_argument("--state-dir", default="/dev/shm" if pathlib.Path("/dev/shm").is_dir() else None,
                   help="where the agent persists trusted metadata (default tmpfs: measure verification, not "
                   "the disk; pass a disk path to see the cost of durability)")
    args = p.parse_args()
    skerry_logging.configure("error")
    size = int(args.size_mib * 1024 * 1024)

    counted = {"n": 0}
    original = SSlibKey.verify_signature

    def counting(self, signature, data):
        counted["n"] += 1
        return original(self, signature, data)

    SSlibKey.verify_signature = counting
    release_role = "release-prod"
    with tempfile.TemporaryDirectory(dir=args.state_dir) as tmp:
        d = pathlib.Path(tmp)
        made = admin.init(d / "trust", {"prod": (3, 2)})
        repo = TrustRepository.open(d / "trust")
        keys = [keyfiles.load_signer(k) for k in made["release-prod"][:2]]
        verifier = TufVerifier("bench-prod", "prod", d / "trust" / "root.json", d / "agent", lambda: LocalFetcher(repo))
        full, floors, mins, decodes, verifies, minimum, idle, alone = [], [], [], [], [], [], [], []
        seen: dict[str, int] = {}
        for i in range(args.rounds + 3):
            data = make_bundle(i, size)
            md = repo.release_proposal("prod", "bench-prod", data, f"{i:040x}")
            for s in keys:
                md.sign(s, append=True)
            repo.submit_release("release-prod", md.to_bytes(_SERIALIZER))
            repo.direct("bench-prod", "prod", data, revision=f"{i:040x}", release=1000 + i)
            # the least a client must verify: the threshold of every role it needs whose version changed
            path = trust.release_path("prod", "bench-prod", hashlib.sha256(data).hexdigest())
            needed = ("root", "timestamp", "snapshot", "targets", "director", trust.director_bin(path), release_role,
                      repo.release_holder("prod", path))
            versions = {r: repo.md[r].signed.version for r in needed}
            n_min = sum(repo.role_threshold(r) for r in needed if seen.get(r) != versions[r])
            seen = versions

            # the stock python-tuf Updater alone (metadata workflow only), on a copy of the agent's cache
            tuf_alone = stock_updater_cost(verifier, repo, d / "copy", path) if i > 0 else 0.0

            counted["n"] = 0
            t0 = time.perf_counter()
            verified = verifier.update(digest=f"sha256:{hashlib.sha256(data).hexdigest()}")  # the hub's event
            t1 = time.perf_counter()
            n_verifies = counted["n"]
            assert verified is not None and verified.release == 1000 + i
            # Bundle.decode inside update() is application parsing: time it alone and subtract it.
            t2 = time.perf_counter()
            Bundle.decode(verified.raw)
            t3 = time.perf_counter()
            # the floors: hash the bundle once + N Ed25519 verifications of a real signature
            sig_md = repo.md["timestamp"]
            key = next(k for k in repo.root.keys.values() if k.keyid in sig_md.signatures)
            payload = sig_md.signed_bytes
            sig = sig_md.signatures[key.keyid]
            t4 = time.perf_counter()
            hashlib.sha256(data).digest()
            for _ in range(n_verifies):
                original(key, sig, payload)
            t5 = time.perf_counter()
            hashlib.sha256(data).digest()
            for _ in range(n_min):
                original(key, sig, payload)
            t6 = time.perf_counter()
            # an idle refresh: nothing was published since
            t7 = time.perf_counter()
            assert verifier.update() is None
            t8 = time.perf_counter()
            if i >= 3:  # warm-up rounds
                full.append(t1 - t0 - (t3 - t2))
                decodes.append(t3 - t2)
                floors.append(t5 - t4)
                mins.append(t6 - t5)
                verifies.append(n_verifies)
                minimum.append(n_min)
                idle.append(t8 - t7)
                alone.append(tuf_alone)
        SSlibKey.verify_signature = original
    med = statistics.median
    ms = 1000
    print(f"bundle size                              {size / 1048576:.2f} MiB, {args.rounds} rounds (median), "
          f"state on {args.state_dir or tempfile.gettempdir()}")
    print(f"Ed25519 verifications per refresh        {med(verifies):.0f} performed by python-tuf, "
          f"{med(minimum):.0f} the minimum for the update")
    print(f"floor (performed): sha256 + {med(verifies):2.0f} verifies  {med(floors) * ms:8.2f} ms")
    print(f"floor (minimum):   sha256 + {med(minimum):2.0f} verifies  {med(mins) * ms:8.2f} ms")
    print(f"skerry TUF/Uptane verification           {med(full) * ms:8.2f} ms  (refresh, delegations, agreement, "
          "download + hash, persist)")
    print(f"  of which stock python-tuf Updater      {med(alone) * ms:8.2f} ms  (init, refresh, 2 lookups: "
          f"{med(alone) / med(floors):.2f}x the performed floor on its own)")
    print(f"  (not counted) Bundle.decode            {med(decodes) * ms:8.2f} ms")
    print(f"  idle refresh (nothing published)       {med(idle) * ms:8.2f} ms")
    ratio = med(full) / med(floors)
    ratio_min = med(full) / med(mins)
    print(f"ratio vs floor (performed verifications)  {ratio:.2f}x  (acceptance: <= 2x)")
    print(f"ratio vs floor (minimum verifications)    {ratio_min:.2f}x  (Flux/cosign-style: one hash + the "
          "signatures that changed; informational)")
    return 0 if ratio <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
