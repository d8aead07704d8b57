"""Long, resumable fuzz pass over every outside-input target of tests/fuzz/targets.py.

    .venv/bin/python bench/fuzz.py [--inputs 1000000] [--target NAME ...] [--seed 1] [--processes 2]
                                   [--stop-at 08:30] [--seconds S] [--progress-seconds 60]
    .venv/bin/python bench/fuzz.py --report            # the cumulative figures so far, nothing run

Inputs: seeds from examples/ and the tests, mutated by tests/fuzz/mutate.py (libFuzzer's operations plus
YAML/JSON tokens: anchors, aliases, brackets, NaN, surrogates), with a random byte string every 16th
input. A target's inputs come in chunks of ``--chunk``: chunk k of seed s draws its inputs from its own
generator (seeded by s, the target and k) and starts from the target's seeds, so chunks are independent
and never repeat one another. That makes a run

* **cumulative and resumable**: each target's figures live in ``--state-dir``/<target>.seed<s>.json,
  written atomically after every chunk; ``--inputs`` is the total to reach, so a run stopped (by
  ``--stop-at``, ``--seconds``, a signal or a crash of the machine) is continued by the same command,
  with chunks it has not run yet. ``--fresh`` forgets the state of the targets named;
* **parallel**: ``--processes`` worker processes run one target's chunks side by side. Each worker
  builds its target once (keys, certificate authority, issuer: tests/fuzz/targets.py) and then
  only calls the code under test per input.

Targets run one after another, each with its own workers, so a target's peak RSS is its own. Printed
per target (cumulative over every run of that seed): inputs, crashes (an exception the target does not
document, or a documented one whose message is ``MAX_MESSAGE_CHARS`` or longer), hangs (one input over
``HANG_SECONDS`` of CPU time: the targets are CPU-bound parsers, and on a shared machine under ``nice``
wall time counts the seconds another process had the core), peak RSS of a worker, inputs/s per worker
process (its share of a loaded machine, not the parser's speed alone), and the slowest input (CPU s,
wall s); a target short of ``--inputs`` says how long the rest would take at its rate, and in CPU time. The first input of each crash kind is written to ``--crash-dir`` so it can become a
regression test (tests/fuzz/regressions). Exit status 1 if anything crashed or hung.

Floor: the ``skerry.core.documents`` budgets bound every input to MAX_DEPTH levels, the alias budget
and the reader's size, so no input should take over a second or hundreds of MiB.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import pathlib
import random
import resource
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skerry.core.files import atomic_write  # noqa: E402 - after the path insert, so bench/ runs from anywhere
from tests.fuzz.mutate import mutate  # noqa: E402

HANG_SECONDS = 2.0
# A refusal is one clear line: a documented error whose message is this long (the acceptance bound, 1 KiB)
# echoes the input, and counts as a crash.
MAX_MESSAGE_CHARS = 1024
MAX_INPUT_BYTES = 1 << 16
RANDOM_EVERY = 16  # every 16th input is random bytes (up to RANDOM_MAX_BYTES), not a mutated seed
RANDOM_MAX_BYTES = 512
MAX_CORPUS = 256  # accepted inputs join the corpus (1 in ACCEPT_SAMPLE of them) up to this many
ACCEPT_SAMPLE = 100
DEFAULT_CHUNK = 5_000  # small enough that a stopped run loses at most a minute of the slowest target
MUTATOR = "tests/fuzz/mutate.py"
# atheris (installed for Python 3.11 here) exposes libFuzzer's mutator only inside atheris.Fuzz(), which
# owns the process and never returns: the seeded mutations of tests/fuzz/mutate.py run instead.

_WORKER: dict = {}  # the one target this worker process runs, built once by _init_worker


@dataclasses.dataclass
class Figures:
    """What ran for one target: one chunk's figures, or the sum over chunks (``add``)."""

    inputs: int = 0
    crashes: int = 0
    hangs: int = 0
    peak_mib: float = 0.0
    seconds: float = 0.0  # wall time inside workers, summed over workers
    cpu_seconds: float = 0.0  # CPU time of the inputs: the parser's own cost, whatever the machine's load
    slowest: float = 0.0  # CPU s of the slowest input
    slowest_wall: float = 0.0
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)  # crash kind -> file of its first input

    def add(self, other: Figures) -> None:
        self.inputs += other.inputs
        self.crashes += other.crashes
        self.hangs += other.hangs
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds
        self.peak_mib = max(self.peak_mib, other.peak_mib)
        self.slowest = max(self.slowest, other.slowest)
        self.slowest_wall = max(self.slowest_wall, other.slowest_wall)
        for kind, path in other.kinds.items():
            self.kinds.setdefault(kind, path)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    def row(self, name: str, note: str = "") -> str:
        return (f"{name:<24} {self.inputs:>9} {self.crashes:>7} {self.hangs:>5} {self.peak_mib:>8.0f} "
                f"{self.rate:>8.0f} {self.slowest:>9.3f} {self.slowest_wall:>9.3f}{note}")


