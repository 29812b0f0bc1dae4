#!/usr/bin/env bash
# Set up .venv/ if needed (tools/setup_env.sh, idempotent), then run the whole test suite.
# Extra arguments go to pytest, e.g. bash tools/run_tests.sh -k converter
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python -m pytest -q tests "$@"
