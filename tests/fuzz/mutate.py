"""Byte mutations of seeds (the libFuzzer set: flip, insert, delete, duplicate, splice, interesting tokens)."""

from __future__ import annotations

import random

# Tokens that reach the interesting corners of YAML/JSON readers.
TOKENS = (b"&a ", b"*a", b"[", b"{", b"]", b"}", b": ", b"\n- ", b"---\n", b".nan", b"NaN", b"Infinity",
          b'"\\ud800"', b"\xed\xa0\x80", b"\xff", b"\x00", b"!!binary ", b"!!python/object ", b"<<: ", b"=",
          b"\t", b"9" * 400, b"-1", b"null", b'"', b"'", b"\\", b"\xc3\xa9", b"\xe2\x98\x83")


def mutate(seed: bytes, rng: random.Random, *, max_len: int = 1 << 16) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(7)
        pos = rng.randint(0, len(data))
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos:pos] = bytes([rng.randrange(256)])
        elif op == 2 and data:
            del data[pos:pos + rng.randint(1, 16)]
        elif op == 3:
            data[pos:pos] = rng.choice(TOKENS)
        elif op == 4 and data:
            start = rng.randrange(len(data))
            data[pos:pos] = data[start:start + rng.randint(1, 64)]
        elif op == 5:
            data[pos:pos] = rng.choice(TOKENS) * rng.randint(2, 300)
        else:
            data = data[:pos]
    return bytes(data[:max_len])
