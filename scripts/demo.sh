#!/usr/bin/env bash
# The demo command (README line 1): set-up, then hub + sealer + agents on a real local API server.
set -euo pipefail
cd "$(dirname "$0")/.."
assets=$(bash scripts/bootstrap.sh | tail -n 1)
export KUBEBUILDER_ASSETS="$assets"
exec .venv/bin/skerry demo "$@"
