#!/usr/bin/env bash
# Sets up .venv, then runs the fast test suite (~4 min on 2 cores, two test processes); with --slow
# first, every test (what .ci/run runs): the fast ones with every fuzz example, then the slow ones
# (servers, daemons and whole runs), two files at a time: much of their time is waiting on a daemon,
# a sensor tick or a page, and a file's tests keep their order and module fixtures on one worker.
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ "${1:-}" = "--slow" ]; then
  shift
  NEWS_AI_WHOLE_SUITE=1 .venv/bin/python -m pytest -m "not slow" -n 2 "$@"
  exec .venv/bin/python -m pytest -m slow -n 2 --dist loadfile "$@"
fi
exec .venv/bin/python -m pytest -m "not slow" -n 2 "$@"
