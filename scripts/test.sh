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
# the slowest tests are listed at the end: where the suite's time goes
python -m pytest --durations=30 "$@"
