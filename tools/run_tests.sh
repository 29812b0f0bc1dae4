#!/usr/bin/env bash
# Set up .venv/ if needed (tools/setup_env.sh, idempotent), then run the whole test suite.
# Extra arguments go to pytest, e.g. bash tools/run_tests.sh -k converter
# PYTEST_WORKERS=1 runs the suite in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
# One pytest worker per core (pytest-xdist), each single-threaded: MicroNet is many tiny
# operators, which parallelise far better across processes than across OpenMP threads (whose
# busy-waiting slows concurrent processes several-fold). Each test file stays on one worker
# (--dist loadfile), so session fixtures such as the demo trainings run once.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-auto}" --dist loadfile tests "$@"