HEADER = (f"{'target':<24} {'inputs':>9} {'crashes':>7} {'hangs':>5} {'peak MiB':>8} {'inputs/s':>8} "
          f"{'slow cpu':>9} {'slow wall':>9}")


class State:
    """One target's cumulative figures for one seed, and the next chunk to run (a JSON file)."""

    def __init__(self, directory: pathlib.Path, name: str, seed: int, chunk: int):
        self.path = directory / f"{_slug(name)}.seed{seed}.json"
        self.name, self.seed = name, seed
        self.figures, self.next_chunk, self.chunk, self.runs = Figures(), 0, chunk, []
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            self.figures = Figures(**saved["figures"])
            self.next_chunk, self.chunk, self.runs = saved["next_chunk"], saved["chunk"], saved["runs"]

    def save(self) -> None:
        doc = {"target": self.name, "seed": self.seed, "chunk": self.chunk, "next_chunk": self.next_chunk,
               "figures": dataclasses.asdict(self.figures), "runs": self.runs}
        atomic_write(self.path, json.dumps(doc, indent=1).encode(), 0o644, durable=False)


def _slug(name: str) -> str:
    return name.replace(" ", "-")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _init_worker(name: str, crash_dir: str) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # main's handler (save and unwind) is not the workers'
    from tests.fuzz.targets import target_named

    _WORKER.update(target=target_named(name), crash_dir=pathlib.Path(crash_dir))


def _chunk_inputs(name: str, seed: int, index: int, size: int, corpus: list[bytes]):
    """Chunk ``index``'s inputs: its own generator, so a chunk is the same wherever and whenever it runs."""
    rng = random.Random(f"{seed}/{name}/{index}")
    for i in range(size):
        if i % RANDOM_EVERY == RANDOM_EVERY - 1:
            yield rng, rng.randbytes(rng.randint(0, RANDOM_MAX_BYTES))
        else:
            yield rng, mutate(rng.choice(corpus), rng, max_len=MAX_INPUT_BYTES)


def _crash(out: Figures, kind: str, data: bytes, crash_dir: pathlib.Path) -> None:
    out.crashes += 1
    if kind not in out.kinds:
        path = crash_dir / f"{_slug(_WORKER['target'].name)}-{hashlib.sha256(data).hexdigest()[:12]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out.kinds[kind] = str(path)


def _run_chunk(task: tuple[int, int, int, float]) -> Figures:
    """Run chunk ``index`` of ``size`` inputs (stopping at ``deadline``, epoch s, if nonzero)."""
    seed, index, size, deadline = task
    target, crash_dir = _WORKER["target"], _WORKER["crash_dir"]
    corpus = list(target.seeds) or [b""]
    out = Figures()
    start = time.monotonic()
    for rng, data in _chunk_inputs(target.name, seed, index, size, corpus):
        if deadline and time.time() > deadline:
            break
        t0, c0 = time.monotonic(), time.process_time()
        try:
            target.run(data)
            if len(corpus) < MAX_CORPUS and rng.randrange(ACCEPT_SAMPLE) == 0:
                corpus.append(data)  # accepted inputs are good seeds for more
        except target.allowed as e:
            if len(str(e)) >= MAX_MESSAGE_CHARS:
                _crash(out, f"{type(e).__name__} message of {len(str(e))} chars: {str(e)[:80]}", data, crash_dir)
        except Exception as e:  # noqa: BLE001 - a crash: what the fuzzer looks for
            _crash(out, f"{type(e).__name__}: {str(e)[:120]}", data, crash_dir)
        took = time.process_time() - c0
        out.cpu_seconds += took
        out.slowest = max(out.slowest, took)
        out.slowest_wall = max(out.slowest_wall, time.monotonic() - t0)
        out.hangs += took > HANG_SECONDS
        out.inputs += 1
    out.seconds = time.monotonic() - start
    out.peak_mib = _peak_mib()
    return out


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run_target(name: str, args: argparse.Namespace, deadline: float) -> State:
    """Run ``name``'s chunks until its cumulative count reaches ``args.inputs`` or ``deadline`` passes."""
    state = State(pathlib.Path(args.state_dir), name, args.seed, args.chunk)
    missing = args.inputs - state.figures.inputs
    if missing <= 0 or (deadline and time.time() >= deadline):
        return state
    sizes = [min(state.chunk, missing - i) for i in range(0, missing, state.chunk)]
    first = state.next_chunk
    state.next_chunk += len(sizes)  # reserved now: an index is never run twice, even if this run stops
    run = Figures()
    started = last_progress = time.monotonic()
    # A process pool that notices a worker dying (a crash in native code: a finding, not a hang).
    pool = ProcessPoolExecutor(args.processes, mp_context=mp.get_context("fork"), initializer=_init_worker,
                               initargs=(name, args.crash_dir))
    try:
        futures = {pool.submit(_run_chunk, (args.seed, first + i, size, deadline)): first + i
                   for i, size in enumerate(sizes)}
        for future in as_completed(futures):
            try:
                chunk, died = future.result(), False
            except BrokenProcessPool:  # the chunk's index says where to look: it can be run again alone
                chunk, died = Figures(crashes=1, kinds={f"a worker died in chunk {futures[future]}": ""}), True
            run.add(chunk)
            state.figures.add(chunk)
            state.save()
            if died:
                break
            if args.progress_seconds and time.monotonic() - last_progress > args.progress_seconds:
                last_progress = time.monotonic()
                print(f"  ... {state.figures.row(name)}  (running; load {_load()})", flush=True)
            if deadline and time.time() >= deadline:
                break  # the chunks still running stop at the deadline too
    except BaseException:
        for child in mp.active_children():  # stopped by a signal: the workers go at once
            child.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        state.runs.append({"ended": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "inputs": run.inputs, "processes": args.processes,
                           "wall_s": round(time.monotonic() - started, 1), "chunks_from": first, "load": _load()})
        state.save()
    return state


