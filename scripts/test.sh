#!/usr/bin/env bash
# Sets up .venv, then runs the fast test suite (~6 min on 2 cores, two test processes); with --slow
# first, every test (~50 min: what .ci/run runs): the fast ones with every fuzz example, then the slow
# ones one at a time (they start servers, daemons and whole runs). Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ "${1:-}" = "--slow" ]; then
  shift
  NEWS_AI_WHOLE_SUITE=1 .venv/bin/python -m pytest -m "not slow" -n 2 "$@"
  exec .venv/bin/python -m pytest -m slow "$@"
fi
exec .venv/bin/python -m pytest -m "not slow" -n 2 "$@"
