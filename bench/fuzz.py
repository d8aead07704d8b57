"""Long fuzz pass over every outside-input target of tests/fuzz/targets.py.

    .venv/bin/python bench/fuzz.py [--inputs 1000000] [--seconds-per-target S] [--target NAME] [--seed 1]

Each target runs in its own process (so its peak memory is its own) on ``--inputs`` inputs: seeds from
examples/ and the tests, mutated by tests/fuzz/mutate.py (libFuzzer's operations plus YAML/JSON tokens:
anchors, aliases, brackets, NaN, surrogates), with a random byte string every 16th input. Printed per target: inputs
run, crashes (an exception the target does not document), hangs (one input over ``HANG_SECONDS`` of
CPU time: the targets are CPU-bound parsers, and on a shared machine under ``nice`` wall time counts the
seconds another process had the core), peak RSS, inputs/s, and the slowest input (CPU s, wall s). The first input of each crash kind is written to ``--crash-dir`` so it can become
a regression test. ``--seconds-per-target`` stops a target early (the input count printed is what ran), and
``--progress-seconds`` prints the running figures of the current target that often, so a long run on a
shared machine (run it with ``nice -n 19``) that has to be stopped still says how far it got.
Exit status 1 if anything crashed or hung.

Floor: the ``skerry.core.documents`` budgets bound every input to MAX_DEPTH levels, the alias budget
and the reader's size, so no input should take over a second or hundreds of MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import pathlib
import random
import resource
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HANG_SECONDS = 2.0
MAX_INPUT_BYTES = 1 << 16


def _mutator():
    # atheris (installed for Python 3.11 here) exposes libFuzzer's mutator only inside atheris.Fuzz(), which
    # owns the process and never returns: the seeded mutations of tests/fuzz/mutate.py run instead.
    from tests.fuzz.mutate import mutate

    return "tests/fuzz/mutate.py", lambda data, rng: mutate(data, rng, max_len=MAX_INPUT_BYTES)


def _row(name: str, ran: int, crashes: int, hangs: int, peak_mib: float, rate: float, slowest: float,
         slowest_wall: float) -> str:
    return (f"{name:<24} {ran:>9} {crashes:>7} {hangs:>5} {peak_mib:>8.0f} {rate:>8.0f} {slowest:>9.3f} "
            f"{slowest_wall:>9.3f}")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_target(name: str, inputs: int, seconds: float, seed: int, crash_dir: str, out: mp.Queue,
                progress: float = 0.0) -> None:
    from tests.fuzz.targets import targets

    target = next(t for t in targets() if t.name == name)
    which, mutate = _mutator()
    rng = random.Random(seed)
    corpus = list(target.seeds) or [b""]
    crashes: dict[str, str] = {}
    crash_count = hangs = ran = 0
    slowest = slowest_wall = 0.0
    start = last_progress = time.monotonic()
    for i in range(inputs):
        if progress and time.monotonic() - last_progress > progress:
            last_progress = time.monotonic()
            rate = ran / (last_progress - start)
            print(f"  ... {_row(name, ran, crash_count, hangs, _peak_mib(), rate, slowest, slowest_wall)}  (running)",
                  flush=True)
        if i % 16 == 15:
            data = rng.randbytes(rng.randint(0, 512))
        else:
            data = bytes(mutate(rng.choice(corpus), rng))
        t0, c0 = time.monotonic(), time.process_time()
        try:
            target.run(data)
            if len(corpus) < 256 and rng.random() < 0.01:
                corpus.append(data)  # accepted inputs are good seeds for more
        except target.allowed:
            pass
        except Exception as e:  # noqa: BLE001 - a crash: what the fuzzer looks for
            crash_count += 1
            kind = f"{type(e).__name__}: {str(e)[:120]}"
            if kind not in crashes:
                path = pathlib.Path(crash_dir) / f"{name.replace(' ', '-')}-{hashlib.sha256(data).hexdigest()[:12]}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                crashes[kind] = str(path)
        took = time.process_time() - c0
        slowest = max(slowest, took)
        slowest_wall = max(slowest_wall, time.monotonic() - t0)
        hangs += took > HANG_SECONDS
        ran += 1
        if seconds and time.monotonic() - start > seconds:
            break
    elapsed = time.monotonic() - start
    out.put({"name": name, "inputs": ran, "crashes": crash_count, "kinds": crashes, "hangs": hangs,
             "peak_mib": _peak_mib(), "rate": ran / elapsed if elapsed else 0.0, "slowest": slowest,
             "slowest_wall": slowest_wall, "mutator": which})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seconds-per-target", type=float, default=0.0)
    parser.add_argument("--target", action="append", help="run only this target (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--crash-dir", default=str(ROOT / ".fuzz-crashes"))
    parser.add_argument("--progress-seconds", type=float, default=0.0, help="print running figures this often")
    args = parser.parse_args()
    from tests.fuzz.targets import targets

    names = args.target or [t.name for t in targets()]
    ctx = mp.get_context("fork")
    print(f"{'target':<24} {'inputs':>9} {'crashes':>7} {'hangs':>5} {'peak MiB':>8} {'inputs/s':>8} {'slow cpu':>9} {'slow wall':>9}")
    bad = 0
    for name in names:
        out = ctx.Queue()
        proc = ctx.Process(target=_run_target, args=(name, args.inputs, args.seconds_per_target, args.seed,
                                                     args.crash_dir, out, args.progress_seconds))
        proc.start()
        result = out.get()
        proc.join()
        print(_row(name, result["inputs"], result["crashes"], result["hangs"], result["peak_mib"], result["rate"],
                   result["slowest"], result["slowest_wall"]), flush=True)
        for kind, path in result["kinds"].items():
            print(f"    crash {kind} -> {path}")
        bad += result["crashes"] + result["hangs"]
    print(f"mutator: {result['mutator']}; load {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
