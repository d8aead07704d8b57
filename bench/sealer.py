"""Rough throughput of the sealer's hot paths: seal, unseal (one key and after rotations).

    .venv/bin/python bench/sealer.py [--items 200] [--keys 3]

Unsealing tries the keys of a domain newest first, so a value sealed with
the oldest of N keys costs up to N RSA decryptions; this shows how much.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from skerry.core import logging as skerry_logging  # noqa: E402
from skerry.sealer import crypto  # noqa: E402
from skerry.sealer.keys import KeyRegistry  # noqa: E402


def rate(label: str, n: int, seconds: float) -> None:
    print(f"{label:<38} {n / seconds:9.1f} items/s   {seconds / n * 1000:7.2f} ms/item")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--keys", type=int, default=3, help="keys in the domain after rotations")
    p.add_argument("--size", type=int, default=256, help="plaintext bytes per item")
    args = p.parse_args()
    skerry_logging.configure("warning")
    value, label = b"x" * args.size, b"bench/secret"
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        reg = KeyRegistry.from_directory(tmp)
        oldest = reg.open()
        print(f"generate RSA-4096 key                  {time.perf_counter() - t:9.2f} s")
        for _ in range(args.keys - 1):
            reg.add_key()
        newest = reg.sealing_key()

        t = time.perf_counter()
        items = [crypto.hybrid_encrypt(newest.public_key, value, label) for _ in range(args.items)]
        rate("seal (newest key)", args.items, time.perf_counter() - t)
        t = time.perf_counter()
        for item in items:
            reg.unseal("default", item, label)
        rate("unseal, newest key", args.items, time.perf_counter() - t)

        old_items = [crypto.hybrid_encrypt(oldest.public_key, value, label) for _ in range(args.items)]
        t = time.perf_counter()
        for item in old_items:
            reg.unseal("default", item, label)
        rate(f"unseal, oldest of {args.keys} keys", args.items, time.perf_counter() - t)
        t = time.perf_counter()
        for item in old_items:
            reg.unseal("default", item, label, hint=oldest.key_id)
        rate(f"unseal, oldest of {args.keys}, hinted", args.items, time.perf_counter() - t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
