#!/usr/bin/env bash
# The test command (README line 2, and what .ci/run calls): set-up, static checks (lint, sizes, generated code,
# import contracts), the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
assets=$(bash scripts/bootstrap.sh | tail -n 1)
export KUBEBUILDER_ASSETS="$assets"
export PATH="$PWD/.venv/bin:$PATH"
echo "== lint (ruff; rules in pyproject.toml)"
ruff check .
echo "== sizes (modules <= 500 lines, classes <= 300, functions <= 80)"
python scripts/sizes.py
echo "== generated code is current"
python scripts/gen_protos.py --check
echo "== import contracts"
lint-imports
echo "== tests"
# Two workers (SKERRY_TEST_WORKERS; 0 runs in this process), each with its own API server and PostgreSQL
# (session fixtures, free ports). A test module stays on one worker (--dist loadfile), so the worlds a
# module shares are built once. Most of the suite waits on processes, intervals and the network, not on
# the CPU: on two cores the second worker fills the idle half. A cluster of your own
# (SKERRY_TEST_KUBECONFIG) is shared by both workers, so there the suite runs on one.
if [ -n "${SKERRY_TEST_KUBECONFIG:-}" ]; then
  workers=${SKERRY_TEST_WORKERS:-0}
else
  workers=${SKERRY_TEST_WORKERS:-2}
fi
# the slowest tests are listed at the end: where the suite's time goes
python -m pytest -n "$workers" --dist loadfile --durations=30 "$@"
