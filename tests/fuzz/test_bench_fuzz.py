"""bench/fuzz.py's long runs are cumulative: a second run continues the first from its saved state, with
chunks it has not run (so no input is run twice), over several worker processes."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"
TARGET = "inventory"  # a fast target: the run is about the bookkeeping


def _run(tmp_path: pathlib.Path, inputs: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--target", TARGET, "--inputs", str(inputs), "--chunk", "16",
         "--processes", "2", "--state-dir", str(tmp_path / "state"), "--crash-dir", str(tmp_path / "crashes")],
        capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith(TARGET))
    assert int(row.split()[1]) == inputs, row
    return json.loads((tmp_path / "state" / f"{TARGET}.seed1.json").read_text())


def test_a_second_run_continues_the_first_with_new_chunks(tmp_path):
    first = _run(tmp_path, 40)
    assert (first["figures"]["inputs"], first["next_chunk"]) == (40, 3)  # chunks 0, 1, 2: 16 + 16 + 8

    second = _run(tmp_path, 70)
    assert (second["figures"]["inputs"], second["next_chunk"]) == (70, 5)  # 30 more: chunks 3 and 4
    assert [run["inputs"] for run in second["runs"]] == [40, 30]
    assert [run["chunks_from"] for run in second["runs"]] == [0, 3]
    assert second["figures"]["crashes"] == second["figures"]["hangs"] == 0