def _deadline(args: argparse.Namespace) -> float:
    ends = []
    if args.seconds:
        ends.append(time.time() + args.seconds)
    if args.stop_at:
        hour, minute = (int(x) for x in args.stop_at.split(":"))
        now = dt.datetime.now(dt.UTC)
        at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        ends.append((at if at > now else at + dt.timedelta(days=1)).timestamp())
    return min(ends) if ends else 0.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000, help="cumulative inputs to reach per target")
    parser.add_argument("--target", action="append", help="run only this target (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1, help="worker processes per target")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="inputs per chunk (a new state only)")
    parser.add_argument("--state-dir", default=str(ROOT / ".fuzz-state"))
    parser.add_argument("--fresh", action="store_true", help="forget the saved figures of the targets named")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop the whole run after this long")
    parser.add_argument("--stop-at", default="", help="stop the whole run at this UTC time (HH:MM)")
    parser.add_argument("--report", action="store_true", help="print the saved figures; run nothing")
    parser.add_argument("--crash-dir", default=str(ROOT / ".fuzz-crashes"))
    parser.add_argument("--progress-seconds", type=float, default=0.0, help="print running figures this often")
    return parser


def _short(state: State, goal: int) -> str:
    """What a target still lacks, and how long it would take at its measured rate."""
    missing = goal - state.figures.inputs
    if missing <= 0:
        return ""
    figures = state.figures
    if not figures.rate:
        return f"  (short of {goal})"
    cpu = f", {missing * figures.cpu_seconds / figures.inputs / 60:.0f} min of CPU" if figures.cpu_seconds else ""
    return f"  (short of {goal}: {missing / figures.rate / 60:.0f} min more at {figures.rate:.0f}/s per process{cpu})"


def main() -> int:
    args = _parser().parse_args()
    # A stop by signal unwinds like Ctrl-C: the workers are ended and the figures so far are saved.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from tests.fuzz.targets import targets

    covers = {t.name: t.covers for t in targets()}
    names = args.target or list(covers)
    if args.fresh:
        for name in names:
            State(pathlib.Path(args.state_dir), name, args.seed, args.chunk).path.unlink(missing_ok=True)
    deadline = _deadline(args)
    print(HEADER, flush=True)
    bad = 0
    for name in names:
        if args.report:
            state = State(pathlib.Path(args.state_dir), name, args.seed, args.chunk)
        else:
            state = run_target(name, args, deadline)
        print(state.figures.row(name, _short(state, args.inputs)), flush=True)
        print(f"    covers {covers[name]}")
        for kind, path in state.figures.kinds.items():
            print(f"    crash {kind} -> {path}")
        bad += state.figures.crashes + state.figures.hangs
    print(f"mutator: {MUTATOR}; seed {args.seed}; state {args.state_dir}; load {_load()}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
